"""Authentication and roles: one API key per request, in one of two headers.

The rule, checked before the key is looked up:

- a request carries exactly one credential header: ``Authorization: Bearer <key>`` or
  ``X-API-Key: <key>``; both, or either one repeated, is 400 ``ambiguous_credentials``;
- an ``Authorization`` header that is present must be ``Bearer <key>`` (scheme in any case, one
  or more spaces), and an ``X-API-Key`` header that is present must hold a key; a key is
  token68 text (letters, digits, ``-._~+/``, then any ``=``). Anything else is 401, as are no
  key and an unknown or revoked one; the answer names what was expected, never the key.

Every route but the health ones depends on :func:`require`, which applies that rule, then
answers 403 when the key's role is below the route's (``viewer < operator < admin``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers

from lensflow.cloud.api.errors import ApiError
from lensflow.cloud.api.keys import KeyStore, Principal, Role

API_KEY_HEADER = "X-API-Key"
EXPECTED = f"one API key, as 'Authorization: Bearer <key>' or as '{API_KEY_HEADER}: <key>'"
"""What a request must carry, as the error messages say it."""

bearer_scheme = HTTPBearer(
    auto_error=False,
    bearerFormat="API key",
    description=(
        "`Authorization: Bearer <key>`. An `Authorization` header that is present must be "
        f"exactly that (else 401); sending it together with `{API_KEY_HEADER}` is 400."
    ),
)
api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description=(
        f"`{API_KEY_HEADER}: <key>`, the same keys as the bearer scheme; an empty or malformed "
        "value is 401, sending it together with `Authorization` is 400."
    ),
)
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="lensflow"'}
_TOKEN68 = re.compile(r"[A-Za-z0-9._~+/-]+=*")
_BEARER = re.compile(r"(?P<scheme>[^ ]+) +(?P<key>.*)", re.DOTALL)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,19}")
_KEY_CHARS = "letters, digits and -._~+/ (then any =)"
_LOOKED_UP = "lensflow_key_lookup"  # request.state: (token, principal) once looked up


def request_key(headers: Headers) -> str:
    """The one API key that request headers carry, checked for form (not looked up).

    Args:
        headers: The request's headers.

    Returns:
        The key.

    Raises:
        ApiError: 400 ``ambiguous_credentials`` when both credential headers (or one twice)
            are sent; 401 ``unauthorized`` when none is, or the one sent is malformed.

    """
    authorization = headers.getlist("authorization")
    api_keys = headers.getlist(API_KEY_HEADER)
    if len(authorization) + len(api_keys) > 1:
        got = _describe_headers(authorization=len(authorization), api_keys=len(api_keys))
        raise ApiError(400, "ambiguous_credentials", f"expected {EXPECTED}, got {got}")
    if authorization:
        return _bearer_key(authorization[0])
    if api_keys:
        return _header_key(api_keys[0])
    raise _unauthorized(f"expected {EXPECTED}, got none")


def presented_token(request: Request) -> str | None:
    """The key a request carries as :func:`request_key` says; None when it carries none so."""
    try:
        return request_key(request.headers)
    except ApiError:
        return None


def authenticated(request: Request) -> Principal | None:
    """Who the request's key belongs to; None for no key, a malformed, unknown or revoked one.

    The key is looked up once per request: the rate limit (which runs first) and
    :func:`require` share the answer.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: If the database cannot be read.

    """
    token = presented_token(request)
    return None if token is None else _lookup(request, token)


def _lookup(request: Request, token: str) -> Principal | None:
    """The key store's answer for ``token``, kept on the request for its other readers."""
    done: tuple[str, Principal | None] | None = getattr(request.state, _LOOKED_UP, None)
    if done is not None and done[0] == token:
        return done[1]
    principal = _key_store(request).authenticate(token)
    setattr(request.state, _LOOKED_UP, (token, principal))
    return principal


def _bearer_key(value: str) -> str:
    """The key of an ``Authorization`` value, which must be ``Bearer <key>``."""
    match = _BEARER.fullmatch(value.strip(" \t"))
    if match is None or match["scheme"].lower() != "bearer":
        raise _unauthorized(f"expected 'Authorization: Bearer <key>', got {_scheme_of(value)}")
    if not _TOKEN68.fullmatch(match["key"]):
        got = "a malformed key" if match["key"] else "no key"
        raise _unauthorized(
            f"expected 'Authorization: Bearer <key>' with a key of {_KEY_CHARS}, got {got}"
        )
    return match["key"]


def _scheme_of(value: str) -> str:
    """The scheme of an ``Authorization`` value in words; never its credentials."""
    scheme = value.strip(" \t").split(" ", 1)[0]
    if not scheme:
        return "an empty value"
    if scheme.lower() == "bearer":
        return "no key"
    if scheme.lower().startswith("bearer"):
        return "no space between 'Bearer' and the key"
    if _SCHEME.fullmatch(scheme):  # a short token: a scheme name, not a pasted key
        return f"scheme {scheme!r}"
    return "a value that is not '<scheme> <credentials>'"


def _header_key(value: str) -> str:
    """The key of an ``X-API-Key`` value."""
    key = value.strip(" \t")
    if not _TOKEN68.fullmatch(key):
        got = "an empty value" if not key else "a malformed key"
        raise _unauthorized(
            f"expected '{API_KEY_HEADER}: <key>' with a key of {_KEY_CHARS}, got {got}"
        )
    return key


def _describe_headers(*, authorization: int, api_keys: int) -> str:
    """The credential headers a request sent, in words."""
    parts = [
        f"{count} {name} header{'s' if count > 1 else ''}"
        for name, count in (("Authorization", authorization), (API_KEY_HEADER, api_keys))
        if count
    ]
    return " and ".join(parts)


def _unauthorized(message: str) -> ApiError:
    """A 401 with the bearer challenge."""
    return ApiError(401, "unauthorized", message, headers=_CHALLENGE)


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
        :class:`ApiError` 400 (both credential headers), 401 (no key, a malformed, unknown or
        revoked one) or 403 (role too low).

    """

    def dependency(
        request: Request,
        _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
        _api_key: Annotated[str | None, Security(api_key_scheme)],
    ) -> Principal:
        principal = _lookup(request, request_key(request.headers))
        if principal is None:
            raise _unauthorized("expected a valid API key, got an unknown or revoked one")
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
