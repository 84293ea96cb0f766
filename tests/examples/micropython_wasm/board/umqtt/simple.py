"""A stand-in MQTTClient for the MicroPython (WebAssembly) check: that port has no sockets, so
this records what main.py publishes and hands it the messages queued in ``incoming``. The real
umqtt.simple is exercised by the CPython tests (tests/examples/test_micropython.py)."""

published = []
incoming = []


class MQTTException(Exception):
    pass


class MQTTClient:
    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0):
        self.client_id = client_id
        self.user = user
        self.sock = None
        self.cb = None

    def set_callback(self, f):
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        self.will = (topic, msg, retain, qos)

    def connect(self, clean_session=True):
        return 0

    def subscribe(self, topic, qos=0):
        self.subscribed = topic

    def publish(self, topic, msg, retain=False, qos=0):
        published.append((topic, msg, retain, qos))

    def check_msg(self):
        if incoming:
            self.cb(*incoming.pop(0))

    def ping(self):
        pass

    def disconnect(self):
        pass
