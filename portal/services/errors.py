"""Domain errors: each surface (API, admin, CLI) translates these once."""

from __future__ import annotations


class DomainError(Exception):
    code = "error"
    status = 400

    def __init__(
        self, message: str, *, code: str | None = None, fields: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.fields: dict[str, str] | None = fields


class NotFound(DomainError):
    """Absent, or out of the caller's reach: both look the same from outside."""

    code = "not_found"
    status = 404


class Forbidden(DomainError):
    """The caller may see the object but not change it."""

    code = "forbidden"
    status = 403


class Conflict(DomainError):
    code = "conflict"
    status = 409


class InvalidInput(DomainError):
    """Well-formed input with bad values; ``fields`` names each bad field."""

    code = "validation_error"
    status = 422
    fields: dict[str, str]

    def __init__(
        self, message: str = "Some fields are invalid.", *, fields: dict[str, str] | None = None
    ) -> None:
        super().__init__(message, fields=fields or {})


def one_field(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", fields={field: message})
