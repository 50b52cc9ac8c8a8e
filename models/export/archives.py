"""One member out of an archive, following ``!`` into archives nested inside it.

Wheels and zips (zip), npm tarballs (gzip tar), Debian packages (``ar`` holding a
``data.tar.*``; read with ``dpkg-deb --fsys-tarfile``) and plain tars. Members are read by
name only: nothing is extracted to disk but the one file asked for, so a hostile archive
cannot write elsewhere.
"""

from __future__ import annotations

import difflib
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from lensflow.shared.errors import ModelError

_CHUNK = 1 << 20
_DPKG_TIMEOUT_S = 300.0


def extract_member(archive: Path, members: Sequence[str], *, dest: Path) -> None:
    """Copy ``members[-1]`` to ``dest``, reaching it through the nested archives before it.

    Args:
        archive: The outer archive (a wheel, zip, tarball or .deb).
        members: The member path in ``archive``, then in each nested archive.
        dest: Where the innermost member is written.

    Raises:
        ModelError: An archive cannot be read, or a member is missing (close names listed).

    """
    with tempfile.TemporaryDirectory(prefix="lensflow-archive-") as scratch:
        current, label = archive, archive.name
        for depth, member in enumerate(members):
            last = depth == len(members) - 1
            target = dest if last else Path(scratch) / f"nested-{depth}{Path(member).suffix}"
            _copy_member(current, member, target, label=label)
            current, label = target, f"{member} (in {label})"


def _copy_member(archive: Path, member: str, dest: Path, *, label: str) -> None:
    if archive.suffix == ".deb":
        with tempfile.TemporaryDirectory(prefix="lensflow-deb-") as scratch:
            tar = Path(scratch) / "data.tar"
            _deb_data(archive, tar)
            _copy_tar_member(tar, member.removeprefix("/"), dest, label=label)
        return
    if zipfile.is_zipfile(archive):
        _copy_zip_member(archive, member, dest, label=label)
        return
    if tarfile.is_tarfile(archive):
        _copy_tar_member(archive, member, dest, label=label)
        return
    raise ModelError(f"{label}: expected a zip, tar or .deb archive to read {member!r} from")


def _copy_zip_member(archive: Path, member: str, dest: Path, *, label: str) -> None:
    try:
        with zipfile.ZipFile(archive) as zipped:
            try:
                info = zipped.getinfo(member)
            except KeyError:
                names = [n for n in zipped.namelist() if not n.endswith("/")]
                raise _missing(label, member, names) from None
            with zipped.open(info) as src, dest.open("wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
    except (zipfile.BadZipFile, OSError) as err:
        raise ModelError(f"cannot read {member!r} from {label}: {err}") from err


def _copy_tar_member(archive: Path, member: str, dest: Path, *, label: str) -> None:
    try:
        with tarfile.open(archive) as tarred:
            wanted = {member, f"./{member}"}
            found = next((m for m in tarred if m.name in wanted and m.isfile()), None)
            if found is None:
                names = [m.name.removeprefix("./") for m in tarred.getmembers() if m.isfile()]
                raise _missing(label, member, names)
            src = tarred.extractfile(found)
            if src is None:
                raise ModelError(f"{label}: {member!r} is not a regular file")
            with src, dest.open("wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
    except (tarfile.TarError, OSError) as err:
        raise ModelError(f"cannot read {member!r} from {label}: {err}") from err


def _deb_data(deb: Path, tar: Path) -> None:
    """Write a Debian package's file-system tarball (``dpkg-deb --fsys-tarfile``) to ``tar``."""
    dpkg = shutil.which("dpkg-deb")
    if dpkg is None:
        raise ModelError(f"reading {deb.name} needs dpkg-deb (Debian's dpkg), not found on PATH")
    with tar.open("wb") as out:
        try:
            done = subprocess.run(  # noqa: S603 - fixed argv, no shell
                [dpkg, "--fsys-tarfile", str(deb)],
                stdout=out,
                stderr=subprocess.PIPE,
                timeout=_DPKG_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise ModelError(f"dpkg-deb could not read {deb.name}: {err}") from err
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()
        raise ModelError(f"dpkg-deb --fsys-tarfile {deb.name} failed: {message}")


def _missing(label: str, member: str, names: list[str]) -> ModelError:
    close = difflib.get_close_matches(member, names, n=5, cutoff=0.3)
    hint = ", ".join(close or names[:10]) or "(empty)"
    return ModelError(f"{label} has no member {member!r}; close names: {hint}")
