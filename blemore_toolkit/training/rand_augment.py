"""RandAugment for clips as the HiCMAE BLEMORE fork trains with it (``--aa rand-m7-n4-mstd0.5-inc1``).

The fork's ``video_transforms.create_random_augment`` (timm's RandAugment, "increasing" variant, applied to the
frame list): ``n`` = 4 operations drawn uniformly with replacement from fifteen; each is applied with probability
0.5, at a magnitude drawn from N(7, 0.5²) clipped to [0, 10]; one draw of the operation's argument (and of its
sign) is used for every frame of the clip, so the frames stay consistent. Geometric operations fill with grey
(128, 128, 128) and resample bicubically (``--train_interpolation bicubic``); translations are relative (up to 45 %
of the side at magnitude 10). This is an own implementation on PIL's operations; the argument of each operation at
a magnitude is ``operation_argument``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

MAX_LEVEL = 10.0
FILL = (128, 128, 128)
OPERATIONS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
              "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing",
              "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
_SIGNED = {"Rotate", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing",
           "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"}


def operation_argument(name: str, magnitude: float, negate: bool = False):
    """The argument of operation ``name`` at ``magnitude`` (0–10); ``negate`` flips the sign of signed ones."""
    fraction = magnitude / MAX_LEVEL
    sign = -1.0 if (negate and name in _SIGNED) else 1.0
    if name in ("AutoContrast", "Equalize", "Invert"):
        return None
    if name == "Rotate":
        return sign * fraction * 30.0
    if name == "PosterizeIncreasing":
        return 4 - int(fraction * 4)
    if name == "SolarizeIncreasing":
        return 256 - int(fraction * 256)
    if name == "SolarizeAdd":
        return int(fraction * 110)
    if name.endswith("Increasing"):  # colour, contrast, brightness, sharpness: 1 ± 0.9 · fraction
        return 1.0 + sign * fraction * 0.9
    if name in ("ShearX", "ShearY"):
        return sign * fraction * 0.3
    return sign * fraction * 0.45  # TranslateXRel / TranslateYRel


def apply_operation(image: Image.Image, name: str, argument) -> Image.Image:
    """One RandAugment operation on one RGB frame."""
    geometry = {"resample": Image.BICUBIC, "fillcolor": FILL}
    if name == "AutoContrast":
        return ImageOps.autocontrast(image)
    if name == "Equalize":
        return ImageOps.equalize(image)
    if name == "Invert":
        return ImageOps.invert(image)
    if name == "Rotate":
        return image.rotate(argument, **geometry)
    if name == "PosterizeIncreasing":
        return image if argument >= 8 else ImageOps.posterize(image, argument)
    if name == "SolarizeIncreasing":
        return ImageOps.solarize(image, argument)
    if name == "SolarizeAdd":
        table = [min(255, i + argument) if i < 128 else i for i in range(256)] * 3
        return image.point(table)
    enhancers = {"ColorIncreasing": ImageEnhance.Color, "ContrastIncreasing": ImageEnhance.Contrast,
                 "BrightnessIncreasing": ImageEnhance.Brightness, "SharpnessIncreasing": ImageEnhance.Sharpness}
    if name in enhancers:
        return enhancers[name](image).enhance(argument)
    width, height = image.size
    matrices = {"ShearX": (1, argument, 0, 0, 1, 0), "ShearY": (1, 0, 0, argument, 1, 0),
                "TranslateXRel": (1, 0, argument * width, 0, 1, 0),
                "TranslateYRel": (1, 0, 0, 0, 1, argument * height)}
    return image.transform(image.size, Image.AFFINE, matrices[name], **geometry)


def rand_augment_clip(frames: list[Image.Image], rng: np.random.Generator, num_operations: int = 4,
                      magnitude: float = 7.0, magnitude_std: float = 0.5, probability: float = 0.5
                      ) -> list[Image.Image]:
    """RandAugment on a clip: the same operations, arguments and signs on every frame."""
    for name in rng.choice(OPERATIONS, size=num_operations, replace=True):
        if rng.random() > probability:
            continue
        level = min(MAX_LEVEL, max(0.0, rng.normal(magnitude, magnitude_std) if magnitude_std > 0 else magnitude))
        argument = operation_argument(str(name), level, negate=bool(rng.random() > 0.5))
        frames = [apply_operation(frame, str(name), argument) for frame in frames]
    return frames


__all__ = ["OPERATIONS", "apply_operation", "operation_argument", "rand_augment_clip"]
