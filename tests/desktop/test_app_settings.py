"""Remembering the connection: the key in a keyring when there is one, else in a 0600 file."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail
from PySide6.QtCore import QSettings

from lensflow.desktop.settings import Connection, SettingsStore


class MemoryKeyring(KeyringBackend):
    """A keyring that keeps passwords in a dict (behaves like a real one)."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.passwords: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.passwords.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.passwords[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.passwords.pop((service, username))


@pytest.fixture
def use_keyring(request: pytest.FixtureRequest) -> Iterator[KeyringBackend]:
    before = keyring.get_keyring()
    backend: KeyringBackend = MemoryKeyring() if request.param else fail.Keyring()  # type: ignore[no-untyped-call]
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(before)


def _store(tmp_path: Path) -> SettingsStore:
    return SettingsStore(QSettings(str(tmp_path / "review.ini"), QSettings.Format.IniFormat))


@pytest.mark.parametrize("use_keyring", [True], indirect=True)
def test_the_key_goes_to_the_keyring_not_the_settings_file(
    use_keyring: MemoryKeyring, tmp_path: Path
) -> None:
    saved = _store(tmp_path).save(Connection(url="http://api:8080", key="lfk_secret"))

    assert saved.in_keyring
    assert "lfk_secret" not in (tmp_path / "review.ini").read_text()
    assert _store(tmp_path).load() == Connection(url="http://api:8080", key="lfk_secret")


@pytest.mark.parametrize("use_keyring", [False], indirect=True)
def test_without_a_keyring_the_key_goes_to_a_file_only_its_owner_reads(
    use_keyring: KeyringBackend, tmp_path: Path
) -> None:
    saved = _store(tmp_path).save(Connection(url="http://api:8080", key="lfk_secret"))

    key_file = tmp_path / "review.key"
    assert not saved.in_keyring
    assert str(key_file) in saved.where and "readable only by you" in saved.where
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "lfk_secret" not in (tmp_path / "review.ini").read_text()  # the 0644 settings file
    assert _store(tmp_path).load() == Connection(url="http://api:8080", key="lfk_secret")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".review.key")] == []


@pytest.mark.parametrize(
    ("use_keyring", "says"),
    [
        (True, "the OS keyring (MemoryKeyring)"),  # a keyring exists: it takes the key
        (False, "review.key (readable only by you; no OS keyring here)"),  # none: the file
    ],
    indirect=["use_keyring"],
)
def test_the_store_says_where_a_key_would_go(
    use_keyring: KeyringBackend, tmp_path: Path, says: str
) -> None:
    assert _store(tmp_path).key_destination().endswith(says)


@pytest.mark.parametrize("use_keyring", [False], indirect=True)
def test_a_key_an_older_version_left_in_the_settings_file_is_moved_out(
    use_keyring: KeyringBackend, tmp_path: Path
) -> None:
    old = QSettings(str(tmp_path / "review.ini"), QSettings.Format.IniFormat)
    old.setValue("connection/url", "http://api:8080")
    old.setValue("connection/key", "lfk_legacy")
    old.sync()

    loaded = _store(tmp_path).load()

    assert loaded == Connection(url="http://api:8080", key="lfk_legacy")
    assert "lfk_legacy" not in (tmp_path / "review.ini").read_text()
    assert stat.S_IMODE((tmp_path / "review.key").stat().st_mode) == 0o600


@pytest.mark.parametrize("use_keyring", [False], indirect=True)
def test_a_key_file_others_could_read_is_made_private(
    use_keyring: KeyringBackend, tmp_path: Path
) -> None:
    _store(tmp_path).save(Connection(url="http://api:8080", key="lfk_secret"))
    key_file = tmp_path / "review.key"
    key_file.chmod(0o644)

    assert _store(tmp_path).load() == Connection(url="http://api:8080", key="lfk_secret")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


@pytest.mark.parametrize("use_keyring", [True, False], indirect=True)
def test_forget_removes_url_and_key(use_keyring: KeyringBackend, tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.save(Connection(url="http://api:8080", key="lfk_secret"))

    store.forget()

    assert _store(tmp_path).load() is None
