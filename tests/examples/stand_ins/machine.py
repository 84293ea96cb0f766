"""MicroPython's ``machine``, as much of it as examples/micropython/main.py uses.

Every pin write is appended as a JSON line to the file named by ``STAND_IN_LOG`` (when set), so
the test sees what the board did: ``{"pin": 5, "value": 1}``. The ADC reads a fixed voltage,
``STAND_IN_ADC_UV`` microvolts (default 750000: a TMP36 at 25.0 °C).
"""

import json
import os


def _log(event):
    path = os.environ.get("STAND_IN_LOG")
    if path:
        with open(path, "a") as log:
            log.write(json.dumps(event) + "\n")


class Pin:
    IN = 1
    OUT = 3
    PULL_UP = 2
    PULL_DOWN = 1

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.mode = mode
        self._value = 0
        if value is not None:
            self.value(value)

    def value(self, value=None):
        if value is None:
            return self._value
        self._value = 1 if value else 0
        _log({"pin": self.id, "value": self._value})
        return None

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class ADC:
    ATTN_0DB = 0
    ATTN_11DB = 3

    def __init__(self, pin, atten=None):
        self.pin = pin

    def atten(self, value):
        pass

    def read_uv(self):
        return int(os.environ.get("STAND_IN_ADC_UV", "750000"))

    def read_u16(self):
        return min(65535, self.read_uv() * 65535 // 3300000)


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout

    def feed(self):
        pass


def unique_id():
    return b"\x24\x6f\x28\x00\x00\x01"


def reset():
    _log({"reset": True})
    raise SystemExit("machine.reset()")
