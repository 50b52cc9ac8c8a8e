"""Labels and preprocessing read from a Hugging Face folder, without torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lensflow.shared.classifiers.base import Image
from lensflow.shared.classifiers.hf_checkpoint import ImageProcessorSpec, read_labels
from lensflow.shared.errors import ModelError


@pytest.fixture(scope="module")
def crops(sample_images: dict[str, Image]) -> list[Image]:
    bus, zidane = sample_images["bus"], sample_images["zidane"]
    return [bus, zidane, bus[398:902, 48:245], zidane[437:714, 437:524], zidane[:40, :30]]


@pytest.mark.parametrize(
    "processor",
    [
        "ViTImageProcessorPil",  # resize to 224x224, bilinear, mean/std 0.5
        "DeiTImageProcessorPil",  # resize to 256x256, bicubic, center crop 224
        "CLIPImageProcessorPil",  # shortest edge 224 (aspect kept), center crop 224
    ],
)
def test_preprocessing_matches_transformers_image_processors(
    crops: list[Image], processor: str
) -> None:
    from lensflow.shared.torch_env import install_torchvision_nms

    install_torchvision_nms()
    import transformers

    reference = getattr(transformers, processor)()
    spec = ImageProcessorSpec.from_dict(reference.to_dict(), source=processor)
    ours = spec(crops)
    theirs = np.stack(
        [
            reference(images=[np.ascontiguousarray(c[..., ::-1])], return_tensors="np")[
                "pixel_values"
            ][0]
            for c in crops
        ]
    )
    assert ours.shape == theirs.shape == (len(crops), 3, 224, 224)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        # padding is not implemented: refuse rather than feed the model something else
        ({"size": {"height": 8, "width": 8}, "do_pad": True}, "do_pad"),
        # a variable input size (no crop) cannot be batched
        ({"size": {"shortest_edge": 8}, "do_normalize": False}, "expected a fixed input size"),
        # normalisation asked for without its numbers
        ({"size": {"height": 8, "width": 8}}, "image_mean"),
        # a zero std would divide by zero
        (
            {"size": 8, "image_mean": [0, 0, 0], "image_std": [1, 0, 1]},
            "image_std must be 3 positive numbers",
        ),
        # a crop larger than the resized image
        (
            {"size": 8, "do_center_crop": True, "crop_size": 16, "do_normalize": False},
            "larger than the resized image",
        ),
    ],
)
def test_unsupported_or_invalid_processor_configs_are_refused(
    config: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ModelError, match=expected):
        ImageProcessorSpec.from_dict(config, source="preprocessor_config.json")


@pytest.mark.parametrize(
    ("id2label", "expected"),
    [
        ({"0": "audi", "1": "bmw"}, ("audi", "bmw")),
        ({"1": "bmw", "0": "audi"}, ("audi", "bmw")),  # order of ids, not of keys
        ({"0": "audi", "2": "ford"}, "ids must be 0..1"),
        ({}, "expected an 'id2label'"),
        ({"x": "audi"}, "keys must be integers"),
    ],
)
def test_labels_are_id2label_in_id_order(
    tmp_path: Path, id2label: dict[str, str], expected: tuple[str, ...] | str
) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"id2label": id2label}))
    if isinstance(expected, tuple):
        assert read_labels(tmp_path) == expected
    else:
        with pytest.raises(ModelError, match=expected):
            read_labels(tmp_path)


def test_a_missing_config_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=f"{tmp_path / 'config.json'}: model config not found"):
        read_labels(tmp_path)
