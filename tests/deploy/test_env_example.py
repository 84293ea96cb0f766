"""deploy/portal.env.example: it names every documented setting, and the portal accepts it as
written (only the instance folder moved)."""

from __future__ import annotations

import os
import re

from portal import create_app
from portal.config import INT_SETTINGS
from tests.deploy.conftest import ENV_EXAMPLE, PROD_INSTANCE, ROOT, example_env

SETTING = re.compile(r"^#?(PORTAL_[A-Z][A-Z0-9_]*)=", re.MULTILINE)


def documented_settings() -> set[str]:
    """The PORTAL_* names in the README's Configuration section, and the portal's numeric ones."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    names = set(re.findall(r"PORTAL_[A-Z][A-Z0-9_]*", section))
    return names | {f"PORTAL_{name}" for name in INT_SETTINGS}


def test_env_example_names_every_documented_setting():
    in_example = set(SETTING.findall(ENV_EXAMPLE.read_text()))
    assert documented_settings() - in_example == set()


def test_portal_starts_with_the_env_example_as_written(monkeypatch, tmp_path):
    # Building the app opens no database or Redis connection, so their URLs may stay as written.
    for name in [name for name in os.environ if name.startswith("PORTAL_")]:
        monkeypatch.delenv(name)
    for name, value in example_env().items():
        monkeypatch.setenv(name, value.replace(PROD_INSTANCE, str(tmp_path)))
    app = create_app()
    assert app.instance_path == str(tmp_path)
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg:///portal"
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["RATELIMIT_STORAGE_URI"] == "redis://127.0.0.1:6379"
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
