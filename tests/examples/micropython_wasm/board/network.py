"""network for the MicroPython (WebAssembly) check: connected once asked to."""

STA_IF = 0


class WLAN:
    def __init__(self, interface):
        self.up = False

    def active(self, flag=None):
        return None

    def connect(self, ssid, key):
        self.up = True

    def isconnected(self):
        return self.up

    def status(self, param=None):
        return -50

    def ifconfig(self):
        return ("10.0.0.2", "255.255.255.0", "10.0.0.1", "10.0.0.1")
