"""Settings: defaults < instance/portal.cfg < PORTAL_* environment < overrides."""

import os
import stat

import pytest

from portal import create_app
from portal.config import ConfigError


@pytest.fixture
def instance(tmp_path):
    return tmp_path / "instance"


def build(instance, **overrides):
    return create_app({"INSTANCE_PATH": str(instance), **overrides})


def test_default_database_is_sqlite_in_the_instance_folder(instance, monkeypatch):
    monkeypatch.delenv("PORTAL_DATABASE_URL", raising=False)
    app = build(instance)
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{instance}/portal.sqlite3"


def test_instance_file_overrides_defaults(instance, monkeypatch):
    monkeypatch.delenv("PORTAL_MAX_CONTENT_LENGTH", raising=False)
    instance.mkdir()
    (instance / "portal.cfg").write_text("MAX_CONTENT_LENGTH = 2048\n")
    assert build(instance).config["MAX_CONTENT_LENGTH"] == 2048


def test_environment_overrides_instance_file(instance, monkeypatch):
    instance.mkdir()
    (instance / "portal.cfg").write_text("MAX_CONTENT_LENGTH = 2048\n")
    monkeypatch.setenv("PORTAL_MAX_CONTENT_LENGTH", "4096")
    assert build(instance).config["MAX_CONTENT_LENGTH"] == 4096


def test_overrides_win_over_environment(instance, monkeypatch):
    monkeypatch.setenv("PORTAL_MAX_CONTENT_LENGTH", "4096")
    assert build(instance, MAX_CONTENT_LENGTH=8192).config["MAX_CONTENT_LENGTH"] == 8192


def test_database_url_from_environment(instance, monkeypatch):
    monkeypatch.setenv("PORTAL_DATABASE_URL", "postgresql://u@db.example/portal")
    app = build(instance)
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@db.example/portal"


def test_secret_key_is_generated_once_with_owner_only_permissions(instance, monkeypatch):
    monkeypatch.delenv("PORTAL_SECRET_KEY", raising=False)
    first = build(instance).config["SECRET_KEY"]
    second = build(instance).config["SECRET_KEY"]
    assert first == second and len(first) >= 32
    mode = stat.S_IMODE(os.stat(instance / "secret_key").st_mode)
    assert mode == 0o600


def test_secret_key_from_environment_is_used(instance, monkeypatch):
    monkeypatch.setenv("PORTAL_SECRET_KEY", "from-the-environment")
    assert build(instance).config["SECRET_KEY"] == "from-the-environment"
    assert not (instance / "secret_key").exists()


@pytest.mark.parametrize(
    "name,value", [("MAX_CONTENT_LENGTH", "lots"), ("DEVICE_ONLINE_SECONDS", "-5")]
)
def test_bad_setting_fails_loudly_naming_the_variable(instance, monkeypatch, name, value):
    monkeypatch.setenv(f"PORTAL_{name}", value)
    with pytest.raises(ConfigError, match=f"PORTAL_{name}"):
        build(instance)


def test_bad_database_url_names_the_variable(instance):
    with pytest.raises(ConfigError, match="PORTAL_DATABASE_URL"):
        build(instance, DATABASE_URL="not a url")


def test_portal_instance_path_chooses_the_instance_folder(instance, monkeypatch):
    monkeypatch.delenv("PORTAL_DATABASE_URL", raising=False)
    monkeypatch.delenv("PORTAL_SECRET_KEY", raising=False)
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(instance))
    app = create_app()
    assert app.instance_path == str(instance)
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{instance}/portal.sqlite3"
    assert (instance / "secret_key").exists()


def test_processes_starting_at_once_share_one_generated_secret_key(instance):
    import subprocess
    import sys

    code = (
        "import os; os.environ.pop('PORTAL_SECRET_KEY', None); from portal import create_app; "
        f"print(create_app({{'INSTANCE_PATH': {str(instance)!r}}}).config['SECRET_KEY'])"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    keys = {process.communicate(timeout=120)[0].strip() for process in processes}

    assert keys == {(instance / "secret_key").read_text().strip()}
    assert [p.name for p in instance.iterdir() if "secret" in p.name] == ["secret_key"]


@pytest.mark.parametrize("value", [-1, 11, "two", True])
def test_a_bad_proxy_count_stops_the_start_naming_the_variable(instance, value):
    with pytest.raises(ConfigError, match="PORTAL_PROXY_COUNT"):
        build(instance, PROXY_COUNT=value)


@pytest.mark.parametrize("proxies,seen", [(0, "127.0.0.1"), (1, "203.0.113.9")])
def test_the_client_address_comes_from_x_forwarded_for_only_behind_trusted_proxies(
    instance, proxies, seen
):
    from flask import request

    app = build(instance, PROXY_COUNT=proxies, SECRET_KEY="x")
    app.add_url_rule("/ip", "ip", lambda: request.remote_addr)
    response = app.test_client().get("/ip", headers={"X-Forwarded-For": "203.0.113.9"})
    assert response.get_data(as_text=True) == seen
