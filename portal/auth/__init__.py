"""Login and logout (the browser's way in)."""

from portal.auth.views import bp

__all__ = ["bp"]
