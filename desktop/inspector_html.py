"""The inspector's facts about a crop, as HTML for its text browser.

Readable first, complete on demand: node names may wrap only after an underscore (never
mid-word), hashes are shortened and shown beside the model's name and precision, a skipped
node says in a few words why (:func:`lensflow.desktop.reasons.short_reason`). What is
shortened is a link whose full text the inspector shows when the pointer rests on it
(:class:`Hover` keeps them); the inspector draws these links as plain text (:data:`LINK_CSS`).
"""

from __future__ import annotations

import html

from lensflow.desktop.api_types import ClassifierOutput, ResultDetail, ResultItem
from lensflow.desktop.client_models import ModelCard
from lensflow.desktop.reasons import short_reason

HASH_SHOWN = 12
"""Hex digits of a hash shown (the rest on hover)."""
WRAP = "\u200b"
"""Zero-width space: where a long name may wrap."""
LINK_CSS = "a {{ color: {color}; text-decoration: none; }}"
"""The document style of the links to full texts: the text's own colour, not underlined."""


class Hover:
    """Full texts of the shortened parts of one rendering, by link."""

    def __init__(self) -> None:
        """None yet."""
        self.texts: dict[str, str] = {}

    def link(self, shown: str, full: str) -> str:
        """``shown`` (HTML) as a link whose full text is ``full``; ``shown`` alone if equal."""
        if full == html.unescape(shown).replace(WRAP, ""):
            return shown
        key = f"full:{len(self.texts)}"
        self.texts[key] = full
        return f'<a href="{key}">{shown}</a>'


def breakable(name: str) -> str:
    """``name`` escaped, wrapping allowed after each ``_`` and ``.`` (never inside a word)."""
    return html.escape(name).replace("_", "_" + WRAP).replace(".", "." + WRAP)


def short_hash(value: str) -> str:
    """A hash cut to :data:`HASH_SHOWN` hex digits (``sha256:`` prefix kept), with ``…``."""
    prefix, _, digits = value.rpartition(":")
    head = f"{prefix}:" if prefix else ""
    return value if len(digits) <= HASH_SHOWN + 1 else f"{head}{digits[:HASH_SHOWN]}…"


def _row(name: str, value_html: str) -> str:
    return f"<tr><td><b>{html.escape(name)}</b></td><td>{value_html}</td></tr>"


def _hash(value: str, hover: Hover) -> str:
    return f"<tt>{hover.link(html.escape(short_hash(value)), value)}</tt>"


def item_html(
    item: ResultItem,
    detail: ResultDetail | None,
    *,
    card: ModelCard | None = None,
    hover: Hover,
    detail_error: str = "",
) -> str:
    """The crop's facts as HTML: detection, provenance, classifier outputs, label history.

    Args:
        item: The crop as listed.
        detail: Its detail, once it arrived (None: it is loading, or failed).
        card: The API's model card of its edge model (None: unknown to the API).
        hover: Collects the full texts of what is shortened.
        detail_error: Why the detail could not be had, if it could not.

    """
    d = item.detection
    parts = [
        f"<h3>{html.escape(item.crop_id)}</h3><table cellspacing=0 cellpadding=2>",
        _row("camera", html.escape(f"{item.site} / {item.camera}")),
        _row("captured", item.captured_at.isoformat(timespec="seconds")),
        _row("edge class", html.escape(f"{d.class_name} ({d.score:.3f})")),
        _row(
            "box",
            ", ".join(f"{v:.0f}" for v in d.box) + f" in {d.frame_width}x{d.frame_height}",
        ),
        _row("track", str(d.track_id) if d.track_id is not None else "-"),
    ]
    for node, label in sorted(item.human_labels.items()):
        parts.append(
            f"<tr><td><b>human label ({breakable(node)})</b></td><td>{html.escape(label)}</td></tr>"
        )
    parts.append("</table>")
    if detail is None:
        if detail_error:
            return "".join(parts) + f"<p><i>Details not loaded: {html.escape(detail_error)}</i></p>"
        return "".join(parts) + "<p><i>loading details…</i></p>"
    parts += _provenance(detail, card, hover)
    parts += _outputs(detail.outputs, hover)
    if detail.history:
        parts.append("<h4>Label history</h4><table cellspacing=0 cellpadding=2>")
        for event in detail.history[-8:]:
            change = f"{_state(event.old_label, event.old_status)} → "
            change += f"{_state(event.new_label, event.new_status)} ("
            parts.append(
                _row(
                    event.at.strftime("%Y-%m-%d %H:%M") + f" {event.actor}",
                    f"{html.escape(change)}{breakable(event.node)})",
                )
            )
        parts.append("</table>")
    return "".join(parts)


def _provenance(detail: ResultDetail, card: ModelCard | None, hover: Hover) -> list[str]:
    p = detail.provenance
    model = (
        f"{html.escape(card.describe())} · {_hash(p.model_sha256, hover)}"
        if card is not None
        else f"{_hash(p.model_sha256, hover)} <i>(no model card on the API)</i>"
    )
    dag = html.escape(p.pipeline_name)
    if p.pipeline_version:
        dag += f" · {_hash(p.pipeline_version, hover)}"
    return [
        "<h4>Provenance</h4><table cellspacing=0 cellpadding=2>",
        _row("edge model", model),
        _row("edge config", _hash(p.config_hash, hover)),
        _row("agent", html.escape(p.agent_version)),
        _row("DAG", dag),
        "</table>",
    ]


def _outputs(outputs: list[ClassifierOutput], hover: Hover) -> list[str]:
    parts = [
        "<h4>Classifier outputs</h4><table cellspacing=0 cellpadding=3 border=0>",
        "<tr><th align=left>node</th><th align=left>label</th><th>score</th>"
        "<th align=left>model</th><th align=left>status</th></tr>",
    ]
    for out in outputs:
        score = f"{out.score:.3f}" if out.score is not None else "-"
        parts.append(
            f"<tr><td>{breakable(out.node)}</td><td>{html.escape(out.label or '-')}</td>"
            f"<td align=right>{score}</td>"
            f"<td>{breakable(out.plugin)} {html.escape(out.plugin_version)}</td>"
            f"<td>{_status(out, hover)}</td></tr>"
        )
    parts.append("</table>")
    return parts


def _status(out: ClassifierOutput, hover: Hover) -> str:
    """``ok``; ``skipped: no car detected``; ``error: …`` (full reasons on hover)."""
    if not out.reason:
        return html.escape(out.status)
    shown = short_reason(out.reason) if out.status == "skipped" else out.reason
    if len(shown) > 60:
        shown = shown[:59].rstrip() + "…"
    return hover.link(html.escape(f"{out.status}: {shown}"), f"{out.status}: {out.reason}")


def _state(label: str | None, status: str | None) -> str:
    """A node's state in the history: its human label and review status (∅: neither)."""
    if status in (None, "relabelled"):
        return label or "∅"
    return f"{label} ({status})" if label else str(status)
