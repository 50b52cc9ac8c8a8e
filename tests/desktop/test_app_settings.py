"""Remembering the connection: the key in a keyring when there is one, plain text otherwise."""

from __future__ import annotations

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
def test_without_a_keyring_the_key_is_kept_and_the_operator_told_where(
    use_keyring: KeyringBackend, tmp_path: Path
) -> None:
    saved = _store(tmp_path).save(Connection(url="http://api:8080", key="lfk_secret"))

    assert not saved.in_keyring
    assert "plain text" in saved.where and "review.ini" in saved.where
    assert _store(tmp_path).load() == Connection(url="http://api:8080", key="lfk_secret")


@pytest.mark.parametrize("use_keyring", [True, False], indirect=True)
def test_forget_removes_url_and_key(use_keyring: KeyringBackend, tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.save(Connection(url="http://api:8080", key="lfk_secret"))

    store.forget()

    assert _store(tmp_path).load() is None
