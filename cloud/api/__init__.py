"""The cloud tier's HTTP API (FastAPI).

Public API:

- :func:`~lensflow.cloud.api.app.create_app` — the application, from a ``CloudConfig``.
- :class:`~lensflow.cloud.api.keys.KeyStore`, :class:`~lensflow.cloud.api.keys.Principal` — API
  keys (stored
  hashed) and who made a request.
- :func:`~lensflow.cloud.api.auth.require` — the role dependency (``viewer < operator < admin``).
"""

from lensflow.cloud.api.app import create_app
from lensflow.cloud.api.auth import require
from lensflow.cloud.api.keys import ApiKeyError, IssuedKey, KeyStore, Principal

__all__ = ["ApiKeyError", "IssuedKey", "KeyStore", "Principal", "create_app", "require"]
