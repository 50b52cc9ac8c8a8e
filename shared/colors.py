"""Colour science in numpy: sRGB <-> CIELAB (D65), CIEDE2000, and a skin-colour rule.

Pure, vectorised functions over arrays whose last axis holds the three channels, so a whole
batch of pixels is converted or compared in one call and each pixel's result does not depend
on its neighbours (the same pixel gives the same number in any batch).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_EPSILON = 216 / 24389
_KAPPA = 24389 / 27


def srgb_to_linear(rgb: npt.ArrayLike) -> FloatArray:
    """Undo the sRGB transfer curve: 0-255 values to linear light in 0-1."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear: FloatArray = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return linear


def rgb_to_lab(rgb: npt.ArrayLike) -> FloatArray:
    """Convert sRGB colours (0-255, last axis R, G, B) to CIELAB under D65.

    Args:
        rgb: array of shape (..., 3), any real dtype, values 0-255.

    Returns:
        float64 array of the same shape: L* in 0-100, a* and b* roughly -128..127.

    """
    xyz = srgb_to_linear(rgb) @ _RGB_TO_XYZ.T / _WHITE_D65
    f = np.where(xyz > _EPSILON, np.cbrt(xyz), (_KAPPA * xyz + 16) / 116)
    lab: FloatArray = np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
        axis=-1,
    )
    return lab


def lab_to_rgb(lab: npt.ArrayLike) -> FloatArray:
    """Convert CIELAB (D65) colours back to sRGB 0-255, clipped to the gamut.

    Args:
        lab: array of shape (..., 3).

    Returns:
        float64 array of shape (..., 3), values 0-255.

    """
    values = np.asarray(lab, dtype=np.float64)
    fy = (values[..., 0] + 16) / 116
    f = np.stack([fy + values[..., 1] / 500, fy, fy - values[..., 2] / 200], axis=-1)
    xyz = np.where(f**3 > _EPSILON, f**3, (116 * f - 16) / _KAPPA) * _WHITE_D65
    linear = np.clip(xyz @ _XYZ_TO_RGB.T, 0.0, 1.0)
    c = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    rgb: FloatArray = np.clip(c * 255.0, 0.0, 255.0)
    return rgb


def cie94(lab: npt.ArrayLike, reference: npt.ArrayLike) -> FloatArray:
    """The CIE94 colour difference (graphic arts weights) of ``lab`` from ``reference``.

    Cheaper than :func:`ciede2000` (no trigonometry) and close to it: good for shortlisting.

    Args:
        lab: CIELAB colours, shape (..., 3).
        reference: CIELAB reference colours (their chroma sets the weights), broadcastable.

    Returns:
        float64 array of the broadcast shape without the last axis.

    """
    a = np.asarray(lab, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    c1, c_ref = np.hypot(a[..., 1], a[..., 2]), np.hypot(r[..., 1], r[..., 2])
    d_chroma = c1 - c_ref
    d_ab2 = (a[..., 1] - r[..., 1]) ** 2 + (a[..., 2] - r[..., 2]) ** 2
    d_hue2 = np.maximum(d_ab2 - d_chroma**2, 0.0)
    terms = (a[..., 0] - r[..., 0]) ** 2 + (d_chroma / (1 + 0.045 * c_ref)) ** 2
    delta: FloatArray = np.sqrt(terms + d_hue2 / (1 + 0.015 * c_ref) ** 2)
    return delta


def ciede2000(lab1: npt.ArrayLike, lab2: npt.ArrayLike) -> FloatArray:
    """The CIEDE2000 colour difference (kL = kC = kH = 1), broadcasting over leading axes.

    Sharma, Wu and Dalal (2005), "The CIEDE2000 color-difference formula: implementation notes,
    supplementary test data, and mathematical observations".

    Args:
        lab1: CIELAB colours, shape (..., 3).
        lab2: CIELAB colours, shape broadcastable against ``lab1``.

    Returns:
        float64 array of the broadcast shape without the last axis.

    """
    a = np.asarray(lab1, dtype=np.float64)
    b = np.asarray(lab2, dtype=np.float64)
    l1, a1, b1 = a[..., 0], a[..., 1], a[..., 2]
    l2, a2, b2 = b[..., 0], b[..., 1], b[..., 2]
    c_mean = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(c_mean**7 / (c_mean**7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    chroma_zero = (c1p * c2p) == 0

    dlp, dcp = l2 - l1, c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(chroma_zero, 0.0, dh)
    dhp = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh / 2))

    lp_mean, cp_mean = (l1 + l2) / 2, (c1p + c2p) / 2
    h_sum = h1p + h2p
    hp_mean = np.where(
        np.abs(h1p - h2p) > 180, np.where(h_sum < 360, h_sum + 360, h_sum - 360), h_sum
    )
    hp_mean = np.where(chroma_zero, h_sum, hp_mean / 2)
    t = (
        1
        - 0.17 * np.cos(np.radians(hp_mean - 30))
        + 0.24 * np.cos(np.radians(2 * hp_mean))
        + 0.32 * np.cos(np.radians(3 * hp_mean + 6))
        - 0.20 * np.cos(np.radians(4 * hp_mean - 63))
    )
    s_l = 1 + 0.015 * (lp_mean - 50) ** 2 / np.sqrt(20 + (lp_mean - 50) ** 2)
    s_c = 1 + 0.045 * cp_mean
    s_h = 1 + 0.015 * cp_mean * t
    r_t = (
        -2
        * np.sqrt(cp_mean**7 / (cp_mean**7 + 25.0**7))
        * np.sin(np.radians(60 * np.exp(-(((hp_mean - 275) / 25) ** 2))))
    )
    terms = (dlp / s_l) ** 2 + (dcp / s_c) ** 2 + (dhp / s_h) ** 2
    delta: FloatArray = np.sqrt(np.maximum(terms + r_t * (dcp / s_c) * (dhp / s_h), 0.0))
    return delta


def skin_mask(bgr: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    """Pixels that may be skin: the YCrCb skin box of Chai and Ngan, red-to-yellow hues only.

    A generic rule: beige, brown or pink cloth passes it too, so a caller narrows it (to the
    tone of a face, say) before dropping pixels.

    Args:
        bgr: uint8 array of shape (..., 3) in OpenCV's B, G, R order.

    Returns:
        bool array of shape (...).

    """
    b, g, r = (bgr[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cr, cb = (r - y) * 0.713 + 128, (b - y) * 0.564 + 128
    spread = np.max(bgr, axis=-1).astype(np.float64) - np.min(bgr, axis=-1)
    in_box = (cr >= 133) & (cr <= 173) & (cb >= 77) & (cb <= 127)
    mask: npt.NDArray[np.bool_] = in_box & (r > g) & (r > b) & (spread > 10) & (y > 35)
    return mask


def row_histogram(
    labels: npt.NDArray[np.intp], bins: int, where: npt.NDArray[np.bool_]
) -> npt.NDArray[np.intp]:
    """Per-row counts of ``labels`` (B, N) in ``bins`` bins, counting only where ``where``."""
    offset = np.arange(labels.shape[0])[:, None] * bins
    counts = np.bincount((labels + offset)[where], minlength=labels.shape[0] * bins)
    return counts.reshape(labels.shape[0], bins)


def row_median(values: FloatArray, mask: npt.NDArray[np.bool_]) -> FloatArray:
    """Per-row channel medians of ``values`` (B, N, 3) over ``mask`` (NaN for an empty row)."""
    ordered = np.sort(np.where(mask[..., None], values, np.nan), axis=1)  # NaNs sort last
    count = mask.sum(axis=1)[:, None, None]
    low = np.take_along_axis(ordered, np.maximum(count - 1, 0) // 2, axis=1)
    high = np.take_along_axis(ordered, count // 2, axis=1)
    median: FloatArray = np.where(count > 0, (low + high) / 2, np.nan)[:, 0]
    return median
