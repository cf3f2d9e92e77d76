"""``HicmaePipeline``: the BLEMORE pipeline for a saved HiCMAE model.

``pipeline(model=FOLDER_OR_REPO, trust_remote_code=True)`` builds it from the model's ``custom_pipelines`` entry. It
keeps ``BlemorePipeline``'s contract under ``video-classification``: ``[{"label", "score"}]`` over the six emotions,
best first (``top_k``, ``function_to_apply``), the challenge's ``{"emotions", "outcome", "probabilities"}`` with
``blend=True``, lists, generators and datasets, ``batch_size`` and ``num_workers``.

A clip is a video file path or its bytes (frames and audio from the file), a dataset row (``{"video", "audio"}``),
or ``{"video": ..., "faces": FACE_FOLDER}`` to take the frames from OpenFace-aligned faces (the paper's input).
With a processor of several segments, each clip's views go through the model together and are averaged by it.

Shipped as Hub remote code (flat folder, relative imports only, no ``blemore`` import).
"""

from __future__ import annotations

import torch

from .pipeline_blemore import VIDEO_TASK, BlemorePipeline
from .processing_hicmae import HicmaeProcessor


def custom_pipelines_entry() -> dict:
    """``config.custom_pipelines`` of a saved HiCMAE model."""
    return {VIDEO_TASK: {"impl": "pipeline_hicmae.HicmaePipeline", "pt": ["AutoModelForVideoClassification"],
                         "tf": [], "type": "multimodal"}}


class HicmaePipeline(BlemorePipeline):
    """Emotion recognition with HiCMAE: labels and scores per clip, or the blend with ``blend=True``."""

    def __init__(self, model, processor: HicmaeProcessor | None = None, **kwargs):
        if processor is None:
            source = getattr(model, "name_or_path", None)
            try:
                processor = HicmaeProcessor.from_pretrained(source)
            except (OSError, ValueError) as error:
                raise ValueError(f"{source!r}: no HiCMAE processor (processor_config.json) beside the model; pass "
                                 f"processor=... ({error})") from error
        kwargs.setdefault("task", VIDEO_TASK)
        super().__init__(model=model, processor=processor, **kwargs)

    def _collate(self, items: list[dict]) -> dict:
        # Every clip's inputs have the same shape (a fixed window of frames and of log-mel frames): no padding.
        return {key: torch.cat([item[key] for item in items]) for key in items[0]}

    def preprocess(self, clip) -> dict:
        """One clip → the model's inputs for it (a batch of one)."""
        if isinstance(clip, dict) and ("video" in clip or "audio" in clip or "faces" in clip):
            video, audio, faces = clip.get("video"), clip.get("audio"), clip.get("faces")
        else:
            video, audio, faces = clip, None, None
        return dict(self.processor(videos=[video], audio=[audio], faces=[faces], return_tensors="pt"))


__all__ = ["HicmaePipeline", "VIDEO_TASK", "custom_pipelines_entry"]
