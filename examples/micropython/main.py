"""A MicroPython board (ESP32, Raspberry Pi Pico W, ...) talking to Portal over MQTT.

What it does, over and over:
- keeps Wi-Fi and the MQTT connection up (reconnecting with a growing pause after any error);
- says "online" on its retained status topic; the broker says "offline" for it when it vanishes;
- reads its sensors every READ_EVERY_S seconds and sends them as one batch with a key of its
  own; a batch is kept until the portal acknowledges it and sent again (same bytes, same key)
  when no answer came, so the portal stores it once however often it arrives;
- sends a heartbeat with its firmware every HEARTBEAT_EVERY_S seconds;
- runs the commands the portal pushes (relay.on, relay.off), each command id at most once, even
  across a restart (the ids it ran are kept in ran.json), and reports each result; a command
  sent again (the portal does that when a result did not arrive) gets its result again.

Files on the board: main.py (this), config.py (from config.example.py), lib/umqtt/simple.py.
The two parts to make your own are marked "CHANGE HERE".
"""

import json
import os
import time

import config
import machine
import network
from umqtt.simple import MQTTClient, MQTTException

try:  # MicroPython
    from time import sleep_ms, ticks_add, ticks_diff, ticks_ms
except ImportError:  # CPython, where the tests run this file (tests/examples/)

    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_add(ticks, delta):
        return ticks + delta

    def ticks_diff(end, start):
        return end - start

    def sleep_ms(ms):
        time.sleep(ms / 1000)


def setting(name, default=None):
    return getattr(config, name, default)


PREFIX = setting("TOPIC_PREFIX", "portal")
DEVICE_ID = int(config.DEVICE_ID)
CLIENT_ID = f"dev-{DEVICE_ID}"  # also the MQTT user name
ROOT = f"{PREFIX}/{CLIENT_ID}"
T_STATUS = (ROOT + "/up/status").encode()
T_HEARTBEAT = (ROOT + "/up/heartbeat").encode()
T_READINGS = (ROOT + "/up/readings").encode()
T_RESULTS = ROOT + "/up/results/"  # + the command's id
T_DOWN = (ROOT + "/down/#").encode()  # down/commands and down/acks

FIRMWARE = setting("FIRMWARE", "micropython-example 1.0.0")
READ_MS = int(setting("READ_EVERY_S", 60) * 1000)
HEARTBEAT_MS = int(setting("HEARTBEAT_EVERY_S", 30) * 1000)
ACK_TIMEOUT_MS = int(setting("ACK_TIMEOUT_S", 30) * 1000)
KEEPALIVE_S = int(setting("KEEPALIVE_S", 60))
RETRY_MAX_MS = int(setting("RETRY_MAX_S", 30) * 1000)
LOOP_SLEEP_MS = int(setting("LOOP_SLEEP_MS", 50))
WATCHDOG_S = setting("WATCHDOG_S")

MAX_PENDING = 20  # batches kept while the portal cannot be reached; the oldest goes first
RAN_FILE = "ran.json"  # the command ids already run, with their results
RAN_KEEP = 20


def log(message):
    print("[portal]", message)


# ---- CHANGE HERE: your sensors ---------------------------------------------------------------
# As shipped: a TMP36 temperature sensor on SENSOR_PIN (3V3, GND, middle leg to the pin) and the
# Wi-Fi signal strength. Return (metric, value) pairs; metric names are 1-64 characters of
# a-z 0-9 _ . - and values are numbers.

_adc = None


def read_sensors(wlan):
    global _adc
    if _adc is None:
        _adc = machine.ADC(machine.Pin(setting("SENSOR_PIN", 34)))
        if hasattr(_adc, "atten"):  # ESP32: measure up to about 3.1 V
            _adc.atten(machine.ADC.ATTN_11DB)
    if hasattr(_adc, "read_uv"):
        millivolts = _adc.read_uv() / 1000
    else:
        millivolts = _adc.read_u16() * 3300 / 65535
    readings = [("temperature", round((millivolts - 500) / 10, 1))]  # TMP36: 10 mV/°C, 0.5 V at 0
    if wlan.isconnected():
        try:
            readings.append(("wifi_rssi", wlan.status("rssi")))
        except (OSError, ValueError, TypeError):  # not every port knows it
            pass
    return readings


# ---- CHANGE HERE: your commands --------------------------------------------------------------
# Each action takes the command's payload (a dict) and returns (status, result): status is
# "succeeded" or "failed", result a small dict the portal shows with the command.

RELAY_ON = setting("RELAY_ON", 1)  # 0 for a relay module that switches on a low input
RELAY_OFF = 1 - RELAY_ON
relay = machine.Pin(setting("RELAY_PIN", 5), machine.Pin.OUT, value=RELAY_OFF)
relay_off_at = None  # ticks_ms() when relay.on's "seconds" run out


def relay_on(payload):
    global relay_off_at
    seconds = payload.get("seconds")
    if seconds is not None and (
        isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0
    ):
        return "failed", {"error": "seconds must be a positive number"}
    relay.value(RELAY_ON)
    if seconds is None:
        relay_off_at = None
        return "succeeded", {"relay": "on"}
    relay_off_at = ticks_add(ticks_ms(), int(seconds * 1000))
    return "succeeded", {"relay": "on", "off_after_s": seconds}


def relay_off(payload):
    global relay_off_at
    relay.value(RELAY_OFF)
    relay_off_at = None
    return "succeeded", {"relay": "off"}


ACTIONS = {"relay.on": relay_on, "relay.off": relay_off}


def run_action(action, payload):
    handler = ACTIONS.get(action)
    if handler is None:
        return "failed", {"error": f"unknown action: {action}"}
    try:
        return handler(payload)
    except Exception as exc:  # a broken action must not stop the board
        return "failed", {"error": f"{type(exc).__name__}: {exc}"}


# ---- the commands already run (kept on flash) ------------------------------------------------


class Ran:
    """The last RAN_KEEP commands run, as [id, status, result] (status None while one runs, so
    a command cut short by a restart is reported failed, never run a second time), and the
    highest id forgotten to make room: an id not remembered but no newer than that may have
    run, so it is not run."""

    def __init__(self):
        self.entries = []
        self.forgotten = 0
        try:
            with open(RAN_FILE) as stored:
                saved = json.load(stored)
            self.entries = saved["entries"]
            self.forgotten = saved["forgotten"]
        except (OSError, ValueError, KeyError, TypeError):
            pass

    def find(self, command_id):
        for entry in self.entries:
            if entry[0] == command_id:
                return entry
        return None

    def too_old(self, command_id):
        return command_id <= self.forgotten

    def save(self, command_id, status, result):
        entry = self.find(command_id)
        if entry is None:
            self.entries.append([command_id, status, result])
            while len(self.entries) > RAN_KEEP:
                self.forgotten = max(self.forgotten, self.entries.pop(0)[0])
        else:
            entry[1], entry[2] = status, result
        with open(RAN_FILE + ".new", "w") as new:
            json.dump({"entries": self.entries, "forgotten": self.forgotten}, new)
        try:
            os.rename(RAN_FILE + ".new", RAN_FILE)
        except OSError:  # a file system that does not replace on rename
            os.remove(RAN_FILE)
            os.rename(RAN_FILE + ".new", RAN_FILE)


# ---- the board -------------------------------------------------------------------------------


def utc_now_text():
    """The time as RFC 3339 text, or None while the clock is not set (the portal then stamps
    the readings when they arrive)."""
    now = time.gmtime()
    if now[0] < 2024:
        return None
    return f"{now[0]:04d}-{now[1]:02d}-{now[2]:02d}T{now[3]:02d}:{now[4]:02d}:{now[5]:02d}Z"


def boot_number():
    try:
        return int.from_bytes(os.urandom(4), "big")
    except AttributeError:  # a port without os.urandom: its random is seeded by hardware
        import random

        return random.getrandbits(32)


class Board:
    def __init__(self):
        self.wlan = network.WLAN(network.STA_IF)
        self.client = None
        self.inbox = []  # (topic, message) received, handled in the main loop
        self.pending = []  # [key, payload bytes, ticks when sent or None]: batches not acked yet
        self.boot = f"{boot_number():08x}"  # keys differ from one boot to the next
        self.sequence = 0
        self.ran = Ran()
        self.next_read = ticks_ms()
        self.next_heartbeat = ticks_ms()
        self.last_sent = ticks_ms()
        self.clock_set = False
        self.watchdog = machine.WDT(timeout=int(WATCHDOG_S * 1000)) if WATCHDOG_S else None

    def feed(self):
        if self.watchdog is not None:
            self.watchdog.feed()

    # -- connecting

    def wifi(self):
        if self.wlan.isconnected():
            return
        log(f"connecting to Wi-Fi {config.WIFI_SSID}")
        self.wlan.active(True)
        self.wlan.connect(config.WIFI_SSID, config.WIFI_PASSWORD)
        deadline = ticks_add(ticks_ms(), 20000)
        while not self.wlan.isconnected():
            if ticks_diff(deadline, ticks_ms()) <= 0:
                raise OSError("no Wi-Fi after 20 s")
            self.pause(200)
        log(f"Wi-Fi up: {self.wlan.ifconfig()[0]}")
        if not self.clock_set:
            try:
                import ntptime  # the board's; not there under CPython

                ntptime.settime()
                self.clock_set = True
            except Exception:  # no ntptime, or no answer: readings go without ts
                pass

    def connect(self):
        self.wifi()
        client = MQTTClient(
            CLIENT_ID,
            config.BROKER_HOST,
            port=int(setting("BROKER_PORT", 1883)),
            user=CLIENT_ID,
            password=config.DEVICE_TOKEN,
            keepalive=KEEPALIVE_S,
        )
        client.set_callback(self.on_message)
        client.set_last_will(T_STATUS, b"offline", retain=True, qos=1)
        self.client = client
        client.connect()  # a clean session: commands missed meanwhile are pushed again
        # Subscribed before saying online: the portal pushes queued commands at "online".
        client.subscribe(T_DOWN, qos=1)
        client.publish(T_STATUS, b"online", retain=True, qos=1)
        log(f"connected to {config.BROKER_HOST} as {CLIENT_ID}")
        self.last_sent = ticks_ms()
        self.next_heartbeat = ticks_ms()
        for batch in self.pending:  # whatever was in flight goes again
            batch[2] = None

    def drop(self):
        if self.client is not None:
            try:
                self.client.sock.close()
            except Exception:
                pass
        self.client = None

    def stop(self):
        """A clean goodbye: offline (retained), then DISCONNECT (so no last will)."""
        if self.client is None:
            return
        try:
            self.client.publish(T_STATUS, b"offline", retain=True, qos=1)
            self.client.disconnect()
        except Exception:
            pass
        self.client = None
        log("stopped")

    # -- what comes in

    def on_message(self, topic, message):
        # Called from inside umqtt (even while it waits for a PUBACK): only note it here.
        self.inbox.append((bytes(topic), bytes(message)))

    def handle_inbox(self):
        while self.inbox:
            topic, message = self.inbox.pop(0)
            try:
                body = json.loads(message)
            except ValueError:
                log(f"not JSON on {topic}")
                continue
            if not isinstance(body, dict):
                continue
            if topic.endswith(b"/down/commands"):
                self.on_command(body)
            elif topic.endswith(b"/down/acks"):
                self.on_ack(body)

    def on_ack(self, body):
        error = body.get("error")
        key = body.get("key")
        if body.get("topic") == "readings":
            if self.pending and self.pending[0][0] == key:
                self.pending.pop(0)
                if not error:
                    log(f"readings {key} stored ({body.get('accepted')})")
            if error:  # a batch the portal refuses will not get better: it is dropped
                log(f"readings {key} refused: {error}")
        elif error:
            log(f"{body.get('topic')} refused: {error}")

    def on_command(self, body):
        command_id = body.get("id")
        if not isinstance(command_id, int) or isinstance(command_id, bool):
            log(f"a command without an id: {body!r}")
            return
        action = body.get("action")
        payload = body.get("payload")
        entry = self.ran.find(command_id)
        if entry is not None:
            if entry[1] is None:  # cut short by a restart
                self.ran.save(command_id, "failed", {"error": "interrupted by a restart"})
            log(f"command {command_id} already ran: reporting its result again")
            status, result = entry[1], entry[2]
        elif self.ran.too_old(command_id):
            log(f"command {command_id} may have run before the ones remembered: not run")
            status, result = "failed", {"error": "too old to tell whether it ran; not run"}
        else:
            log(f"running command {command_id}: {action} {payload}")
            self.ran.save(command_id, None, None)  # on flash before it runs
            status, result = run_action(action, payload if isinstance(payload, dict) else {})
            self.ran.save(command_id, status, result)
        self.publish(
            (T_RESULTS + str(command_id)).encode(),
            json.dumps({"status": status, "result": result}),
            qos=1,
        )

    # -- what goes out

    def publish(self, topic, message, qos=0, retain=False):
        if isinstance(message, str):
            message = message.encode()
        self.client.publish(topic, message, retain=retain, qos=qos)
        self.last_sent = ticks_ms()

    def take_sample(self):
        readings = []
        at = utc_now_text()
        for metric, value in read_sensors(self.wlan):
            reading = {"metric": metric, "value": value}
            if at is not None:
                reading["ts"] = at
            readings.append(reading)
        if not readings:
            return
        self.sequence += 1
        key = f"{self.boot}-{self.sequence}"
        body = json.dumps({"readings": readings, "key": key}).encode()
        if len(self.pending) >= MAX_PENDING:
            log(f"too many batches waiting: dropping {self.pending[0][0]}")
            self.pending.pop(0)
        self.pending.append([key, body, None])

    def send_pending(self, now):
        """Send the oldest batch: at once when it was never sent, again when its ack is late."""
        if not self.pending:
            return
        batch = self.pending[0]
        if batch[2] is not None and ticks_diff(now, batch[2]) < ACK_TIMEOUT_MS:
            return
        if batch[2] is not None:
            log(f"no answer for readings {batch[0]}: sending them again")
        batch[2] = now
        self.publish(T_READINGS, batch[1], qos=1)

    def tick(self):
        """What goes on whether the portal can be reached or not: the watchdog, the relay's
        timer, the samples (kept, up to MAX_PENDING batches, until they can be sent)."""
        global relay_off_at
        self.feed()
        now = ticks_ms()
        if relay_off_at is not None and ticks_diff(now, relay_off_at) >= 0:
            relay.value(RELAY_OFF)
            relay_off_at = None
            log("relay off (its time ran out)")
        if ticks_diff(now, self.next_read) >= 0:
            self.next_read = ticks_add(now, READ_MS)
            self.take_sample()

    def pause(self, ms):
        """Wait ms milliseconds, ticking."""
        deadline = ticks_add(ticks_ms(), ms)
        while ticks_diff(deadline, ticks_ms()) > 0:
            self.tick()
            sleep_ms(min(100, max(1, ticks_diff(deadline, ticks_ms()))))

    def step(self):
        if not self.wlan.isconnected():
            raise OSError("Wi-Fi lost")
        for _ in range(20):  # take what has arrived, a message at a time
            waiting = len(self.inbox)
            self.client.check_msg()
            if len(self.inbox) == waiting:
                break
        self.handle_inbox()
        self.tick()
        now = ticks_ms()
        if ticks_diff(now, self.next_heartbeat) >= 0:
            self.next_heartbeat = ticks_add(now, HEARTBEAT_MS)
            self.publish(T_HEARTBEAT, json.dumps({"firmware": FIRMWARE}))
        self.send_pending(now)
        if ticks_diff(ticks_ms(), self.last_sent) >= KEEPALIVE_S * 500:
            self.client.ping()
            self.last_sent = ticks_ms()


def main(max_loops=None):
    """Run until stopped (Ctrl-C), or for max_loops turns of the loop (for tests)."""
    board = Board()
    pause = 500
    loops = 0
    try:
        while max_loops is None or loops < max_loops:
            loops += 1
            try:
                if board.client is None:
                    board.connect()
                    pause = 500
                board.step()
                sleep_ms(LOOP_SLEEP_MS)
            except MQTTException as exc:
                code = exc.args[0] if exc.args else None
                if code in (4, 5):
                    log(f"the broker refused {CLIENT_ID}: check DEVICE_ID and DEVICE_TOKEN")
                else:
                    log(f"MQTT error {exc!r}")
                board.drop()
            except Exception as exc:  # link lost, broker gone, a garbled packet, ...
                log(f"connection lost ({exc!r}); retrying in {pause} ms")
                board.drop()
            if board.client is None:
                board.pause(pause)
                pause = min(pause * 2, RETRY_MAX_MS)
    except KeyboardInterrupt:
        pass
    board.stop()


if __name__ == "__main__":
    main()
