"""``HicmaePipeline``: clips in, BLEMORE predictions out, for a saved HiCMAE model.

``pipeline(model=FOLDER_OR_REPO, trust_remote_code=True)`` builds it from the model's ``custom_pipelines`` entry.
A clip is a video file path or its bytes (frames and audio from the file), a dataset row (``{"video", "audio"}``),
or ``{"video": ..., "faces": FACE_FOLDER}`` to take the frames from OpenFace-aligned faces (the paper's input).
Each clip gives ``{"emotions", "outcome", "probabilities"}``, as ``BlemorePipeline`` does.

Shipped as Hub remote code (flat folder, relative imports only, no ``blemore`` import).
"""

from __future__ import annotations

from transformers import Pipeline

from .decoding_blemore import EMOTIONS, OUTCOME_NAMES, outcomes_to_predictions, softmax
from .processing_hicmae import HicmaeProcessor

VIDEO_TASK = "video-classification"


def custom_pipelines_entry() -> dict:
    """``config.custom_pipelines`` of a saved HiCMAE model."""
    return {VIDEO_TASK: {"impl": "pipeline_hicmae.HicmaePipeline", "pt": ["AutoModelForVideoClassification"],
                         "tf": [], "type": "multimodal"}}


class HicmaePipeline(Pipeline):
    """Blended emotion recognition with HiCMAE: ``{"emotions", "outcome", "probabilities"}`` per clip."""

    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, model, processor: HicmaeProcessor | None = None, **kwargs):
        if processor is None:
            source = getattr(model, "name_or_path", None)
            try:
                processor = HicmaeProcessor.from_pretrained(source)
            except (OSError, ValueError) as error:
                raise ValueError(f"{source!r}: no HiCMAE processor (processor_config.json) beside the model; pass "
                                 f"processor=... ({error})") from error
        super().__init__(model=model, processor=processor, **kwargs)

    def _sanitize_parameters(self, **kwargs):
        unknown = sorted(set(kwargs) - {"batch_size"})
        if unknown:
            raise TypeError(f"HicmaePipeline got unexpected arguments {unknown}")
        return {}, {}, {}

    def __call__(self, inputs, batch_size: int | None = None, **kwargs):
        self._sanitize_parameters(**kwargs)
        single = not isinstance(inputs, (list, tuple))
        clips = [inputs] if single else list(inputs)
        size = int(batch_size or self._batch_size or 8)
        results = []
        for start in range(0, len(clips), size):
            results.extend(self.postprocess(self.forward(self.preprocess(clips[start:start + size]))))
        return results[0] if single else results

    def preprocess(self, clips: list):
        videos, audio, faces = [], [], []
        for clip in clips:
            if isinstance(clip, dict) and ("video" in clip or "audio" in clip or "faces" in clip):
                videos.append(clip.get("video"))
                audio.append(clip.get("audio"))
                faces.append(clip.get("faces"))
            else:
                videos.append(clip)
                audio.append(None)
                faces.append(None)
        return self.processor(videos=videos, audio=audio, faces=faces, return_tensors="pt")

    def _forward(self, model_inputs):
        dtype = self.model.dtype
        inputs = {key: value.to(dtype) for key, value in model_inputs.items()}
        return {"logits": self.model(**inputs).logits.float()}

    def postprocess(self, model_outputs) -> list[dict]:
        logits = model_outputs["logits"].cpu().numpy()
        outcomes = self.model.decode_outcomes(logits=logits)
        return [
            {
                "emotions": emotions,
                "outcome": OUTCOME_NAMES[int(outcome)],
                "probabilities": {code: float(p) for code, p in zip(EMOTIONS, row)},
            }
            for emotions, outcome, row in zip(outcomes_to_predictions(outcomes), outcomes, softmax(logits))
        ]


__all__ = ["HicmaePipeline", "VIDEO_TASK", "custom_pipelines_entry"]
