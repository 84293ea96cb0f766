"""What the API's deletes answer: 204 No Content, as clients of the contract expect, or, when
the request asks with ``Prefer: return=representation`` (RFC 7240), 200 with what went."""

from __future__ import annotations

from flask import Response, after_this_request, request

from portal.api.schemas import DeletionOut
from portal.services.deletes import Deletion

RETURN_REPRESENTATION = "return=representation"


def wants_representation() -> bool:
    """Whether a ``Prefer`` header asks for ``return=representation``."""
    for header in request.headers.getlist("Prefer"):
        for preference in header.split(","):
            token = preference.split(";", 1)[0].strip().lower().replace('"', "")
            if token.replace(" ", "") == RETURN_REPRESENTATION:
                return True
    return False


def deleted(deletion: Deletion) -> DeletionOut | None:
    """The answer to a delete: None (204) unless the caller preferred the representation."""
    if not wants_representation():
        return None

    @after_this_request
    def applied(response: Response) -> Response:
        response.headers["Preference-Applied"] = RETURN_REPRESENTATION
        return response

    return DeletionOut.of(deletion)
