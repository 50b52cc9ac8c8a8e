"""Where the app remembers its connection: the URL in QSettings, the key in the OS keyring.

The API key goes to the platform's keyring (Secret Service, macOS Keychain, Windows
Credential Locker) through ``keyring``. Where there is none (a headless box: keyring's
``fail`` backend), it goes to a key file beside the settings file (``review.key``), created
with mode 0600 (readable by its owner only) and written atomically; never to the settings
file, which is world-readable on most systems. :meth:`SettingsStore.key_destination` says
which before the key is saved (the connect dialog shows it), :class:`SavedKey` after.

A key kept in the settings file by an older version is moved out on first load.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import platformdirs
from PySide6.QtCore import QSettings

logger = logging.getLogger(__name__)

ORGANIZATION = "lensflow"
APPLICATION = "review"
KEYRING_SERVICE = "lensflow-review"
DEFAULT_URL = "http://127.0.0.1:8080"
KEY_FILE_MODE = 0o600
_URL = "connection/url"
_LEGACY_PLAIN_KEY = "connection/key"  # where versions before the key file kept it


@dataclass(frozen=True)
class Connection:
    """An API URL and the key to use there."""

    url: str
    key: str


@dataclass(frozen=True)
class SavedKey:
    """Where a saved key went: the keyring (with the backend's name), or the key file."""

    in_keyring: bool
    where: str


class SettingsStore:
    """Load and save the connection (URL in QSettings, key in the keyring or a 0600 file)."""

    def __init__(self, settings: QSettings | None = None, *, key_file: Path | None = None) -> None:
        """Use ``settings`` (the app's user settings by default).

        Args:
            settings: A QSettings to use (tests pass one on a temporary file).
            key_file: Where a key goes when no keyring exists; beside the settings file
                (``review.key``) by default.

        """
        self.settings = settings or QSettings(ORGANIZATION, APPLICATION)
        self.key_file = key_file or _default_key_file(self.settings)

    def key_destination(self) -> str:
        """Where :meth:`save` would put a key now, for the operator to read."""
        backend = _usable_keyring()
        if backend is not None:
            return f"the OS keyring ({type(backend).__name__})"
        return f"{self.key_file} (readable only by you; no OS keyring here)"

    def load(self) -> Connection | None:
        """The saved connection, or None if there is no saved URL."""
        url = self.settings.value(_URL, "", type=str)
        if not isinstance(url, str) or not url:
            return None
        self._move_legacy_key(url)
        key = _keyring_get(url)
        if key is None:
            key = _read_key_file(self.key_file).get(url, "")
        return Connection(url=url, key=key)

    def save(self, connection: Connection) -> SavedKey:
        """Remember ``connection``; the key in the keyring if possible, else in the key file.

        Returns:
            Where the key went, for a message to the operator.

        Raises:
            OSError: If no keyring took the key and the key file cannot be written.

        """
        self.settings.setValue(_URL, connection.url)
        self.settings.remove(_LEGACY_PLAIN_KEY)
        self.settings.sync()
        backend = _keyring_set(connection.url, connection.key)
        if backend is not None:
            self._forget_in_file(connection.url)
            return SavedKey(in_keyring=True, where=f"the OS keyring ({backend})")
        keys = _read_key_file(self.key_file)
        keys[connection.url] = connection.key
        _write_key_file(self.key_file, keys)
        return SavedKey(
            in_keyring=False,
            where=f"{self.key_file} (readable only by you; no OS keyring is available)",
        )

    def forget(self) -> None:
        """Remove the saved key (keyring and key file) and URL."""
        url = self.settings.value(_URL, "", type=str)
        if isinstance(url, str) and url:
            _keyring_delete(url)
            self._forget_in_file(url)
        self.settings.remove(_LEGACY_PLAIN_KEY)
        self.settings.remove(_URL)
        self.settings.sync()

    def _forget_in_file(self, url: str) -> None:
        keys = _read_key_file(self.key_file)
        if url in keys:
            del keys[url]
            _write_key_file(self.key_file, keys)

    def _move_legacy_key(self, url: str) -> None:
        """Move a key an older version kept in the settings file to where keys go now."""
        plain = self.settings.value(_LEGACY_PLAIN_KEY, "", type=str)
        if not isinstance(plain, str) or not plain:
            return
        try:
            saved = self.save(Connection(url=url, key=plain))
        except OSError as err:
            logger.warning("the API key stays in %s: %s", self.settings.fileName(), err)
            return
        logger.warning(
            "moved the API key out of the settings file %s into %s",
            self.settings.fileName(),
            saved.where,
        )


def _default_key_file(settings: QSettings) -> Path:
    """``review.key`` beside a settings file; in the user's config folder for the registry."""
    if settings.format() == QSettings.Format.NativeFormat and sys.platform == "win32":
        return Path(platformdirs.user_config_dir(ORGANIZATION)) / f"{APPLICATION}.key"
    path = Path(settings.fileName())
    return path.with_name(f"{path.stem}.key")


def _read_key_file(path: Path) -> dict[str, str]:
    """The keys by URL in the key file (none if it is missing); its mode tightened to 0600."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077 and sys.platform != "win32":
            logger.warning("%s was readable by others (mode %o); now 0600", path, mode)
            path.chmod(KEY_FILE_MODE)
        keys = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        logger.warning("cannot read the API keys in %s: %s", path, err)
        return {}
    if not isinstance(keys, dict):
        logger.warning("expected a JSON object of keys by URL in %s; ignored", path)
        return {}
    return {str(url): str(key) for url, key in keys.items()}


def _write_key_file(path: Path, keys: dict[str, str]) -> None:
    """Write the keys atomically into a file created 0600 (never briefly readable by others)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # 0600
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(keys, stream, indent=1)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, KEY_FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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
