"""MicroPython's ``usocket`` as umqtt.simple uses it, over a CPython socket.

The differences that matter: MicroPython sockets are streams with ``read(n)`` (a blocking read
returns n bytes, fewer only at the end of the stream; a non-blocking one returns None when
nothing has arrived) and ``write(buf, n)`` (the first n bytes of buf; str is written as UTF-8).
``getaddrinfo`` gives IPv4 addresses, as a board's network stack does.
"""

import socket as _socket

AF_INET = _socket.AF_INET
SOCK_STREAM = _socket.SOCK_STREAM
SOL_SOCKET = _socket.SOL_SOCKET
SO_REUSEADDR = _socket.SO_REUSEADDR


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    return _socket.getaddrinfo(host, port, AF_INET, SOCK_STREAM)


class socket:
    def __init__(self, af=AF_INET, type=SOCK_STREAM, proto=0):
        self._sock = _socket.socket(af, type, proto)

    def connect(self, address):
        self._sock.connect(address)

    def settimeout(self, seconds):
        self._sock.settimeout(seconds)

    def setblocking(self, flag):
        self._sock.setblocking(flag)

    def setsockopt(self, level, option, value):
        self._sock.setsockopt(level, option, value)

    def write(self, buf, n=None):
        if isinstance(buf, str):
            buf = buf.encode()
        data = memoryview(buf)
        if n is not None:
            data = data[:n]
        self._sock.sendall(data)
        return len(data)

    def read(self, n):
        data = bytearray()
        while len(data) < n:
            try:
                chunk = self._sock.recv(n - len(data))
            except BlockingIOError:
                return bytes(data) if data else None
            if not chunk:  # the other end closed
                break
            data += chunk
        return bytes(data)

    def close(self):
        self._sock.close()
