"""Model bundles: an exported artifact folder as one content-addressed file.

A bundle is an uncompressed tar of an artifact folder — its ``model_card.json`` and every
file the card's ``files`` names — written deterministically (sorted names, no owners, no
times), so the same folder always makes the same bytes and the bundle's sha256 names it.
The registry (the cloud API) stores bundles by that sha256; an edge config names one as
``detector.model: "sha256:<hex>"`` and the edge downloads, verifies and unpacks it.

Validation is the same on both sides: regular files only, relative names without ``..``, a
card with a name, input size, class names and a ``files`` map that lists every other member
with its sha256; every member hashes as declared.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from lensflow.shared.errors import ModelError

CARD_NAME = "model_card.json"
"""The model card's name inside an artifact folder and a bundle."""
REF_PREFIX = "sha256:"
"""How an edge config names a bundle: ``sha256:<64 hex>``."""
MAX_MEMBERS = 64
MAX_CARD_BYTES = 1_000_000
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


class BundleError(ModelError):
    """A bundle (or an unpacked one) is not what its card declares."""


@dataclass(frozen=True)
class BundleCard:
    """What a bundle's model card says, as the registry lists it and the edge checks it.

    Attributes:
        name: The model's name.
        family: The detector family (``yolo``, ``ssd``, ``ssd-tflite``), from the card or
            guessed from the artifact's suffix.
        format: The artifact format (``onnx``, ``openvino``, ``tflite``...).
        precision: Of the weights (``fp32``, ``int8``, ``uint8``...).
        input_size: Height and width the model expects.
        classes: Class id to name.
        artifact: The model file, relative to the bundle's root.
        files: Every file of the bundle but the card, with its sha256.
        licence: The weights' licence, when the card names one.
        accuracy: The accuracy gate's result (f1, threshold, passed...), when there is one.
        source: Where the weights came from.
        raw: The whole card, as JSON.

    """

    name: str
    family: str
    format: str
    precision: str
    input_size: tuple[int, int]
    classes: dict[int, str]
    artifact: str
    files: dict[str, str]
    licence: str | None
    accuracy: dict[str, Any] | None
    source: str | None
    raw: dict[str, Any]


def parse_model_ref(model: str) -> str | None:
    """The bundle sha256 of a ``detector.model`` of the form ``sha256:<hex>``, else None."""
    if not model.startswith(REF_PREFIX):
        return None
    digest = model[len(REF_PREFIX) :].lower()
    if not _SHA256.fullmatch(digest):
        raise BundleError(f"expected 'sha256:' and 64 hex digits, got {model!r}")
    return digest


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pack_bundle(folder: Path, out: Path) -> tuple[str, BundleCard]:
    """Write the bundle of an artifact folder to ``out``; its sha256 and card.

    Raises:
        BundleError: The folder has no valid card, or a file does not hash as declared.

    """
    card = parse_card(_read_card_bytes(folder / CARD_NAME))
    for name, expected in card.files.items():
        _check_hash(name, expected=expected, got=_hash_or_missing(folder / name))
    with (
        out.open("wb") as stream,
        tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name in [CARD_NAME, *sorted(card.files)]:
            info = tarfile.TarInfo(name)
            info.size = (folder / name).stat().st_size
            info.mode = 0o644
            with (folder / name).open("rb") as member:
                tar.addfile(info, member)
    return sha256_file(out), card


def inspect_bundle(path: Path) -> BundleCard:
    """Validate a bundle file without unpacking it; its card.

    Raises:
        BundleError: Not a tar, an unsafe or undeclared member, no (valid) card, or a member
            that does not hash as the card declares.

    """
    try:
        with tarfile.open(path, mode="r:") as tar:
            members = _members(tar.getmembers())
            card = parse_card(_read_member(tar, members, CARD_NAME, limit=MAX_CARD_BYTES))
            _check_declared(card, members)
            for name, expected in card.files.items():
                _check_hash(name, expected=expected, got=_hash_stream(tar, members[name]))
    except tarfile.TarError as err:
        raise BundleError(f"expected a tar bundle, got unreadable bytes: {err}") from err
    return card


def unpack_bundle(path: Path, dest: Path) -> BundleCard:
    """Validate a bundle and unpack it to ``dest`` atomically (a sibling temp folder, renamed).

    Raises:
        BundleError: As :func:`inspect_bundle`.

    """
    card = inspect_bundle(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar.getmembers():
                target = scratch / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:
                    raise BundleError(f"expected a regular file {member.name!r} in the bundle")
                with source, target.open("wb") as out:
                    shutil.copyfileobj(source, out, _CHUNK)
        verify_folder(scratch)  # what landed on disk, not only what was read
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(scratch, dest)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return card


def verify_folder(folder: Path) -> BundleCard:
    """Check an unpacked bundle: its card, and every file's sha256; the card.

    Raises:
        BundleError: No valid card, or a file missing or not hashing as declared.

    """
    card = parse_card(_read_card_bytes(folder / CARD_NAME))
    for name, expected in card.files.items():
        _check_hash(name, expected=expected, got=_hash_or_missing(folder / name))
    return card


def parse_card(data: bytes) -> BundleCard:
    """Read the fields the registry and the edge need from a model card's JSON.

    Raises:
        BundleError: Not a JSON object, or a field missing or of the wrong type.

    """
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"expected {CARD_NAME} to be JSON, got {err}") from err
    if not isinstance(raw, dict):
        raise BundleError(f"expected {CARD_NAME} to hold an object, got {type(raw).__name__}")
    files = _field(raw, "files", dict)
    bad = {k: v for k, v in files.items() if not isinstance(v, str) or not _SHA256.fullmatch(v)}
    if bad or not files:
        raise BundleError(f"expected card files to map names to sha256 hex digests, got {files}")
    for name in files:
        _check_name(name)
    artifact = _field(raw, "artifact", str)
    if artifact not in files:
        raise BundleError(
            f"expected the artifact {artifact!r} among the card's files {sorted(files)}"
        )
    size = _field(raw, "input_size", list)
    if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
        raise BundleError(f"expected input_size to be [height, width], got {size}")
    names = _field(raw, "class_names", dict)
    try:
        classes = {int(k): str(v) for k, v in names.items()}
    except ValueError as err:
        raise BundleError(f"expected class_names keyed by class id, got {names}") from err
    accuracy = raw.get("accuracy")
    fmt = _field(raw, "format", str)
    return BundleCard(
        name=_field(raw, "name", str),
        family=str(raw.get("family") or _family(artifact)),
        format=fmt,
        precision=_field(raw, "precision", str),
        input_size=(size[0], size[1]),
        classes=classes,
        artifact=artifact,
        files=dict(files),
        licence=_text(raw.get("license") or raw.get("licence")),
        accuracy=accuracy if isinstance(accuracy, dict) else None,
        source=_text(raw.get("source")),
        raw=raw,
    )


def _family(artifact: str) -> str:
    return {".pb": "ssd", ".tflite": "ssd-tflite"}.get(PurePosixPath(artifact).suffix, "yolo")


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _field(raw: dict[str, Any], key: str, kind: type) -> Any:
    value = raw.get(key)
    if not isinstance(value, kind):
        raise BundleError(f"expected card field {key!r} of type {kind.__name__}, got {value!r}")
    return value


def _check_name(name: str) -> None:
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\\" in name:
        raise BundleError(f"expected a relative file name inside the bundle, got {name!r}")


def _members(members: Iterable[tarfile.TarInfo]) -> dict[str, tarfile.TarInfo]:
    found: dict[str, tarfile.TarInfo] = {}
    for member in members:
        _check_name(member.name)
        if not member.isfile():
            raise BundleError(f"expected only regular files in the bundle, got {member.name!r}")
        if member.name in found:
            raise BundleError(f"expected each file once in the bundle, got {member.name!r} twice")
        found[member.name] = member
        if len(found) > MAX_MEMBERS:
            raise BundleError(f"expected at most {MAX_MEMBERS} files in the bundle, got more")
    return found


def _check_declared(card: BundleCard, members: dict[str, tarfile.TarInfo]) -> None:
    present = set(members) - {CARD_NAME}
    if present != set(card.files):
        raise BundleError(
            f"expected the bundle to hold the card's files {sorted(card.files)}, "
            f"got {sorted(present)}"
        )


def _read_member(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str, *, limit: int
) -> bytes:
    member = members.get(name)
    if member is None:
        raise BundleError(f"expected a {name} in the bundle, got files {sorted(members)}")
    if member.size > limit:
        raise BundleError(f"expected {name} of at most {limit} bytes, got {member.size}")
    stream = tar.extractfile(member)
    if stream is None:
        raise BundleError(f"expected {name} to be a regular file")
    with stream:
        return stream.read()


def _hash_stream(tar: tarfile.TarFile, member: tarfile.TarInfo) -> str:
    stream: BinaryIO | None = tar.extractfile(member)  # type: ignore[assignment]
    if stream is None:
        raise BundleError(f"expected {member.name!r} to be a regular file")
    digest = hashlib.sha256()
    with stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _hash_or_missing(path: Path) -> str | None:
    return sha256_file(path) if path.is_file() else None


def _check_hash(name: str, *, expected: str, got: str | None) -> None:
    if got is None:
        raise BundleError(f"expected the file {name!r} that the card declares, got none")
    if got != expected:
        raise BundleError(f"expected {name!r} to have sha256 {expected}, got {got}")


def _read_card_bytes(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_CARD_BYTES:
            raise BundleError(f"expected {CARD_NAME} of at most {MAX_CARD_BYTES} bytes")
        return path.read_bytes()
    except FileNotFoundError as err:
        raise BundleError(f"expected a {CARD_NAME} in the artifact folder, got none") from err
