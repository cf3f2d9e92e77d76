"""``BlemorePipeline``: clips in, emotions out, the way ``transformers.pipeline`` users expect.

A saved BLEMORE model with a video or audio encoder carries this file and names it in ``config.custom_pipelines``
for its task (``video-classification``; ``audio-classification`` for an audio-only model). Under that task it keeps
the task's contract: labels and scores over the six emotions, best first.

```python
from transformers import pipeline

classify = pipeline(model="runs/train/final/model", trust_remote_code=True)   # a folder or a Hub repo id
classify("clip.mov")
# [{"label": "ang", "score": 0.61}, {"label": "hap", "score": 0.27}, ...]   (top_k=5 for video, as transformers)
classify("clip.mov", top_k=2, function_to_apply="sigmoid")
classify(["a.mov", "b.mov", "c.mov"], batch_size=2)      # a list: one list of labels per clip
for labels in classify(KeyDataset(ds, "video")): ...    # a generator or dataset streams clip by clip

# The blend and its salience, in the challenge's (and the `blemore` metric's) format:
classify("clip.mov", blend=True)   # or pipeline(..., blend=True) for every call
# {"emotions": [{"emotion": "ang", "salience": 70.0}, {"emotion": "hap", "salience": 30.0}],
#  "outcome": "mix_ang_hap_70_30", "probabilities": {"ang": 0.61, "disg": 0.02, ..., "neu": 0.01}}
```

A clip is a file path, the file's bytes, a dataset row (``{"video": VideoDecoder, "audio": AudioDecoder, ...}`` as
``load_dataset`` returns it, or the undecoded ``{"path", "bytes"}`` values), or, for a one-modality model, that
modality alone (a torchcodec decoder, a ``datasets.Audio`` value). Several clips are a list (answered as a list),
a generator, a ``KeyDataset`` or a ``datasets.Dataset`` of rows (answered as an iterator, decoded in
``num_workers`` DataLoader workers); ``batch_size`` clips go through the model at once.

``blend=True`` answers with ``emotions`` decoded by the rule and thresholds stored in the model's config, the
``outcome`` name and the six emotion ``probabilities`` (the predicted salience proportions).

With a model and processor already in memory: ``BlemorePipeline(model=model, processor=processor)``.
``pipe.save_pretrained(DIR)`` writes the model, its code and the processor, so ``pipeline(model=DIR, ...)`` loads.

Shipped as Hub remote code (flat folder, relative imports only, no ``blemore`` import).
"""

from __future__ import annotations

import os

import torch
from transformers import Pipeline

from .decoding_blemore import EMOTIONS, OUTCOME_NAMES, outcomes_to_predictions, softmax
from .processing_blemore import BlemoreProcessor

#: The registered task of a model with video (and maybe audio), and of an audio-only model.
VIDEO_TASK, AUDIO_TASK = "video-classification", "audio-classification"
#: What ``function_to_apply`` accepts, as in transformers' classification pipelines.
SCORE_FUNCTIONS = ("softmax", "sigmoid", "none")


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


class _Rows(torch.utils.data.Dataset):
    """A ``datasets.Dataset`` seen as a torch dataset of rows, so the DataLoader's workers read and decode them."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[int(index)]


class BlemorePipeline(Pipeline):
    """Emotion recognition on clips: ``[{"label", "score"}]`` over the six emotions, or the blend with ``blend=True``.

    Args:
        model (`BlemoreForBlendedEmotionRecognition`): the classifier (with a video and/or audio encoder).
        processor (`BlemoreProcessor`, *optional*): its processor; loaded from the model's folder or repo when
            not given.
        top_k (`int`, *optional*): labels per clip, best first (default: 5 for ``video-classification`` as
            transformers' video pipeline, all six for ``audio-classification`` as its audio pipeline).
        function_to_apply (`str`, *optional*, defaults to `"softmax"`): ``"softmax"``, ``"sigmoid"`` or ``"none"``
            (the raw emotion logits).
        blend (`bool`, *optional*, defaults to `False`): answer ``{"emotions", "outcome", "probabilities"}`` per
            clip instead (the challenge's format).
        batch_size (`int`, *optional*), num_workers (`int`, *optional*): as for every pipeline.
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
        if not kwargs.get("task"):
            kwargs["task"] = pipeline_task(model.config) or VIDEO_TASK
        super().__init__(model=model, processor=processor, **kwargs)

    def _sanitize_parameters(self, top_k: int | None = None, function_to_apply: str | None = None,
                             blend: bool | None = None):
        postprocess = {}
        if top_k is not None:
            if int(top_k) < 1:
                raise ValueError(f"top_k must be at least 1, got {top_k}")
            postprocess["top_k"] = int(top_k)
        if function_to_apply is not None:
            if function_to_apply not in SCORE_FUNCTIONS:
                raise ValueError(f"Invalid value for `function_to_apply`: {function_to_apply}. "
                                 f"Valid options are {list(SCORE_FUNCTIONS)}")
            postprocess["function_to_apply"] = function_to_apply
        if blend is not None:
            postprocess["blend"] = bool(blend)
        return {}, {}, postprocess

    def __call__(self, inputs, *args, **kwargs):
        """One clip → its answer; a list → a list of answers; a generator or dataset → an iterator of answers."""
        if hasattr(inputs, "column_names") and hasattr(inputs, "__getitem__") and hasattr(inputs, "__len__"):
            inputs = _Rows(inputs)  # a datasets.Dataset: its rows, streamed through a DataLoader
        elif hasattr(inputs, "column_names") and hasattr(inputs, "__iter__"):
            inputs = (row for row in inputs)  # a datasets.IterableDataset (streaming): its rows, one by one
        return super().__call__(inputs, *args, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs):
        """The model with its code, and the processor, so ``pipeline(model=save_directory)`` loads them again."""
        super().save_pretrained(save_directory, **kwargs)
        self.processor.save_pretrained(save_directory)

    def get_iterator(self, inputs, num_workers: int, batch_size: int, preprocess_params, forward_params,
                     postprocess_params):
        """transformers' iterator, with the processor's ``pad`` as the collate function (one clip per item)."""
        from transformers.pipelines.pt_utils import PipelineDataset, PipelineIterator

        if isinstance(inputs, torch.utils.data.Dataset) or hasattr(inputs, "__len__"):
            dataset = PipelineDataset(inputs, self.preprocess, preprocess_params)
        else:
            num_workers = min(num_workers, 1)  # an iterable cannot be split between workers
            dataset = PipelineIterator(inputs, self.preprocess, preprocess_params)
        loader = torch.utils.data.DataLoader(dataset, num_workers=num_workers, batch_size=batch_size,
                                             collate_fn=self._collate)
        model_iterator = PipelineIterator(loader, self.forward, forward_params, loader_batch_size=batch_size)
        return PipelineIterator(model_iterator, self.postprocess, postprocess_params)

    def _collate(self, items: list[dict]) -> dict:
        return dict(self.processor.pad(items, return_tensors="pt"))

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

    def preprocess(self, clip) -> dict:
        """One clip → the model's inputs for it (a batch of one)."""
        video, audio = self._sources(clip)
        return dict(self.processor(videos=None if video is None else [video],
                                   audio=None if audio is None else [audio], return_tensors="pt"))

    def _forward(self, model_inputs):
        dtype = self.model.dtype
        inputs = {key: value.to(dtype) if value.is_floating_point() else value for key, value in model_inputs.items()}
        outputs = self.model(**inputs)
        result = {"logits": outputs.logits.float()}
        if outputs.outcome_logits is not None:
            result["outcome_logits"] = outputs.outcome_logits.float()
        return result

    def postprocess(self, model_outputs, top_k: int | None = None, function_to_apply: str = "softmax",
                    blend: bool = False):
        """One clip's answer: its labels and scores, best first, or with ``blend`` the challenge's answer."""
        logits = model_outputs["logits"][0].float()
        if blend:
            outcome_logits = model_outputs.get("outcome_logits")
            outcome = self.model.decode_outcomes(
                logits=logits[None].numpy(),
                outcome_logits=None if outcome_logits is None else outcome_logits.float().numpy())
            probabilities = softmax(logits[None].numpy())[0]
            return {"emotions": outcomes_to_predictions(outcome)[0],
                    "outcome": OUTCOME_NAMES[int(outcome[0])],
                    "probabilities": {code: float(p) for code, p in zip(EMOTIONS, probabilities)}}
        if top_k is None:
            top_k = len(EMOTIONS) if self.task == AUDIO_TASK else 5
        if function_to_apply == "softmax":
            scores = logits.softmax(-1)
        elif function_to_apply == "sigmoid":
            scores = logits.sigmoid()
        else:
            scores = logits
        values, indices = scores.topk(min(top_k, len(EMOTIONS)))
        id2label = self.model.config.id2label
        return [{"label": id2label[int(index)], "score": float(value)} for value, index in zip(values, indices)]


__all__ = ["AUDIO_TASK", "VIDEO_TASK", "BlemorePipeline", "custom_pipelines_entry", "pipeline_task"]
