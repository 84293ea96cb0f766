"""Sources and handlers by built-in name or module:callable; the agent imports no Flask."""

import ast
import pathlib
import re

import pytest

import portal_agent
from portal_agent.handlers import LogHandler, RelayHandler, load_handler
from portal_agent.plugins import PluginError
from portal_agent.sources import SimulatedSensor, load_source


def user_handler(action, payload):
    return {"user": action}


class UserSource:
    def __call__(self):
        return [{"metric": "user", "value": 1}]


@pytest.mark.parametrize("name, cls", [("log", LogHandler), ("relay", RelayHandler)])
def test_built_in_handler_is_found_by_name(name, cls):
    assert type(load_handler(name)) is cls


def test_built_in_source_is_found_by_name():
    assert type(load_source("simulated")) is SimulatedSensor


def test_import_string_naming_a_function_gives_that_function():
    assert load_handler(f"{__name__}:user_handler")("x", {}) == {"user": "x"}


def test_import_string_naming_a_class_gives_an_instance():
    assert load_source(f"{__name__}:UserSource")() == [{"metric": "user", "value": 1}]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("blinker", "unknown handler 'blinker': use one of log, relay or module:callable"),
        ("no_such_module_xyz:handle", "cannot load handler 'no_such_module_xyz:handle'"),
        (f"{__name__}:missing", f"cannot load handler '{__name__}:missing'"),
        (f"{__name__}:pytest.__name__", "is not callable"),
    ],
)
def test_bad_handler_spec_is_refused_with_a_clear_message(spec, message):
    with pytest.raises(PluginError, match=re.escape(message)):
        load_handler(spec)


def test_simulated_sensor_walks_within_plausible_bounds():
    sensor = SimulatedSensor(seed=1)
    samples = [sensor() for _ in range(2000)]
    temps = [s[0]["value"] for s in samples]
    hums = [s[1]["value"] for s in samples]
    assert [r["metric"] for r in samples[0]] == ["temperature", "humidity"]
    assert min(temps) >= -10 and max(temps) <= 45 and min(hums) >= 5 and max(hums) <= 95
    assert len(set(temps)) > 100


def test_simulated_sensor_moves_in_small_steps():
    sensor = SimulatedSensor(seed=2)
    temps = [sensor()[0]["value"] for _ in range(200)]
    assert max(abs(a - b) for a, b in zip(temps, temps[1:], strict=False)) <= 0.31


def test_no_agent_module_imports_flask():
    imported = set()
    for path in pathlib.Path(portal_agent.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
    assert "requests" in imported
    assert not imported & {"flask", "werkzeug", "sqlalchemy", "flask_sqlalchemy"}
