"""Authentication and roles: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

Every route but the health ones depends on :func:`require`, which answers 401 when no key or
an unknown one is sent, and 403 when the key's role is below the route's
(``viewer < operator < admin``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from lensflow.cloud.api.errors import ApiError
from lensflow.cloud.api.keys import KeyStore, Principal, Role

bearer_scheme = HTTPBearer(auto_error=False, description="`Authorization: Bearer <key>`")
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key.")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="lensflow"'}


def presented_token(request: Request) -> str | None:
    """The key a request carries (bearer token first, then ``X-API-Key``), if any."""
    authorization = request.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    api_key = request.headers.get("x-api-key", "").strip()
    return api_key or None


def _key_store(request: Request) -> KeyStore:
    """The app's key store."""
    store: KeyStore = request.app.state.keys
    return store


def require(role: Role) -> Callable[..., Principal]:
    """A dependency that admits keys of ``role`` or above and returns who made the request.

    Args:
        role: The least role the route needs.

    Returns:
        A FastAPI dependency returning the request's :class:`Principal`; it raises
        :class:`ApiError` 401 (no key, unknown key) or 403 (role too low).

    """

    def dependency(
        request: Request,
        _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
        _api_key: Annotated[str | None, Security(api_key_scheme)],
    ) -> Principal:
        token = presented_token(request)
        if token is None:
            raise ApiError(
                401,
                "unauthorized",
                "expected an API key in 'Authorization: Bearer <key>' or 'X-API-Key', got none",
                headers=_CHALLENGE,
            )
        principal = _key_store(request).authenticate(token)
        if principal is None:
            raise ApiError(
                401,
                "unauthorized",
                "expected a valid API key, got an unknown or revoked one",
                headers=_CHALLENGE,
            )
        if not principal.has_role(role):
            raise ApiError(
                403,
                "forbidden",
                f"expected a key with role {role} or above, got {principal.name!r} "
                f"with role {principal.role}",
            )
        return principal

    dependency.__name__ = f"require_{role}"
    return dependency


Viewer = Annotated[Principal, Depends(require("viewer"))]
"""A route parameter: the caller, who must be a viewer or above."""
Operator = Annotated[Principal, Depends(require("operator"))]
"""A route parameter: the caller, who must be an operator or above."""
