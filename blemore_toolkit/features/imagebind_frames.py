"""ImageBind frames as the organisers preprocessed them (`blemore features --protocol paper` on a converted ImageBind).

The organisers' ImageBind features (BlEmoRe/blemore-common, ``feature_extraction/video_encoding/ImageBind_data.py``
``load_and_transform_video_data`` and ``ImageBind_features.py``) do not use ImageBind's image transform. They
decode every frame of the clip in RGB (decord through pytorchvideo's ``EncodedVideo``), scale it to [0, 1], resize
the whole clip with pytorchvideo's ``ShortSideScale(224)`` (``torch.nn.functional.interpolate``, bilinear,
``align_corners=False``, no antialiasing; the long side becomes ``floor(long / short * 224)``), normalise with
CLIP's mean and std (torchvision's ``NormalizeVideo``), take their ``SpatialCrop(224, num_crops=1)`` (the centre
crop of their ``uniform_crop``, offsets ``ceil((size - 224) / 2)``) and pass each frame as a (1, 3, 224, 224) image
to ImageBind, whose vision output is L2-normalised. ``OrganisersImageBindFrames`` is that transform, called like an
image processor. The toolkit protocol uses the converted folder's own image processor instead (ImageBind's image
transform: bicubic resize with antialiasing).
"""

from __future__ import annotations

import math

import numpy as np

#: The ``FeatureProtocol.imagebind_frames`` values: the converted folder's processor, or the organisers' transform.
PROCESSOR = "processor"
ORGANISERS_VIDEO = "organisers_video"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def is_imagebind(config) -> bool:
    """A folder written by ``blemore convert imagebind`` (its config says where it came from)."""
    return getattr(config, "converted_from", None) == "imagebind"


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) after pytorchvideo's ``short_side_scale``: the short side ``size``, the long one floored."""
    if width < height:
        return int(math.floor(height / width * size)), size
    return size, int(math.floor(width / height * size))


class OrganisersImageBindFrames:
    """HWC uint8 RGB frames → ``{"pixel_values": (N, 3, size, size)}`` as the organisers' ImageBind loader did."""

    #: Frames transformed together: bounds the float copy of full-size frames (the result does not depend on it).
    CHUNK = 16

    def __init__(self, size: int = 224, mean=CLIP_MEAN, std=CLIP_STD):
        self.size, self.mean, self.std = size, tuple(mean), tuple(std)

    def _clip(self, frames: list[np.ndarray]):
        import torch
        import torch.nn.functional as F

        clip = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0  # T, C, H, W
        height, width = clip.shape[-2:]
        clip = F.interpolate(clip, size=short_side_size(height, width, self.size), mode="bilinear",
                             align_corners=False)
        mean = torch.tensor(self.mean, dtype=clip.dtype)[:, None, None]
        std = torch.tensor(self.std, dtype=clip.dtype)[:, None, None]
        clip = (clip - mean) / std
        height, width = clip.shape[-2:]
        top, left = math.ceil((height - self.size) / 2), math.ceil((width - self.size) / 2)
        return clip[:, :, top:top + self.size, left:left + self.size]

    def __call__(self, images, return_tensors: str = "pt", **_) -> dict:
        import torch

        images = [np.asarray(image) for image in images]
        parts, start = [], 0
        # Frames of one size together, at most CHUNK at a time: float copies of full-size frames are large, and
        # every step is per frame, so the grouping does not change the result.
        for end in range(1, len(images) + 1):
            if end == len(images) or images[end].shape != images[start].shape or end - start == self.CHUNK:
                parts.append(self._clip(images[start:end]))
                start = end
        return {"pixel_values": torch.cat(parts).contiguous()}
