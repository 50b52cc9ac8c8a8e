"""API keys: random tokens, stored only as their sha256, each with a name and a role.

The ``api_keys`` table lives on a :class:`~sqlalchemy.MetaData` of its own, not on the
results schema's ``Base``: it is created with ``create_all(checkfirst=True)`` when the API
(or ``lensflow cloud keys create``) starts, outside the Alembic migrations. An Alembic
autogenerate run against a database that has it would propose dropping it: exclude
``api_keys`` there (or move it into a migration).

A token is ``lfk_`` + 32 random bytes (URL-safe base64); the database keeps its sha256, so
a leaked database does not leak usable keys, and the token is shown once, at creation.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

from sqlalchemy import CheckConstraint, Engine, MetaData, String, inspect, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lensflow.cloud.storage.db import session_factory
from lensflow.cloud.storage.models import NAMING_CONVENTION, BigIntPK, UtcDateTime, utcnow
from lensflow.shared.errors import LensflowError

Role = Literal["viewer", "operator", "admin"]
"""What a key may do: viewers read, operators also relabel, admins also undo others' work."""
ROLES: tuple[Role, ...] = get_args(Role)
ROLE_RANK: dict[str, int] = {role: rank for rank, role in enumerate(ROLES)}
"""``viewer < operator < admin``."""
TOKEN_PREFIX = "lfk_"  # noqa: S105 - a marker, not a secret


class ApiKeyError(LensflowError):
    """An API key could not be created, found or stored."""


class KeyBase(DeclarativeBase):
    """Declarative base of the API's own tables (not part of the Alembic-managed schema)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ApiKey(KeyBase):
    """An API key: its name (the actor recorded in audit trails), role and token hash."""

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("role IN ('viewer', 'operator', 'admin')", name="role"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


@dataclass(frozen=True)
class Principal:
    """Who made a request: the key's name and role."""

    name: str
    role: Role

    def has_role(self, role: Role) -> bool:
        """Whether this principal's role is ``role`` or above."""
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


@dataclass(frozen=True)
class IssuedKey:
    """A key just created: the only time its token is known."""

    name: str
    role: Role
    token: str


def hash_token(token: str) -> str:
    """The sha256 (hex) under which a token is stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class KeyStore:
    """Create, authenticate and revoke API keys in the ``api_keys`` table."""

    def __init__(self, engine: Engine) -> None:
        """Keep keys in the database behind ``engine``.

        Args:
            engine: An engine from :func:`lensflow.cloud.storage.db.create_engine_for`.

        """
        self.engine = engine
        self._sessions = session_factory(engine)

    def ensure_table(self) -> None:
        """Create the ``api_keys`` table if it does not exist (safe to call concurrently).

        Raises:
            ApiKeyError: If the table can neither be created nor found.

        """
        try:
            KeyBase.metadata.create_all(self.engine, checkfirst=True)
        except SQLAlchemyError as err:
            # another process may have created it between the check and the CREATE
            if not inspect(self.engine).has_table(ApiKey.__tablename__):
                raise ApiKeyError(f"could not create the api_keys table: {err}") from err

    def create(self, *, name: str, role: Role) -> IssuedKey:
        """Create a key.

        Args:
            name: A unique name (1-128 characters): the actor in the audit trail.
            role: ``viewer``, ``operator`` or ``admin``.

        Returns:
            The new key with its token (shown once; only its hash is stored).

        Raises:
            ApiKeyError: If the name or role is invalid, the name is taken, or the write fails.

        """
        if not 1 <= len(name) <= 128 or not name.isprintable():
            raise ApiKeyError(f"expected a printable key name of 1-128 characters, got {name!r}")
        if role not in ROLE_RANK:
            raise ApiKeyError(f"expected a role among {', '.join(ROLES)}, got {role!r}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = ApiKey(name=name, role=role, token_sha256=hash_token(token))
        try:
            with self._sessions.begin() as session:
                session.add(row)
        except IntegrityError as err:
            raise ApiKeyError(f"expected a new key name, got {name!r}, which exists") from err
        except SQLAlchemyError as err:
            raise ApiKeyError(f"could not store the key {name!r}: {err}") from err
        return IssuedKey(name=name, role=role, token=token)

    def authenticate(self, token: str) -> Principal | None:
        """Return who holds ``token``, or None for an unknown or revoked token.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: If the database cannot be read.

        """
        query = select(ApiKey.name, ApiKey.role).where(
            ApiKey.token_sha256 == hash_token(token), ApiKey.revoked_at.is_(None)
        )
        with self._sessions() as session:
            row = session.execute(query).one_or_none()
        if row is None or row.role not in ROLE_RANK:
            return None
        role: Role = row.role
        return Principal(name=row.name, role=role)

    def revoke(self, name: str) -> bool:
        """Revoke the key called ``name``; return False if there is no such active key."""
        with self._sessions.begin() as session:
            key = session.scalars(
                select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
            ).one_or_none()
            if key is None:
                return False
            key.revoked_at = utcnow()
        return True
