"""``python -m bench.profile SCENARIO``: one scenario's requests in-process under pyinstrument.

Seeds a SQLite data set (``--scale``, default 0.1) or uses ``--database-url`` and replays the
scenario's request through Flask's test client, so the profile shows the portal's own code
(no gunicorn, no sockets). Scenarios: upload_100, upload_1, poll_empty, or an admin path
such as ``/admin/readings/?page=4999``. ``--rules N`` enables N threshold rules first (as the
ingest-with-rules scenario seeds them).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench import seed
from bench.data import Sizes
from bench.rules import set_rules_enabled
from bench.seed import ADMIN_NAME


def _readings(batch: int) -> bytes:
    now = int(time.time()) - 600
    return json.dumps(
        {
            "readings": [
                {
                    "metric": "temperature" if i % 2 else "humidity",
                    "value": 20 + i / 10,
                    "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + i)),
                }
                for i in range(batch)
            ]
        }
    ).encode()


def main(argv: list[str] | None = None) -> None:
    from pyinstrument import Profiler

    from portal import create_app

    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("scenario")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--html", type=Path, help="write pyinstrument's HTML here")
    parser.add_argument("--rules", type=int, default=0, help="enabled threshold rules")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="portal-profile-") as tmp:
        work = Path(tmp)
        database = seed.sqlite_database(work, "profile")
        sizes = Sizes().scaled(args.scale)
        seeded = seed.seed(database, sizes, datetime.now(UTC), work / "instance")
        if args.rules:
            now = datetime.now(UTC)
            seed.seed_rules(database, args.rules, sizes.devices, now, work / "instance")
            set_rules_enabled(database, True)
        app = create_app(
            {
                "DATABASE_URL": database.url,
                "SECRET_KEY": "bench-profile",
                "INSTANCE_PATH": str(work / "instance"),
            }
        )
        client = app.test_client()
        send = _sender(client, args.scenario, seeded)
        for _ in range(20):
            send()
        profiler = Profiler(interval=0.0002)
        started = time.perf_counter()
        with profiler:
            for _ in range(args.requests):
                send()
        elapsed = time.perf_counter() - started
        print(
            f"{args.requests} requests, {elapsed * 1000 / args.requests:.2f} ms each "
            "(wall, under the profiler)"
        )
        print(profiler.output_text(unicode=True, color=False, show_all=False))
        if args.html:
            args.html.write_text(profiler.output_html())


def _sender(client, scenario: str, seeded):
    tokens = seeded.tokens
    counter = iter(range(10**9))
    if scenario in ("upload_100", "upload_1"):
        body = _readings(100 if scenario == "upload_100" else 1)

        def send():
            n = next(counter)
            answer = client.post(
                "/api/v1/device/readings",
                data=body,
                headers={
                    "Authorization": f"Bearer {tokens[n % len(tokens)]}",
                    "Content-Type": "application/json",
                    "Idempotency-Key": f"{uuid.uuid4().hex}",
                },
            )
            assert answer.status_code == 201, answer.data

        return send
    if scenario == "poll_empty":

        def send():
            n = next(counter)
            answer = client.get(
                "/api/v1/device/commands",
                headers={"Authorization": f"Bearer {tokens[n % len(tokens)]}"},
            )
            assert answer.status_code == 200, answer.data

        return send
    page = client.get("/login")
    token = page.data.decode().split('name="csrf_token"', 1)[1].split('value="', 1)[1]
    client.post(
        "/login",
        data={
            "username": ADMIN_NAME,
            "password": seeded.admin_password,
            "csrf_token": token.split('"', 1)[0],
        },
    )

    def send():
        answer = client.get(scenario)
        assert answer.status_code == 200, answer.status_code

    return send


if __name__ == "__main__":
    main()
