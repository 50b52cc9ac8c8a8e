"""The colour of a person's upper garment (T-shirt, shirt, jacket), without a model.

The torso is a band of the person box below the head (fractions of a standing person's box;
a squat box is taken as the upper part of a body and the band moves down). In that band the
plugin drops skin (a YCrCb skin rule narrowed to the tone of the face above the band) and
background (colours frequent along the crop's border but rare in the middle of the torso),
names every remaining pixel after the nearest palette colour in CIELAB by CIEDE2000, and lets
the pixels vote. A runner-up that is the winner in shadow (same chromaticity, darker) is
merged into it under the lighter name: shading only darkens a garment.

Example node::

    - name: tshirt_color_classification
      class: tshirt_color
      params: {min_garment_pixels: 80, palette: {red: [200, 30, 35], teal: [0, 128, 128]}}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from pydantic import Field, ValidationError, field_validator, model_validator

from lensflow.shared.classifiers.base import BaseClassifier, Context, Image, Output
from lensflow.shared.colors import (
    cie94,
    ciede2000,
    lab_to_rgb,
    rgb_to_lab,
    row_histogram,
    row_median,
    skin_mask,
    srgb_to_linear,
)
from lensflow.shared.config.base import StrictModel
from lensflow.shared.errors import PluginError

FloatArray = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]
Labels = npt.NDArray[np.intp]
RGB = tuple[int, int, int]

UNKNOWN = "unknown"
TILE = 32
"""Side of the square the torso band is resampled to: every crop costs the same."""
CORE = slice(TILE // 4, TILE - TILE // 4)
"""Columns of the torso tile that are almost surely the person (the middle half)."""
HEAD_TILE = 16
BORDER_SAMPLES = 48
"""Pixels taken from each of the left, right and top borders of the crop."""
THUMB = (16, 32)
"""Width and height of the whole crop's thumbnail, for telling a uniform crop."""
SHORTLIST = 6
"""Palette shades per colour compared by CIEDE2000 (the nearest by CIE94)."""
MIN_FACE_PIXELS = 8
"""Skin pixels above the band (of HEAD_TILE**2) needed to trust the face's tone."""
LIT_SHARE, SHADE_RATIO, SHADE_CHROMATICITY = 0.25, 0.3, 0.06
"""The top two colours are one in light and shade when the lighter holds LIT_SHARE of the
garment, the darker at least SHADE_RATIO of its luminance, at the same linear-RGB chromaticity
(within SHADE_CHROMATICITY)."""

DEFAULT_PALETTE: dict[str, list[RGB]] = {
    # several shades per name: a garment in shade or sun is still that colour
    "white": [(245, 245, 245), (215, 218, 222)],
    "black": [(20, 20, 22), (45, 45, 48)],
    "grey": [(128, 128, 128), (90, 90, 92), (170, 170, 172)],
    "red": [(200, 30, 35), (150, 20, 28)],
    "orange": [(240, 130, 30), (200, 95, 20)],
    "yellow": [(240, 210, 40), (200, 175, 30)],
    "green": [(40, 150, 60), (25, 100, 40), (120, 190, 90)],
    "blue": [(40, 90, 200), (70, 130, 210), (30, 60, 150)],
    "navy": [(25, 35, 80), (35, 45, 100)],
    "purple": [(110, 50, 150), (80, 35, 110), (160, 110, 190)],
    "pink": [(240, 150, 180), (225, 100, 150)],
    "brown": [(110, 70, 40), (80, 50, 30), (150, 100, 60)],
    "beige": [(220, 200, 160), (200, 180, 145), (235, 225, 200)],
}


class ShirtColorParams(StrictModel):
    """Parameters of the ``tshirt_color`` node."""

    palette: dict[str, list[RGB]] = Field(
        default_factory=lambda: {name: list(rgbs) for name, rgbs in DEFAULT_PALETTE.items()},
        description="Colour names, each with one or more reference sRGB colours [r, g, b].",
    )
    torso_top: float = Field(0.17, ge=0, lt=1, description="Band top, share of box height.")
    torso_bottom: float = Field(0.5, gt=0, le=1, description="Band bottom, share of height.")
    torso_left: float = Field(0.2, ge=0, lt=0.5, description="Band left, share of box width.")
    torso_right: float = Field(0.8, gt=0.5, le=1, description="Band right, share of width.")
    full_body_aspect: float = Field(
        2.4, gt=0, description="Height/width of a standing person's box; squatter: upper body."
    )
    min_garment_pixels: int = Field(
        40, ge=1, description="Fewer garment pixels (crop pixels) than this: 'unknown'."
    )
    min_contrast: float = Field(
        3.0, ge=0, description="A crop whose CIELAB spread is below this is uniform: 'unknown'."
    )
    skin_tolerance: float = Field(
        18.0, gt=0, description="CIELAB distance from the face's tone within which is skin."
    )
    max_skin_share: float = Field(
        0.6, gt=0, le=1, description="More skin than this in the band: the cloth is skin-toned."
    )
    background_share: float = Field(
        0.08, gt=0, le=1, description="A colour this frequent on the border may be background."
    )
    background_core_ratio: float = Field(
        0.5, gt=0, description="...and is, if under this times as frequent mid-torso."
    )

    @field_validator("palette", mode="before")
    @classmethod
    def _one_colour_is_a_list(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {
            name: [rgb]
            if isinstance(rgb, list | tuple) and rgb and isinstance(rgb[0], int)
            else rgb
            for name, rgb in value.items()
        }

    @field_validator("palette")
    @classmethod
    def _valid_palette(cls, value: dict[str, list[RGB]]) -> dict[str, list[RGB]]:
        if len(value) < 2:
            raise ValueError(f"palette must name at least 2 colours, but got {sorted(value)}")
        for name, colours in value.items():
            if name == UNKNOWN or not colours:
                raise ValueError(f"palette: {name!r} must be a new name with >= 1 [r, g, b]")
            for rgb in colours:
                if not all(0 <= c <= 255 for c in rgb):
                    raise ValueError(f"palette: {name!r} needs [r, g, b] in 0-255, got {list(rgb)}")
        return value

    @model_validator(mode="after")
    def _ordered_band(self) -> ShirtColorParams:
        if self.torso_top >= self.torso_bottom:
            raise ValueError(
                f"torso_top must be < torso_bottom, but got {self.torso_top} >= {self.torso_bottom}"
            )
        return self


def torso_band(height: int, width: int, params: ShirtColorParams) -> tuple[int, int, int, int]:
    """The torso band of a ``height`` x ``width`` person box, as pixels ``(x1, y1, x2, y2)``.

    The fractions describe a standing person's box. A box squatter than
    ``params.full_body_aspect`` is taken as the upper part of a body (a half-length shot): the
    fractions are divided by the share of the body the box shows, and clamped inside it.

    Args:
        height: the crop's height in pixels (> 0).
        width: the crop's width in pixels (> 0).
        params: the band's fractions.

    Returns:
        The band, non-empty and inside the crop.

    """
    shown = min(1.0, height / width / params.full_body_aspect)
    top = min(params.torso_top / shown, 0.5)
    bottom = max(min(params.torso_bottom / shown, 1.0), top + 0.2)
    y1, y2 = int(top * height), int(np.ceil(bottom * height))
    x1, x2 = int(params.torso_left * width), int(np.ceil(params.torso_right * width))
    return x1, min(y1, height - 1), max(x2, x1 + 1), min(max(y2, y1 + 1), height)


@dataclass(frozen=True)
class _Tiles:
    """One crop resampled to fixed shapes, so that a batch stacks into arrays."""

    torso: Image  # (TILE, TILE, 3): the band
    head: Image  # (HEAD_TILE, HEAD_TILE, 3): above the band, for the face's tone
    border: Image  # (3 * BORDER_SAMPLES, 3): left, right and top edges
    thumb: Image  # (THUMB[1], THUMB[0], 3): the whole crop
    band_area: int  # the band's size in crop pixels


def _resample(region: Image, size: tuple[int, int]) -> Image:
    """Resize ``region`` to ``size`` (width, height), averaging where it shrinks."""
    shrinks = region.shape[1] >= size[0] and region.shape[0] >= size[1]
    method = cv2.INTER_AREA if shrinks else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(region, size, interpolation=method), dtype=np.uint8)


def _tiles(image: Image, params: ShirtColorParams) -> _Tiles:
    """Cut and resample the band, the head region above it, the border and the whole crop."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = torso_band(height, width, params)
    strip_w, strip_h = max(1, round(0.05 * width)), max(1, round(0.03 * height))
    strips = [
        _resample(image[:y2, :strip_w], (2, BORDER_SAMPLES // 2)),
        _resample(image[:y2, width - strip_w :], (2, BORDER_SAMPLES // 2)),
        _resample(image[:strip_h], (BORDER_SAMPLES // 2, 2)),
    ]
    return _Tiles(
        torso=np.asarray(cv2.medianBlur(_resample(image[y1:y2, x1:x2], (TILE, TILE)), 3)),
        head=_resample(image[: max(y1, 1), x1:x2], (HEAD_TILE, HEAD_TILE)),
        border=np.concatenate([strip.reshape(-1, 3) for strip in strips]),
        thumb=_resample(image, THUMB),
        band_area=(x2 - x1) * (y2 - y1),
    )


def _is_shade(light: FloatArray, dark: FloatArray) -> bool:
    """Whether sRGB colour ``dark`` is ``light`` in shadow (see SHADE_RATIO)."""
    lit, shaded = srgb_to_linear(light) + 1e-6, srgb_to_linear(dark) + 1e-6
    weights = np.array([0.2126, 0.7152, 0.0722])
    ratio = float(shaded @ weights) / float(lit @ weights)
    drift = float(np.abs(lit / lit.sum() - shaded / shaded.sum()).sum())
    return SHADE_RATIO <= ratio <= 1.0 and drift <= SHADE_CHROMATICITY


def _unknown(reason: str, pixels: dict[str, int]) -> Output:
    """The output for a crop whose garment colour cannot be told."""
    unknown = {"color": UNKNOWN, "confidence": 0.0, "rgb": None, "second": None, "shares": {}}
    return {**unknown, "pixels": pixels, "reason": reason}


class ShirtColor(BaseClassifier):
    """Names the dominant colour of a person's upper garment from a palette (no model)."""

    key = "tshirt_color"
    version = "1"
    outputs = ("color", "confidence", "rgb", "second", "shares", "pixels", "reason")
    Params = ShirtColorParams
    params: ShirtColorParams

    def __init__(self, params: ShirtColorParams | None = None) -> None:
        """Convert the palette to CIELAB once."""
        super().__init__(params)
        self._names = list(self.params.palette)
        shades = [
            (i, rgb) for i, name in enumerate(self._names) for rgb in self.params.palette[name]
        ]
        self._shade_name = np.array([i for i, _ in shades], dtype=np.intp)
        self._shade_lab = rgb_to_lab(np.array([rgb for _, rgb in shades], dtype=np.float64))

    @classmethod
    def label_space(cls, params: Mapping[str, Any]) -> list[str] | None:
        """The palette's colour names in palette order (``unknown`` is no colour: left out).

        None when ``params`` are invalid (the pipeline check reports why).
        """
        try:
            valid = ShirtColorParams.model_validate(dict(params))
        except ValidationError:
            return None
        return list(valid.palette)

    def process(self, image: Image, context: Context) -> Output:
        """Name the garment colour of one person crop, exactly as :meth:`process_batch` does."""
        return self.process_batch([image], [context])[0]

    def process_batch(self, images: Sequence[Image], contexts: Sequence[Context]) -> list[Output]:
        """Name the garment colour of each person crop, the whole batch's pixels at once.

        Args:
            images: BGR uint8 person crops of shape (H, W, 3), any size (empty included).
            contexts: one per image (not used).

        Returns:
            Per image: ``color`` (a palette name or ``"unknown"``), ``confidence`` (0-1: the
            winner's share of the garment pixels less half the runner-up's), ``rgb`` (mean of
            the winner's pixels), ``second`` (the runner-up's name or None), ``shares`` (each
            name's share of garment pixels, >= 1%, before shade merging), ``pixels`` (band,
            skin, background and garment sizes in crop pixels) and ``reason`` (why the colour
            is unknown; None when it is not).

        Raises:
            PluginError: an image is not a (H, W, 3) uint8 array, or the lengths differ.

        """
        if len(images) != len(contexts):
            raise PluginError(
                f"expected one context per image, got {len(contexts)} for {len(images)}"
            )
        slots: list[Output | None] = []
        tiles: list[_Tiles] = []
        for image in images:
            if not (
                isinstance(image, np.ndarray)
                and image.dtype == np.uint8
                and image.ndim == 3
                and image.shape[2] == 3
            ):
                got = f"{getattr(image, 'shape', None)} {getattr(image, 'dtype', type(image))}"
                raise PluginError(f"image must be a BGR uint8 array (H, W, 3), but got {got}")
            if image.size == 0:
                empty = dict.fromkeys(("band", "skin", "background", "garment"), 0)
                slots.append(_unknown("empty crop", empty))
            else:
                slots.append(None)
                tiles.append(_tiles(image, self.params))
        named = iter(self._classify(tiles) if tiles else [])
        return [slot if slot is not None else next(named) for slot in slots]

    def _nearest(self, bgr: Image) -> Labels:
        """The palette name (index) nearest each BGR pixel by CIEDE2000.

        Each distinct colour is named once, and CIEDE2000 is computed only against its
        SHORTLIST nearest palette shades by CIE94 (the cheaper formula agrees on those).
        """
        packed = bgr.astype(np.int64) @ np.array([1, 256, 65536])
        colours, inverse = np.unique(packed.ravel(), return_inverse=True)
        lab = rgb_to_lab(np.stack([colours >> 16, (colours >> 8) & 255, colours & 255], -1))
        rough = cie94(lab[:, None, :], self._shade_lab)
        shortlist = np.argsort(rough, axis=1, kind="stable")[:, :SHORTLIST]
        exact = ciede2000(lab[:, None, :], self._shade_lab[shortlist])
        best = np.take_along_axis(shortlist, np.argmin(exact, axis=1)[:, None], axis=1)[:, 0]
        labels: Labels = self._shade_name[best][inverse].reshape(packed.shape)
        return labels

    def _skin(self, torso: Image, torso_lab: FloatArray, head: Image, head_lab: FloatArray) -> Mask:
        """Skin in the torso tiles: the skin rule, narrowed to the face's tone when one shows."""
        face = skin_mask(head)
        tone = row_median(head_lab, face)
        has_face = face.sum(axis=1) >= MIN_FACE_PIXELS
        near = np.linalg.norm(torso_lab - tone[:, None, :], axis=-1) < self.params.skin_tolerance
        skin: Mask = skin_mask(torso) & np.where(has_face[:, None], near, True)
        skin[skin.mean(axis=1) > self.params.max_skin_share] = False  # skin-toned cloth
        return skin

    def _background(self, names: Labels, border: Image, skin: Mask) -> Mask:
        """Torso pixels of a colour frequent on the border but rare in the torso's middle."""
        bins = len(self._names)
        border_names = self._nearest(border)
        everywhere = np.ones(border_names.shape, dtype=np.bool_)
        border_share = row_histogram(border_names, bins, everywhere) / border_names.shape[1]
        core = np.zeros((TILE, TILE), dtype=np.bool_)
        core[:, CORE] = True
        middle = row_histogram(names, bins, core.reshape(1, -1) & ~skin)
        middle_share = middle / np.maximum(middle.sum(axis=1, keepdims=True), 1)
        background_names = (border_share >= self.params.background_share) & (
            middle_share < self.params.background_core_ratio * border_share
        )
        mask: Mask = np.take_along_axis(background_names, names, axis=1) & ~skin
        return mask

    def _classify(self, tiles: list[_Tiles]) -> list[Output]:
        """The vectorised body of :meth:`process_batch`, for non-empty crops."""
        torso, head, border, thumb = (
            np.stack([getattr(t, part).reshape(-1, 3) for t in tiles])
            for part in ("torso", "head", "border", "thumb")
        )
        torso_lab, head_lab, thumb_lab = (rgb_to_lab(x[..., ::-1]) for x in (torso, head, thumb))
        names = self._nearest(torso)
        skin = self._skin(torso, torso_lab, head, head_lab)
        background = self._background(names, border, skin)
        garment = ~skin & ~background
        bins, count = len(self._names), len(tiles)
        votes = row_histogram(names, bins, garment)
        flat = (names + np.arange(count)[:, None] * bins)[garment]
        lab_sums = np.stack(
            [np.bincount(flat, torso_lab[..., c][garment], count * bins) for c in range(3)], -1
        ).reshape(count, bins, 3)
        deviation = thumb_lab - thumb_lab.mean(axis=1, keepdims=True)
        spread = np.sqrt((deviation**2).sum(axis=-1).mean(axis=1))

        results = []
        for i, tile in enumerate(tiles):
            scale = tile.band_area / torso.shape[1]
            pixels = {
                "band": tile.band_area,
                "skin": round(float(skin[i].sum()) * scale),
                "background": round(float(background[i].sum()) * scale),
                "garment": round(float(votes[i].sum()) * scale),
            }
            least = self.params.min_garment_pixels
            if spread[i] < self.params.min_contrast:
                reason = f"uniform crop: colour spread {spread[i]:.1f} < {self.params.min_contrast}"
                results.append(_unknown(reason, pixels))
            elif pixels["garment"] < least:
                reason = f"too few garment pixels: {pixels['garment']} < {least}"
                results.append(_unknown(reason, pixels))
            else:
                results.append(self._named(votes[i], lab_sums[i], pixels))
        return results

    def _named(
        self, votes: npt.NDArray[np.intp], lab_sums: FloatArray, pixels: dict[str, int]
    ) -> Output:
        """The output for one crop with enough garment pixels: the vote, shade-merged."""
        share = votes / votes.sum()
        order = [int(k) for k in np.argsort(-votes, kind="stable") if votes[k] > 0]
        lab = lab_sums / np.maximum(votes, 1)[:, None]
        rgb = lab_to_rgb(lab)
        first, merged, rest = order[0], float(share[order[0]]), order[1:]
        if rest:
            light, dark = sorted((first, rest[0]), key=lambda k: -lab[k, 0])
            if share[light] >= LIT_SHARE and _is_shade(rgb[light], rgb[dark]):
                first, merged, rest = light, merged + float(share[rest[0]]), rest[1:]
        return {
            "color": self._names[first],
            "confidence": round(merged - (float(share[rest[0]]) if rest else 0.0) / 2, 4),
            "rgb": [round(float(c)) for c in rgb[first]],
            "second": self._names[rest[0]] if rest else None,
            "shares": {
                self._names[k]: round(float(share[k]), 3) for k in order if share[k] >= 0.01
            },
            "pixels": pixels,
            "reason": None,
        }
