"""machine for the MicroPython (WebAssembly) check: pin writes are kept in ``writes``."""

writes = []


class Pin:
    OUT = 3

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        if value is not None:
            self.value(value)

    def value(self, value=None):
        if value is None:
            return 0
        writes.append((self.id, value))
        return None


class ADC:
    ATTN_11DB = 3

    def __init__(self, pin):
        pass

    def atten(self, value):
        pass

    def read_uv(self):
        return 750000


class WDT:
    def __init__(self, timeout=5000):
        pass

    def feed(self):
        pass
