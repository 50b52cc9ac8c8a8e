"""The desktop app's exception tree: every API failure as one an operator can act on.

:class:`ApiError` is the base; the client raises a subclass per kind of failure, each with a
message written for the person at the screen (what happened, what to do), while ``status``
and ``code`` keep the API's own answer for logs and tests.
"""

from __future__ import annotations

from collections.abc import Sequence

from lensflow.desktop.api_types import ConfigIssue
from lensflow.shared.errors import LensflowError


class ApiError(LensflowError):
    """The API could not do what was asked.

    Attributes:
        status: The HTTP status (0 when no answer came).
        code: The API's stable error code (``unknown_crop``, ``relabelled_since``...), or ``""``.
        detail: The API's own message, unchanged.

    """

    def __init__(self, message: str, *, status: int = 0, code: str = "", detail: str = "") -> None:
        """Describe the failure.

        Args:
            message: What happened and what to do, for the operator.
            status: The HTTP status, 0 when the API did not answer.
            code: The API's error code.
            detail: The API's message.

        """
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.detail = detail


class ApiUnreachable(ApiError):  # noqa: N818 - names of the HTTP answers
    """No answer: wrong URL, server down, network error or timeout."""


class Unauthorized(ApiError):  # noqa: N818 - names of the HTTP answers
    """401: no key, or a key the API does not know (or that was revoked)."""


class Forbidden(ApiError):  # noqa: N818 - names of the HTTP answers
    """403: the key's role is too low for this action."""


class NotFound(ApiError):  # noqa: N818 - names of the HTTP answers
    """404: no such crop, batch, config version or edge (or route)."""


class Conflict(ApiError):  # noqa: N818 - names of the HTTP answers
    """409: the change collides with a newer one (an undo after a later relabel...)."""


class ValidationFailed(ApiError):  # noqa: N818 - names of the HTTP answers
    """400/422: the request (or a config text) was refused as invalid.

    Attributes:
        issues: Each problem; ``line``/``column`` set where the API gave them (config texts).

    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 422,
        code: str = "",
        detail: str = "",
        issues: Sequence[ConfigIssue] = (),
    ) -> None:
        """Describe the refusal.

        Args:
            message: What was refused, for the operator.
            status: The HTTP status.
            code: The API's error code.
            detail: The API's message.
            issues: Each problem, with its line where known.

        """
        super().__init__(message, status=status, code=code, detail=detail)
        self.issues = list(issues)


class SearchUnavailable(ApiError):  # noqa: N818 - names of the HTTP answers
    """503 ``search_unavailable``: this API has no image search configured (or, 404, no route)."""


class NotEmbedded(ApiError):  # noqa: N818 - names of the HTTP answers
    """409 ``not_embedded``: the crop has no stored embedding, so nothing is similar to it."""


def describe(err: object) -> str:
    """An error as the operator reads it: the API's message, else what was raised."""
    if isinstance(err, ApiError):
        return err.message
    return f"Unexpected error: {err} ({type(err).__name__})"
