"""The tshirt_color plugin: figures drawn with OpenCV, and the people in the sample photos.

A figure is a person crop as an edge detector cuts it: a plain background, a head, neck and
forearms in skin, a short-sleeved T-shirt, jeans; lit from one side, with sensor noise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from lensflow.models.export.artifacts import ManifestModelStore
from lensflow.shared.classifiers.base import Image
from lensflow.shared.classifiers.registry import PluginRegistry, default_registry
from lensflow.shared.classifiers.shirt_color import ShirtColor, ShirtColorParams
from lensflow.shared.colors import ciede2000, rgb_to_lab
from lensflow.shared.dag.compiler import load_pipeline
from lensflow.shared.dag.engine import Pipeline
from lensflow.shared.errors import PluginError
from tests.support.plugins import (
    AspectVehicleType,
    BrightnessCarMake,
    MeanColorShirt,
    QuadrantEmbeddings,
    make_registry,
)

RGB = tuple[int, int, int]

# T-shirt colours as drawn (sRGB): typical cloth, not the palette's own reference colours
SHIRTS: dict[str, RGB] = {
    "white": (240, 240, 236),  # a slightly warm white
    "black": (28, 28, 30),
    "grey": (120, 122, 125),  # mid grey, a touch cool
    "red": (190, 25, 40),
    "orange": (235, 120, 35),
    "yellow": (235, 205, 60),
    "green": (50, 140, 70),
    "blue": (50, 100, 190),
    "navy": (30, 40, 85),
    "purple": (100, 45, 140),
    "pink": (235, 140, 175),
    "brown": (105, 65, 40),  # close to dark skin: a skin-toned garment
    "beige": (215, 195, 160),  # close to light skin: a skin-toned garment
}
BACKGROUNDS: dict[str, RGB] = {
    "light_wall": (205, 205, 200),
    "foliage": (60, 110, 50),
    "sky": (150, 190, 230),
    "tan_wall": (205, 160, 130),  # the hue family of skin
    "night": (40, 40, 45),
    "brick": (150, 60, 50),
}
SKINS: dict[str, RGB] = {"light": (235, 190, 165), "medium": (195, 140, 105), "dark": (110, 70, 50)}
JEANS: RGB = (40, 60, 110)

# the people in the sample photos: (photo, box x1, y1, x2, y2, colour seen by eye)
PEOPLE = [
    # bus.jpg, the man on the left: a cream teddy coat, arms folded
    ("bus", (48, 398, 245, 902), "beige"),
    # bus.jpg, the man in sunglasses: a black coat open over a red T-shirt
    ("bus", (223, 405, 344, 857), "black"),
    # zidane.jpg, right (Ancelotti): a black suit jacket, white shirt, dark tie
    ("zidane", (743, 48, 1141, 720), "black"),
    # zidane.jpg, left (Zidane, leaning in): a black suit, a pale shirt in shadow, black tie
    ("zidane", (123, 197, 711, 717), "black"),
]


def figure(
    shirt: RGB,
    *,
    background: RGB = BACKGROUNDS["light_wall"],
    skin: RGB = SKINS["medium"],
    size: tuple[int, int] = (100, 240),
    noise: float = 8.0,
    light: tuple[float, float] = (0.85, 1.05),
    folds: bool = False,
) -> Image:
    """A BGR person crop of ``size`` (width, height); ``light`` scales it left to right.

    With ``folds`` the light varies in vertical stripes instead, like a T-shirt's folds.
    """
    width, height = size
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[:] = background[::-1]

    def pts(*xy: float) -> np.ndarray:
        corners = zip(xy[::2], xy[1::2], strict=True)
        return np.array([(round(x * width), round(y * height)) for x, y in corners])

    def paint(colour: RGB, *polygons: np.ndarray) -> None:
        cv2.fillPoly(img, list(polygons), colour[::-1])

    paint(JEANS, pts(0.3, 0.5, 0.7, 0.5, 0.7, 1.0, 0.3, 1.0))
    paint(skin, pts(0.05, 0.3, 0.17, 0.3, 0.17, 0.48, 0.05, 0.48))  # forearms
    paint(skin, pts(0.83, 0.3, 0.95, 0.3, 0.95, 0.48, 0.83, 0.48))
    paint(skin, pts(0.44, 0.12, 0.56, 0.12, 0.56, 0.17, 0.44, 0.17))  # neck
    tee = (
        0.15,
        0.16,
        0.85,
        0.16,
        0.97,
        0.3,
        0.8,
        0.32,
        0.75,
        0.52,
        0.25,
        0.52,
        0.2,
        0.32,
        0.03,
        0.3,
    )
    paint(shirt, pts(*tee))
    head = (round(width / 2), round(0.075 * height))
    cv2.ellipse(img, head, (round(0.13 * width), round(0.065 * height)), 0, 0, 360, skin[::-1], -1)
    x = np.arange(width)
    gain = (
        light[0] + (light[1] - light[0]) * (0.5 + 0.5 * np.sin(x / 7.0))
        if folds
        else np.linspace(*light, width)
    )
    noisy = img * gain[None, :, None] + np.random.default_rng(0).normal(0, noise, img.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def delta_e(rgb: Any, reference: RGB) -> float:
    return float(ciede2000(rgb_to_lab(rgb), rgb_to_lab(reference)))


@pytest.fixture(scope="module")
def classifier() -> ShirtColor:
    return ShirtColor()


@pytest.mark.parametrize("skin", SKINS)
@pytest.mark.parametrize("background", BACKGROUNDS)
@pytest.mark.parametrize("colour", SHIRTS)
def test_names_the_colour_of_the_shirt(
    classifier: ShirtColor, colour: str, background: str, skin: str
) -> None:
    # given a figure in a T-shirt of a known colour, on a plain background, with noise
    crop = figure(SHIRTS[colour], background=BACKGROUNDS[background], skin=SKINS[skin])
    # when it is classified
    out = classifier.process(crop, {})
    # then the palette name is the shirt's, and its rgb is the drawn colour (as lit)
    assert out["color"] == colour, out
    assert delta_e(out["rgb"], SHIRTS[colour]) < 6, out
    assert 0.5 < out["confidence"] <= 1


@pytest.mark.parametrize("colour", SHIRTS)
def test_a_background_the_colour_of_skin_is_not_the_shirt(
    classifier: ShirtColor, colour: str
) -> None:
    # given a figure whose background is exactly its skin tone
    crop = figure(SHIRTS[colour], background=SKINS["medium"], skin=SKINS["medium"])
    assert classifier.process(crop, {})["color"] == colour


@pytest.mark.parametrize("colour", ["white", "red", "blue", "green", "navy", "purple"])
def test_folds_in_shadow_keep_the_lit_colour(classifier: ShirtColor, colour: str) -> None:
    # given a T-shirt whose folds fall to 70% of the light (a white one looks grey there)
    crop = figure(SHIRTS[colour], light=(0.7, 1.05), folds=True)
    # then it is named by its lit colour
    assert classifier.process(crop, {})["color"] == colour


def test_a_light_grey_shirt_is_not_white(classifier: ShirtColor) -> None:
    # the merge of light and shade must not turn an evenly lit light grey into white
    assert classifier.process(figure((170, 170, 172)), {})["color"] == "grey"


def open_coat(coat: RGB, shirt: RGB) -> Image:
    """A figure in a coat, open down the middle over a shirt."""
    crop = figure(coat)
    cv2.rectangle(crop, (42, 40), (58, 124), shirt[::-1], -1)
    return crop


def test_a_black_coat_over_a_red_shirt_is_black_with_red_second(classifier: ShirtColor) -> None:
    out = classifier.process(open_coat(SHIRTS["black"], SHIRTS["red"]), {})
    assert (out["color"], out["second"]) == ("black", "red")
    assert out["shares"]["black"] > out["shares"]["red"] > 0.05


@pytest.mark.parametrize("colour", ["white", "black", "red", "blue", "beige"])
def test_a_tiny_crop_still_has_a_colour(classifier: ShirtColor, colour: str) -> None:
    # given a far-away person: 12 x 30 pixels
    out = classifier.process(figure(SHIRTS[colour], size=(12, 30), noise=4), {})
    assert out["color"] == colour


def test_too_few_garment_pixels_is_unknown_not_an_error(classifier: ShirtColor) -> None:
    # given a 6 x 14 crop: a torso band of a few pixels
    out = classifier.process(figure(SHIRTS["red"], size=(6, 14), noise=4), {})
    assert (out["color"], out["confidence"], out["rgb"]) == ("unknown", 0.0, None)
    assert out["reason"].startswith("too few garment pixels")


@pytest.mark.parametrize(
    "crop",
    [
        np.zeros((0, 0, 3), np.uint8),  # empty
        np.zeros((0, 40, 3), np.uint8),  # no rows
        np.zeros((120, 50, 3), np.uint8),  # black
        np.full((120, 50, 3), 255, np.uint8),  # white
        np.full((7, 3, 3), 128, np.uint8),  # a tiny grey sliver
        # a uniform beige wall with mild sensor noise
        np.clip(np.random.default_rng(1).normal((160, 200, 220), 2, (200, 80, 3)), 0, 255).astype(
            np.uint8
        ),
    ],
    ids=["empty", "no-rows", "black", "white", "sliver", "noisy-wall"],
)
def test_empty_or_uniform_crop_is_unknown(classifier: ShirtColor, crop: Image) -> None:
    out = classifier.process(crop, {})
    assert (out["color"], out["confidence"], out["second"]) == ("unknown", 0.0, None)
    assert out["reason"]


def test_outputs_are_declared_and_json_serialisable(classifier: ShirtColor) -> None:
    out = classifier.process(open_coat(SHIRTS["green"], SHIRTS["white"]), {})
    assert set(ShirtColor.outputs) <= set(out)
    json.dumps(out)
    pixels = out["pixels"]
    assert pixels["garment"] + pixels["skin"] + pixels["background"] == pytest.approx(
        pixels["band"], abs=2
    )
    assert out["second"] == "white" and sum(out["shares"].values()) <= 1.0


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((20, 10), np.uint8),
        np.zeros((20, 10, 3), np.float32),
        np.zeros((20, 10, 4), np.uint8),
    ],
    ids=["grey", "float", "bgra"],
)
def test_an_image_that_is_not_bgr_uint8_is_an_error(classifier: ShirtColor, image: Image) -> None:
    with pytest.raises(PluginError, match=r"BGR uint8 array \(H, W, 3\)"):
        classifier.process(image, {})


def test_batch_gives_the_same_outputs_as_one_by_one(
    classifier: ShirtColor, sample_images: dict[str, Image]
) -> None:
    # given a mixed batch: real people, drawn figures, an empty and a uniform crop
    crops = [sample_images[photo][y1:y2, x1:x2] for photo, (x1, y1, x2, y2), _ in PEOPLE]
    crops += [
        figure(rgb, background=bg)
        for rgb, bg in zip(SHIRTS.values(), [*BACKGROUNDS.values()] * 3, strict=False)
    ]
    crops += [np.zeros((0, 0, 3), np.uint8), np.full((60, 30, 3), 90, np.uint8)]
    # when it is classified as one batch and one crop at a time
    batch = classifier.process_batch(crops, [{}] * len(crops))
    # then the outputs are identical
    assert batch == [classifier.process(crop, {}) for crop in crops]


@pytest.mark.parametrize(("photo", "box", "colour"), PEOPLE)
def test_people_in_the_sample_photos(
    classifier: ShirtColor,
    sample_images: dict[str, Image],
    photo: str,
    box: tuple[int, int, int, int],
    colour: str,
) -> None:
    x1, y1, x2, y2 = box
    out = classifier.process(sample_images[photo][y1:y2, x1:x2], {})
    assert out["color"] == colour, out
    assert out["confidence"] > 0.6


def test_the_red_t_shirt_under_the_black_coat_shows(
    classifier: ShirtColor, sample_images: dict[str, Image]
) -> None:
    out = classifier.process(sample_images["bus"][405:857, 223:344], {})
    assert out["shares"].get("red", 0.0) >= 0.03, out


def test_palette_override_names_its_own_colours() -> None:
    # given a palette of two names, one given as a single [r, g, b]
    params = ShirtColorParams.model_validate(
        {"palette": {"teal": [0, 128, 128], "other": [[200, 200, 200], [30, 30, 30]]}}
    )
    out = ShirtColor(params).process(figure((10, 120, 125)), {})
    assert out["color"] == "teal"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"palette": {"red": [255, 0, 0]}}, "at least 2 colours"),
        ({"palette": {"red": [300, 0, 0], "blue": [0, 0, 255]}}, "0-255"),
        ({"palette": {"unknown": [1, 2, 3], "blue": [0, 0, 255]}}, "'unknown' must be a new name"),
        ({"torso_top": 0.6, "torso_bottom": 0.4}, "torso_top must be < torso_bottom"),
        ({"min_garment_pixels": 0}, "greater than or equal to 1"),
        ({"colour_space": "rgb"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_params_say_what_was_expected(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ShirtColorParams.model_validate(params)


def test_the_default_registry_has_the_real_plugin_and_the_test_registry_the_fake() -> None:
    assert default_registry().resolve("tshirt_color") is ShirtColor
    assert make_registry().resolve("tshirt_color") is MeanColorShirt


def test_the_example_pipeline_runs_the_real_plugin_for_people(
    repo_root: Path, sample_images: dict[str, Image]
) -> None:
    # given configs/pipeline.yaml on the default registry (only the model-backed plugins faked)
    registry = PluginRegistry(dict(default_registry().plugins), models=ManifestModelStore())
    for fake in (BrightnessCarMake, AspectVehicleType, QuadrantEmbeddings):
        registry.register(fake, replace=True)
    pipeline = Pipeline(load_pipeline(repo_root / "configs" / "pipeline.yaml", registry=registry))
    assert isinstance(pipeline.plugins["tshirt_color_classification"], ShirtColor)
    # when Ancelotti's crop arrives as a person
    crop = sample_images["zidane"][48:720, 743:1141]
    result = pipeline.run(crop, inputs={"detection": {"class_name": "person", "score": 0.9}})
    # then the shirt node names his jacket
    assert result.nodes["tshirt_color_classification"].output["color"] == "black"
