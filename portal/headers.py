"""Security headers on every response, and the Content-Security-Policy nonce for scripts."""

from __future__ import annotations

import secrets

from flask import Flask, g

CSP = (
    "default-src 'self'; script-src 'self' 'nonce-{nonce}'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def csp_nonce() -> str:
    """One nonce per request; Flask-Admin puts it on every script tag it renders."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return g.csp_nonce


def init_headers(app: Flask) -> None:
    @app.after_request
    def security_headers(response):
        headers = response.headers
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        if response.mimetype == "text/html":
            # Inline script runs only with this request's nonce; inline handlers never do.
            headers.setdefault("Content-Security-Policy", CSP.format(nonce=csp_nonce()))
        return response
