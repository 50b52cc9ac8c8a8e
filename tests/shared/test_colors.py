"""Colour science: sRGB <-> CIELAB, CIEDE2000 against its published test data, a skin rule."""

from __future__ import annotations

import numpy as np
import pytest

from lensflow.shared.colors import cie94, ciede2000, lab_to_rgb, rgb_to_lab, skin_mask

# Sharma, Wu and Dalal (2005), Table 1: (L1, a1, b1), (L2, a2, b2), CIEDE2000
SHARMA = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),  # blue, hue rotation term
    ((50.0, -1.3802, -84.2814), (50.0, 0.0, -82.7485), 1.0),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),  # near neutral
    ((50.0, 2.49, -0.001), (50.0, -2.49, 0.0009), 7.1792),  # hue angle wraps around 0/360
    ((50.0, -0.001, 2.49), (50.0, 0.0009, -2.49), 4.8045),
    ((50.0, 2.5, 0.0), (50.0, 3.1736, 0.5854), 1.0),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),  # large difference
    ((2.0776, 0.0795, -1.135), (0.9033, -0.0636, -0.5514), 0.9082),  # near black
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((90.8027, -2.0831, 1.441), (91.1528, -1.6435, 0.0447), 1.4441),  # near white
]


@pytest.mark.parametrize(("lab1", "lab2", "expected"), SHARMA)
def test_ciede2000_matches_the_published_pairs(
    lab1: tuple[float, float, float], lab2: tuple[float, float, float], expected: float
) -> None:
    assert float(ciede2000(lab1, lab2)) == pytest.approx(expected, abs=1e-4)
    assert float(ciede2000(lab2, lab1)) == pytest.approx(expected, abs=1e-4)  # symmetric


def test_ciede2000_broadcasts_pixels_against_a_palette() -> None:
    pixels = np.array([[a[0] for a in SHARMA], [a[1] for a in SHARMA]])  # (2, 10, 3)
    palette = np.array([a[1] for a in SHARMA])  # (10, 3)
    distances = ciede2000(pixels[..., None, :], palette)
    assert distances.shape == (2, 10, 10)
    np.testing.assert_allclose(np.diagonal(distances[0]), [e for *_, e in SHARMA], atol=1e-4)


@pytest.mark.parametrize(
    ("rgb", "lab"),
    [
        ((255, 255, 255), (100.0, 0.0, 0.0)),
        ((0, 0, 0), (0.0, 0.0, 0.0)),
        ((255, 0, 0), (53.24, 80.09, 67.20)),  # sRGB primaries under D65
        ((0, 255, 0), (87.73, -86.18, 83.18)),
        ((0, 0, 255), (32.30, 79.19, -107.86)),
        ((128, 128, 128), (53.59, 0.0, 0.0)),
    ],
)
def test_rgb_to_lab_known_values(
    rgb: tuple[int, int, int], lab: tuple[float, float, float]
) -> None:
    np.testing.assert_allclose(rgb_to_lab(rgb), lab, atol=0.02)


def test_lab_round_trips_to_rgb() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (1000, 3))
    np.testing.assert_allclose(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-6)


def test_cie94_is_zero_for_equal_colours_and_grows_with_difference() -> None:
    lab = rgb_to_lab([[200, 30, 35], [190, 40, 45], [40, 90, 200]])
    near, far = cie94(lab[1], lab[0]), cie94(lab[2], lab[0])
    assert float(cie94(lab[0], lab[0])) == 0.0
    assert 0 < near < far


@pytest.mark.parametrize(
    ("rgb", "skin"),
    [
        ((235, 190, 165), True),  # light skin
        ((195, 140, 105), True),  # medium
        ((110, 70, 50), True),  # dark
        ((40, 90, 200), False),  # blue
        ((50, 140, 70), False),  # green
        ((128, 128, 128), False),  # grey: no hue
        ((240, 130, 30), False),  # orange: too saturated
        ((20, 15, 12), False),  # too dark to tell
    ],
)
def test_skin_mask(rgb: tuple[int, int, int], skin: bool) -> None:
    bgr = np.array([[rgb[::-1]]], dtype=np.uint8)
    assert bool(skin_mask(bgr)[0, 0]) is skin
