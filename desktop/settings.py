"""Where the app remembers its connection: the URL in QSettings, the key in the OS keyring.

The API key goes to the platform's keyring (Secret Service, macOS Keychain, Windows
Credential Locker) through ``keyring``. Where there is none (a headless box: keyring's
``fail`` backend), the key is kept in the QSettings file instead and :attr:`SavedKey.where`
says so, so the app can tell the operator it is stored in plain text and where.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from PySide6.QtCore import QSettings

logger = logging.getLogger(__name__)

ORGANIZATION = "lensflow"
APPLICATION = "review"
KEYRING_SERVICE = "lensflow-review"
DEFAULT_URL = "http://127.0.0.1:8080"
_URL = "connection/url"
_PLAIN_KEY = "connection/key"  # only where no keyring exists


@dataclass(frozen=True)
class Connection:
    """An API URL and the key to use there."""

    url: str
    key: str


@dataclass(frozen=True)
class SavedKey:
    """Where a saved key went: ``keyring`` (with the backend's name) or ``plain text``."""

    in_keyring: bool
    where: str


class SettingsStore:
    """Load and save the connection (URL in QSettings, key in the keyring where there is one)."""

    def __init__(self, settings: QSettings | None = None) -> None:
        """Use ``settings`` (the app's user settings by default).

        Args:
            settings: A QSettings to use (tests pass one on a temporary file).

        """
        self.settings = settings or QSettings(ORGANIZATION, APPLICATION)

    def load(self) -> Connection | None:
        """The saved connection, or None if there is no saved URL."""
        url = self.settings.value(_URL, "", type=str)
        if not isinstance(url, str) or not url:
            return None
        key = _keyring_get(url)
        if key is None:
            plain = self.settings.value(_PLAIN_KEY, "", type=str)
            key = plain if isinstance(plain, str) else ""
        return Connection(url=url, key=key)

    def save(self, connection: Connection) -> SavedKey:
        """Remember ``connection``; the key in the keyring if possible.

        Returns:
            Where the key went, for a message to the operator.

        """
        self.settings.setValue(_URL, connection.url)
        backend = _keyring_set(connection.url, connection.key)
        if backend is not None:
            self.settings.remove(_PLAIN_KEY)
            self.settings.sync()
            return SavedKey(in_keyring=True, where=f"the OS keyring ({backend})")
        self.settings.setValue(_PLAIN_KEY, connection.key)
        self.settings.sync()
        return SavedKey(
            in_keyring=False,
            where=f"plain text in {self.settings.fileName()} (no OS keyring is available)",
        )

    def forget(self) -> None:
        """Remove the saved key (keyring and settings) and URL."""
        url = self.settings.value(_URL, "", type=str)
        if isinstance(url, str) and url:
            _keyring_delete(url)
        self.settings.remove(_PLAIN_KEY)
        self.settings.remove(_URL)
        self.settings.sync()


def _usable_keyring() -> object | None:
    """The keyring backend, or None where only keyring's ``fail`` backend exists."""
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return None
    backend = keyring.get_keyring()
    return None if isinstance(backend, fail.Keyring) else backend


def _keyring_get(url: str) -> str | None:
    backend = _usable_keyring()
    if backend is None:
        return None
    import keyring
    from keyring.errors import KeyringError

    try:
        return keyring.get_password(KEYRING_SERVICE, url)
    except KeyringError as err:
        logger.warning("cannot read the API key from the keyring: %s", err)
        return None


def _keyring_set(url: str, key: str) -> str | None:
    """Store the key; the backend's name, or None if no keyring took it."""
    backend = _usable_keyring()
    if backend is None:
        return None
    import keyring
    from keyring.errors import KeyringError

    try:
        keyring.set_password(KEYRING_SERVICE, url, key)
    except KeyringError as err:
        logger.warning("cannot store the API key in the keyring: %s", err)
        return None
    return type(backend).__name__


def _keyring_delete(url: str) -> None:
    if _usable_keyring() is None:
        return
    import keyring
    from keyring.errors import KeyringError, PasswordDeleteError

    try:
        keyring.delete_password(KEYRING_SERVICE, url)
    except PasswordDeleteError:
        return  # nothing was stored
    except KeyringError as err:
        logger.warning("cannot delete the API key from the keyring: %s", err)
