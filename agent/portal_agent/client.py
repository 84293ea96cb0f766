"""HTTP to the portal's device endpoints (plain ``requests``), with errors sorted by what to do.

``Unavailable``: try again later (no connection, timeout, 5xx, 429, 401 while a token is being
fixed). ``Rejected``: the server understood and refused this request for good (other 4xx).
"""

from __future__ import annotations

from typing import Any

import requests

TIMEOUT = (5.0, 30.0)  # connect, read (seconds)
RETRY_STATUSES = {401, 408, 425, 429}


class Unavailable(Exception):
    """The request did not go through now; it may later. ``retry_after`` in seconds if told."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Rejected(Exception):
    """The server refused the request for good (a 4xx other than the retryable ones)."""

    def __init__(self, status: int, body: Any) -> None:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        super().__init__(f"{status} {error.get('code', '')}: {error.get('message', body)}")
        self.status, self.body = status, body


class PortalClient:
    """One device talking to one portal with its bearer token."""

    def __init__(
        self,
        url: str,
        token: str,
        timeout: tuple[float, float] = TIMEOUT,
        user_agent: str = "portal-agent",
    ) -> None:
        self.base = url.rstrip("/") + "/api/v1/device"
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}", "User-Agent": user_agent})

    def heartbeat(self, firmware: str | None = None) -> dict[str, Any]:
        return self._call("POST", "/heartbeat", json={"firmware": firmware} if firmware else {})

    def upload(self, readings: list[dict[str, Any]], idempotency_key: str) -> int:
        """Send one batch; the key makes a repeat harmless. Returns how many were accepted."""
        body = self._call(
            "POST",
            "/readings",
            json={"readings": readings},
            headers={"Idempotency-Key": idempotency_key},
        )
        return int(body.get("accepted", len(readings)))

    def poll(self, limit: int = 10) -> list[dict[str, Any]]:
        commands: list[dict[str, Any]] = self._call(
            "GET", "/commands", params={"limit": limit}
        ).get("commands", [])
        return commands

    def report(self, command_id: int, status: str, result: dict[str, Any]) -> None:
        self._call(
            "POST", f"/commands/{int(command_id)}/result", json={"status": status, "result": result}
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.session.request(
                method, self.base + path, timeout=self.timeout, **kwargs
            )
        except requests.ConnectionError as exc:
            raise Unavailable(f"{method} {path}: no connection to {self.base}") from exc
        except requests.Timeout as exc:
            raise Unavailable(f"{method} {path}: timed out") from exc
        except requests.RequestException as exc:
            raise Unavailable(f"{method} {path}: {exc.__class__.__name__}: {exc}") from exc
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 500 or response.status_code in RETRY_STATUSES:
            raise Unavailable(
                f"{method} {path}: HTTP {response.status_code}",
                _retry_after(response.headers.get("Retry-After")),
            )
        if response.status_code >= 400:
            raise Rejected(response.status_code, body)
        return body if isinstance(body, dict) else {}

    def close(self) -> None:
        self.session.close()


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
