"""The systemd units in deploy/systemd: systemd accepts them, and they agree with the other
deployment files on where the portal lives and writes."""

from __future__ import annotations

import subprocess

import pytest

from tests.deploy.conftest import (
    ENV_EXAMPLE,
    PROD_INSTANCE,
    PROD_VENV,
    UNITS,
    VENV,
    example_env,
    systemd_analyze,
    unit_settings,
)

UNIT_NAMES = ["portal-web.service", "portal-scheduler.service", "portal-mqtt.service"]


def verify(unit_text: str, name: str, tmp_path) -> subprocess.CompletedProcess:
    # verify checks that ExecStart's program exists and is executable: point it at this
    # machine's virtualenv. The other paths (/etc/portal, /var/lib/portal) are only used when
    # the unit starts, and verify does not look at them.
    path = tmp_path / name
    path.write_text(unit_text.replace(PROD_VENV, VENV))
    return subprocess.run(
        [systemd_analyze(), "verify", str(path)], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("name", UNIT_NAMES)
def test_unit_passes_systemd_analyze_verify_without_warnings(name, tmp_path):
    result = verify((UNITS / name).read_text(), name, tmp_path)
    assert result.returncode == 0, result.stderr
    # An unknown or misspelt key is only a warning (exit status 0), so stderr must be empty too.
    # No line is filtered: this container's systemd prints nothing about its own units here.
    assert result.stderr == ""


def test_verify_reports_a_misspelt_key_on_stderr(tmp_path):
    text = (UNITS / "portal-web.service").read_text()
    result = verify(text.replace("ProtectHome=", "ProtectHomes="), "portal-web.service", tmp_path)
    assert "Unknown key 'ProtectHomes'" in result.stderr


@pytest.mark.parametrize("name", UNIT_NAMES)
def test_unit_runs_as_portal_with_the_settings_file_in_the_instance_folder(name):
    settings = unit_settings(name)
    assert settings["User"] == ["portal"]
    assert settings["EnvironmentFile"] == ["/etc/portal/portal.env"]
    assert settings["WorkingDirectory"] == [PROD_INSTANCE]
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["ExecStart"][0].startswith(f"{PROD_VENV}/bin/")


@pytest.mark.parametrize("name", UNIT_NAMES)
def test_unit_may_write_the_instance_folder_the_settings_name(name):
    instance = example_env()["PORTAL_INSTANCE_PATH"]
    writable = " ".join(unit_settings(name)["ReadWritePaths"]).split()
    assert instance in writable, f"{ENV_EXAMPLE.name} puts the instance folder in {instance}"


@pytest.mark.parametrize("name", ["portal-scheduler.service", "portal-mqtt.service"])
def test_background_units_restart_always_and_stop_with_sigterm(name):
    settings = unit_settings(name)
    assert settings["Restart"] == ["always"]
    assert settings["KillSignal"] == ["SIGTERM"]


def test_mqtt_unit_runs_the_bridge():
    settings = unit_settings("portal-mqtt.service")
    assert settings["ExecStart"] == [f"{PROD_VENV}/bin/flask --app portal mqtt run"]
    assert "mosquitto.service" in " ".join(settings["After"])
