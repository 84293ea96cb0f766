"""MicroPython's ``network``: a station interface that connects as soon as it is asked to."""

import json
import os

STA_IF = 0
AP_IF = 1
STAT_GOT_IP = 1010


class WLAN:
    def __init__(self, interface=STA_IF):
        self.interface = interface
        self._active = False
        self._connected = False

    def active(self, flag=None):
        if flag is None:
            return self._active
        self._active = bool(flag)
        return None

    def connect(self, ssid=None, key=None):
        if not self._active:
            raise OSError("WLAN not active")
        path = os.environ.get("STAND_IN_LOG")
        if path:
            with open(path, "a") as log:
                log.write(json.dumps({"wifi": ssid}) + "\n")
        self._connected = True

    def disconnect(self):
        self._connected = False

    def isconnected(self):
        return self._connected

    def status(self, param=None):
        if param == "rssi":
            return -55
        return STAT_GOT_IP if self._connected else 0

    def ifconfig(self):
        return ("192.168.4.2", "255.255.255.0", "192.168.4.1", "192.168.4.1")

    def config(self, *args, **kwargs):
        return None
