"""examples/micropython/main.py's logic under real MicroPython (the WebAssembly port), with the
stand-ins of board/. Run by run.mjs; prints "micropython-wasm: all checks passed"."""

import json
import os
import sys
import time

sys.path.insert(0, "/board")
os.chdir("/board")

import machine  # noqa: E402
import main  # noqa: E402
from umqtt import simple  # noqa: E402


def sent(suffix):
    return [message for topic, message, _r, _q in simple.published if topic.endswith(suffix)]


board = main.Board()
board.connect()
board.step()
assert board.client.user == "dev-7"
assert board.client.will == (b"portal/dev-7/up/status", b"offline", True, 1)
assert board.client.subscribed == b"portal/dev-7/down/#"
assert simple.published[0] == (b"portal/dev-7/up/status", b"online", True, 1)
assert json.loads(sent(b"/up/heartbeat")[0]) == {"firmware": "micropython-example 1.0.0"}
batch = json.loads(sent(b"/up/readings")[0])
assert [(r["metric"], r["value"]) for r in batch["readings"]] == [
    ("temperature", 25.0),
    ("wifi_rssi", -50),
]
assert batch["key"] == board.boot + "-1"

board.step()  # no answer within ACK_TIMEOUT_S = 0: the same bytes again
assert sent(b"/up/readings")[1] == sent(b"/up/readings")[0]
ack = {"topic": "readings", "key": batch["key"], "accepted": 2}
simple.incoming.append((b"portal/dev-7/down/acks", json.dumps(ack).encode()))
command = {"id": 3, "action": "relay.on", "payload": {"seconds": 0.01}, "created_at": "x"}
for _ in range(2):  # pushed, and pushed again
    simple.incoming.append((b"portal/dev-7/down/commands", json.dumps(command).encode()))
simple.incoming.append((b"portal/dev-7/down/commands", b'{"id": 4, "action": "sing"}'))
for _ in range(5):
    board.step()
assert board.pending == []
time.sleep_ms(20)
board.step()
assert machine.writes == [(5, 0), (5, 1), (5, 0)], machine.writes  # on once, off when due
results = [json.loads(m) for m in sent(b"/up/results/3")]
assert results == [{"status": "succeeded", "result": {"relay": "on", "off_after_s": 0.01}}] * 2
assert json.loads(sent(b"/up/results/4")[0]) == {
    "status": "failed",
    "result": {"error": "unknown action: sing"},
}

again = main.Ran()  # what a restart reads back from ran.json
assert [entry[0] for entry in again.entries] == [3, 4]
for command_id in range(5, 5 + main.RAN_KEEP + 2):
    board.ran.save(command_id, "succeeded", {})
assert board.ran.forgotten == 6 and board.ran.too_old(6) and not board.ran.too_old(27)

assert main.utc_now_text() is None or main.utc_now_text().endswith("Z")
board.stop()
assert simple.published[-1] == (b"portal/dev-7/up/status", b"offline", True, 1)
print("micropython-wasm: all checks passed on", sys.implementation.name, sys.version)
