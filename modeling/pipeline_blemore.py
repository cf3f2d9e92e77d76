"""``BlemorePipeline``: clips in, challenge predictions out, the way ``transformers.pipeline`` users expect.

A saved BLEMORE model with a video or audio encoder carries this file and names it in ``config.custom_pipelines``
for its task (``video-classification``; ``audio-classification`` for an audio-only model), so

```python
from transformers import pipeline

classify = pipeline(model="runs/train/final/model", trust_remote_code=True)   # a folder or a Hub repo id
classify("clip.mov")
# {"emotions": [{"emotion": "ang", "salience": 70.0}, {"emotion": "hap", "salience": 30.0}],
#  "outcome": "mix_ang_hap_70_30", "probabilities": {"ang": 0.61, "disg": 0.02, ..., "neu": 0.01}}
classify(["a.mov", "b.mov", "c.mov"], batch_size=2)                          # a list: one dict per clip
```

A clip is a file path, the file's bytes, a dataset row (``{"video": VideoDecoder, "audio": AudioDecoder, ...}`` as
``load_dataset`` returns it, or the undecoded ``{"path", "bytes"}`` values), or, for a one-modality model, that
modality alone (a torchcodec decoder, a ``datasets.Audio`` value). ``emotions`` is the challenge's (and the
``metrics/blemore`` metric's) format, decoded with the decoder and thresholds stored in the model's config;
``probabilities`` are the six emotion probabilities (the predicted salience proportions).

With a model and processor already in memory: ``BlemorePipeline(model=model, processor=processor)``.

Shipped as Hub remote code (flat folder, relative imports only, no ``blemore`` import).
"""

from __future__ import annotations

import os

from transformers import Pipeline

from .decoding_blemore import EMOTIONS, OUTCOME_NAMES, outcomes_to_predictions, softmax
from .processing_blemore import BlemoreProcessor

#: The registered task of a model with video (and maybe audio), and of an audio-only model.
VIDEO_TASK, AUDIO_TASK = "video-classification", "audio-classification"


def pipeline_task(config) -> str | None:
    """The task a BLEMORE config's pipeline is registered for; None for a model on precomputed features only."""
    if config.video_config is None and config.audio_config is None:
        return None
    return AUDIO_TASK if config.modality_names == ["audio"] else VIDEO_TASK


def custom_pipelines_entry(config) -> dict | None:
    """``config.custom_pipelines`` for a saved model: the task → this class and the Auto class that loads the model."""
    task = pipeline_task(config)
    if task is None:
        return None
    auto_class = "AutoModelForAudioClassification" if task == AUDIO_TASK else "AutoModelForVideoClassification"
    return {task: {"impl": "pipeline_blemore.BlemorePipeline", "pt": [auto_class], "tf": [], "type": "multimodal"}}


def _is_row(clip) -> bool:
    return isinstance(clip, dict) and ("video" in clip or "audio" in clip)


def _is_batch(inputs) -> bool:
    """A list/tuple of clips, or a ``datasets.Dataset`` (rows); a single clip otherwise."""
    return isinstance(inputs, (list, tuple)) or (hasattr(inputs, "column_names") and hasattr(inputs, "__len__"))


class BlemorePipeline(Pipeline):
    """Blended emotion recognition on clips: ``{"emotions", "outcome", "probabilities"}`` per clip.

    Args:
        model (`BlemoreForBlendedEmotionRecognition`): the classifier (with a video and/or audio encoder).
        processor (`BlemoreProcessor`, *optional*): its processor; loaded from the model's folder or repo when
            not given.
        batch_size (`int`, *optional*, defaults to 8): clips per forward pass when a list is given.
    """

    # The processor is not a ProcessorMixin; it is loaded here, from the model's own files.
    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, model, processor: BlemoreProcessor | None = None, **kwargs):
        if processor is None:
            source = getattr(model, "name_or_path", None)
            try:
                processor = BlemoreProcessor.from_pretrained(source)
            except (OSError, ValueError) as error:
                raise ValueError(
                    f"{source!r}: no BLEMORE processor (processor_config.json) beside the model; pass "
                    f"processor=... or save it there with processor.save_pretrained ({error})"
                ) from error
        super().__init__(model=model, processor=processor, **kwargs)

    def _sanitize_parameters(self, **kwargs):
        unknown = sorted(set(kwargs) - {"batch_size"})
        if unknown:
            raise TypeError(f"BlemorePipeline got unexpected arguments {unknown}")
        return {}, {}, {}

    def __call__(self, inputs, batch_size: int | None = None, **kwargs):
        """One clip → one dict; a list of clips (or a dataset) → a list of dicts, ``batch_size`` clips a pass."""
        self._sanitize_parameters(**kwargs)
        single = not _is_batch(inputs)
        clips = [inputs] if single else list(inputs)
        size = int(batch_size or self._batch_size or 8)
        results = []
        for start in range(0, len(clips), size):
            model_inputs = self.preprocess(clips[start : start + size])
            results.extend(self.postprocess(self.forward(model_inputs)))
        return results[0] if single else results

    def _sources(self, clip) -> tuple:
        """(video source, audio source) of one clip, each None where the model has no such encoder."""
        wants_video = self.processor.video_processor is not None
        wants_audio = self.processor.feature_extractor is not None
        if _is_row(clip):
            video, audio = clip.get("video"), clip.get("audio")
        elif isinstance(clip, (str, os.PathLike, bytes)) or (isinstance(clip, dict) and "array" not in clip):
            video = audio = clip  # one file holds both tracks
        elif hasattr(clip, "get_frames_at") or getattr(clip, "ndim", 0) == 4:
            video, audio = clip, None
        else:  # an AudioDecoder, a datasets.Audio value or a waveform
            video, audio = None, clip
        missing = [name for name, wanted, value in (("video", wants_video, video), ("audio", wants_audio, audio))
                   if wanted and value is None]
        if missing:
            raise ValueError(
                f"this model needs {' and '.join(missing)}, and the clip ({type(clip).__name__}) has none: pass the "
                "file's path or bytes, or the whole dataset row"
            )
        return (video if wants_video else None), (audio if wants_audio else None)

    def preprocess(self, clips: list):
        sources = [self._sources(clip) for clip in clips]
        videos = [video for video, _ in sources] if self.processor.video_processor is not None else None
        audio = [track for _, track in sources] if self.processor.feature_extractor is not None else None
        return self.processor(videos=videos, audio=audio, return_tensors="pt")

    def _forward(self, model_inputs):
        dtype = self.model.dtype
        inputs = {key: value.to(dtype) if value.is_floating_point() else value for key, value in model_inputs.items()}
        outputs = self.model(**inputs)
        return {"logits": outputs.logits.float(),
                "outcome_logits": None if outputs.outcome_logits is None else outputs.outcome_logits.float()}

    def postprocess(self, model_outputs) -> list[dict]:
        logits = model_outputs["logits"].cpu().numpy()
        outcome_logits = model_outputs.get("outcome_logits")
        outcome_logits = None if outcome_logits is None else outcome_logits.cpu().numpy()
        outcomes = self.model.decode_outcomes(logits=logits, outcome_logits=outcome_logits)
        probabilities = softmax(logits)
        return [
            {
                "emotions": emotions,
                "outcome": OUTCOME_NAMES[int(outcome)],
                "probabilities": {code: float(p) for code, p in zip(EMOTIONS, row)},
            }
            for emotions, outcome, row in zip(outcomes_to_predictions(outcomes), outcomes, probabilities)
        ]


__all__ = ["AUDIO_TASK", "VIDEO_TASK", "BlemorePipeline", "custom_pipelines_entry", "pipeline_task"]
