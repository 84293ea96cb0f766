"""Secrets the portal must read back, not just check: encrypted at rest with Fernet keys
derived from the portal's secret key, one key per purpose.

Tokens people and devices present are kept only as hashes (``services/tokens.py``); what the
portal itself must present or sign with (a device's new MQTT password until the broker has it, a
webhook channel's signing secret) is kept here, encrypted. Changing the secret key makes these
unreadable: Fernet then raises ``cryptography.fernet.InvalidToken``.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet
from flask import current_app


def fernet(purpose: str) -> Fernet:
    """A Fernet whose key is SHA-256 of ``purpose``, a NUL and the app's ``SECRET_KEY``.

    Each purpose gets its own key, so a value sealed for one cannot be opened as another.
    Needs an app context.
    """
    secret = str(current_app.config["SECRET_KEY"]).encode()
    key = hashlib.sha256(purpose.encode() + b"\x00" + secret).digest()
    return Fernet(base64.urlsafe_b64encode(key))
