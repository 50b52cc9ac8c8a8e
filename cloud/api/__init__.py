"""The cloud tier's HTTP API (FastAPI).

Public API:

- :func:`~cloud.api.app.create_app` — the application, from a ``CloudConfig``.
- :class:`~cloud.api.keys.KeyStore`, :class:`~cloud.api.keys.Principal` — API keys (stored
  hashed) and who made a request.
- :func:`~cloud.api.auth.require` — the role dependency (``viewer < operator < admin``).
"""

from cloud.api.app import create_app
from cloud.api.auth import require
from cloud.api.keys import ApiKeyError, IssuedKey, KeyStore, Principal

__all__ = ["ApiKeyError", "IssuedKey", "KeyStore", "Principal", "create_app", "require"]
