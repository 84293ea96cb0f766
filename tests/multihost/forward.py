"""A TCP relay for the multi-host test: from the test network to servers on loopback.

A namespace's 127.0.0.1 is its own, so the hosts reach PostgreSQL and Redis through this relay,
which listens on the root namespace's address on the test network. Run it as::

    python forward.py LISTEN_ADDRESS HOST:PORT [HOST:PORT ...]

It binds a free port on LISTEN_ADDRESS per target, prints ``{"HOST:PORT": port, ...}`` as one
JSON line on stdout, and relays until SIGTERM. A connection closed on one side is closed on the
other at once, so a killed host's database sessions end (and their transactions roll back) the
moment the host dies, as they would with the server on the same machine.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

CHUNK = 64 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _relay(
    target: tuple[str, int], client: asyncio.StreamReader, to_client: asyncio.StreamWriter
) -> None:
    try:
        upstream, to_upstream = await asyncio.open_connection(*target)
    except OSError as exc:
        print(f"forward: cannot reach {target}: {exc}", file=sys.stderr, flush=True)
        to_client.close()
        return
    await asyncio.gather(_pipe(client, to_upstream), _pipe(upstream, to_client))


async def _serve(listen: str, targets: list[str]) -> None:
    servers, ports = [], {}
    for spec in targets:
        host, port = spec.rsplit(":", 1)

        async def handle(reader, writer, target=(host, int(port))):
            await _relay(target, reader, writer)

        server = await asyncio.start_server(handle, listen, 0)
        servers.append(server)
        ports[spec] = server.sockets[0].getsockname()[1]
    print(json.dumps(ports), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1], sys.argv[2:]))
