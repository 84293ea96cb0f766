"""Printed by `make run`: where the portal is and how to start a device agent (no Flask needed)."""

import json
import os
import sys


def main() -> None:
    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "5000")
    url = f"http://{host}:{port}"
    print(f"\nPortal: {url}/admin/  (log in as admin; the password was printed on first run)")
    path = os.path.join("instance", "demo-tokens.json")
    if os.path.exists(path):
        with open(path) as fh:
            tokens = json.load(fh)
        if tokens:
            name, token = next(iter(tokens.items()))
            print(
                f"Start a simulated device ({name}) in another shell:\n"
                f"  .venv/bin/portal-agent --url {url} --token {token} --handler relay\n"
                f"(tokens of all demo devices: {path})"
            )
            mqtt = os.environ.get("PORTAL_MQTT_URL")
            if mqtt:
                where = mqtt.split("://", 1)[-1]
                print(
                    f"MQTT bridge running against {mqtt}. The same device over MQTT (its page "
                    "shows its dev-<id>):\n"
                    f"  .venv/bin/portal-agent --mqtt mqtt://dev-<id>@{where} --token {token} "
                    "--handler relay"
                )
    print(file=sys.stderr)


if __name__ == "__main__":
    main()
