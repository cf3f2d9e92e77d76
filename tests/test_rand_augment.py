"""RandAugment of the HiCMAE paper recipe: the fork's arguments per operation, one draw for all frames of a clip."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from blemore_toolkit.training.rand_augment import OPERATIONS, apply_operation, operation_argument, rand_augment_clip


@pytest.mark.parametrize(
    ("name", "negate", "expected"),
    [  # magnitude 7, by the level-to-argument formulas of the fork's rand_augment.py
        ("Rotate", False, 21.0),
        ("Rotate", True, -21.0),
        ("PosterizeIncreasing", False, 2),     # 4 - int(0.7 · 4)
        ("SolarizeIncreasing", True, 77),      # 256 - int(0.7 · 256); no sign
        ("SolarizeAdd", False, 77),            # int(0.7 · 110)
        ("ColorIncreasing", False, 1.63),
        ("SharpnessIncreasing", True, 0.37),
        ("ShearY", True, -0.21),
        ("TranslateXRel", False, 0.315),
        ("Equalize", True, None),
    ],
)
def test_operation_arguments_follow_the_fork(name, negate, expected):
    argument = operation_argument(name, 7.0, negate)
    assert argument == (pytest.approx(expected) if isinstance(expected, float) else expected)


def test_translation_fills_with_grey():
    image = Image.fromarray(np.full((8, 8, 3), 200, dtype=np.uint8))
    shifted = np.asarray(apply_operation(image, "TranslateXRel", 0.5))
    assert (shifted[:, :4] == 200).all() and (shifted[:, 4:] == 128).all()


def test_every_frame_gets_the_same_operations():
    base = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    changed = 0
    for seed in range(10):
        out = rand_augment_clip([base.copy() for _ in range(3)], np.random.default_rng(seed))
        arrays = [np.asarray(frame) for frame in out]
        assert all(np.array_equal(arrays[0], other) for other in arrays[1:])
        changed += not np.array_equal(arrays[0], np.asarray(base))
    assert changed >= 5  # four draws at probability 0.5: most clips change
    assert len(OPERATIONS) == 15
