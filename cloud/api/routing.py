"""405 for a method a path does not have, also where a path parameter would take the request.

Starlette routes a request to the first route whose path and method both match. A literal path
such as ``/v1/configs/validate`` (POST only) is also matched by ``/v1/configs/{version_id}``
(GET), so ``GET /v1/configs/validate`` would reach that route and be refused as a malformed
version id (422). A literal path names its own resource: :class:`LiteralPathMethods` answers any
other method on it with 405 and ``Allow`` before routing, for every literal path of the schema.
Methods a parameterised path does not have get Starlette's own 405, worded the same way
(:func:`~lensflow.cloud.api.errors.method_not_allowed_message`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from lensflow.cloud.api.errors import error_response, method_not_allowed_message


def literal_paths(paths: Mapping[str, Iterable[str]]) -> dict[str, frozenset[str]]:
    """The methods of each path without parameters, from an OpenAPI ``paths`` object.

    Args:
        paths: Path template -> its operations (``get``, ``post``...).

    Returns:
        Literal path -> its methods, upper case.

    """
    return {
        path: frozenset(method.upper() for method in operations)
        for path, operations in paths.items()
        if "{" not in path
    }


class LiteralPathMethods:
    """Answer a method that a literal path does not have with 405 and ``Allow``."""

    def __init__(self, app: ASGIApp, *, allowed: Mapping[str, frozenset[str]]) -> None:
        """Wrap ``app``.

        Args:
            app: The ASGI app.
            allowed: Literal path -> the methods its routes have (see :func:`literal_paths`).

        """
        self.app = app
        self.allowed = dict(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse the request if its path is literal and its method is not among the path's."""
        methods = self.allowed.get(scope["path"]) if scope["type"] == "http" else None
        if methods is not None and scope["method"] not in methods:
            allow = ", ".join(sorted(methods))
            response = error_response(
                405,
                code="method_not_allowed",
                message=method_not_allowed_message(scope["method"], scope["path"], allow),
                headers={"Allow": allow},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
