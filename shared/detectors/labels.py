"""Class names from a labels file beside a model (TFLite and Coral models ship one).

Two layouts are read: ``ID  NAME`` per line (Coral's ``coco_labels.txt``, ids with gaps: 0
person, 1 bicycle, ..., 11 stop sign) or one name per line (the line number is the id).
"""

from __future__ import annotations

import re
from pathlib import Path

from lensflow.shared.errors import ModelError

_NUMBERED = re.compile(r"^\s*(\d+)\s+(\S.*?)\s*$")


def read_labels(path: Path) -> dict[int, str]:
    """Class id → name from a labels file.

    Raises:
        ModelError: The file cannot be read, is empty, or mixes the two layouts.

    """
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise ModelError(f"{path}: cannot read the labels file: {err}") from err
    if not lines:
        raise ModelError(f"{path}: expected class names, one per line, got an empty file")
    numbered = [_NUMBERED.match(line) for line in lines]
    if all(numbered):
        return {int(m.group(1)): m.group(2) for m in numbered if m is not None}
    if any(numbered) and len(lines) > 1 and sum(1 for m in numbered if m) > len(lines) // 2:
        bad = next(line for line, m in zip(lines, numbered, strict=True) if m is None)
        raise ModelError(f"{path}: expected 'ID NAME' on every line, got {bad!r}")
    return {index: line.strip() for index, line in enumerate(lines)}


def labels_beside(model: Path) -> Path:
    """The labels file in a model's folder: ``*labels*.txt`` (exactly one).

    Raises:
        ModelError: None or several.

    """
    found = sorted(model.parent.glob("*labels*.txt"))
    if len(found) != 1:
        got = ", ".join(p.name for p in found) or "none"
        raise ModelError(
            f"{model}: expected one labels file (*labels*.txt) beside the model, got {got}"
        )
    return found[0]
