"""BLEMORE models for transformers: configuration, models, processor and decoders.

The files in this folder are flat with relative imports only, so ``save_pretrained`` can ship them as Hub remote
code (``AutoModel.from_pretrained(repo, trust_remote_code=True)`` then works without this package).

Importing a class from here also registers it with the Auto classes, so saved BLEMORE models load with the Auto API
in this environment without ``trust_remote_code``: ``AutoConfig`` (``model_type="blemore"``), ``AutoModel`` → the
base ``BlemoreModel`` (embeddings, the transformers convention), ``AutoModelForVideoClassification`` → the
classifier ``BlemoreForBlendedEmotionRecognition`` (every BLEMORE model, whatever its inputs),
``AutoModelForAudioClassification`` → the classifier of an audio-only model (refuses one that needs video),
``AutoProcessor`` → ``BlemoreProcessor``. ``BlemorePipeline`` is the ``pipeline`` of a saved model.

Names are imported lazily: ``from modeling.decoding_blemore import decode`` (numpy only) does not pull in torch
and transformers, which the training and prediction commands appreciate when tuning decoders on stored arrays.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "BlemoreConfig": "configuration_blemore",
    "BlemoreModel": "modeling_blemore",
    "BlemoreForBlendedEmotionRecognition": "modeling_blemore",
    "BlemoreForAudioClassification": "modeling_blemore",
    "BlemorePipeline": "pipeline_blemore",
    "BlemoreModelOutput": "modeling_blemore",
    "BlemoreOutput": "modeling_blemore",
    "BlemorePreTrainedModel": "modeling_blemore",
    "BlemoreProcessor": "processing_blemore",
    "frame_indices": "processing_blemore",
    "decode": "decoding_blemore",
    "decode_outcomes": "decoding_blemore",
    "threshold_outcomes": "decoding_blemore",
    "expected_scores": "decoding_blemore",
    "expected_score_outcomes": "decoding_blemore",
    "outcome_probabilities": "decoding_blemore",
    "emotion_probabilities": "decoding_blemore",
    "outcomes_to_predictions": "decoding_blemore",
    "HicmaeConfig": "configuration_hicmae",
    "HicmaeModel": "modeling_hicmae",
    "HicmaeForBlendedEmotionRecognition": "modeling_hicmae",
    "HicmaeModelOutput": "modeling_hicmae",
    "HicmaeProcessor": "processing_hicmae",
    "HicmaePipeline": "pipeline_hicmae",
}
_registered = False


def register_auto_classes() -> None:
    """Register the BLEMORE classes with the transformers Auto classes (idempotent)."""
    global _registered
    if _registered:
        return
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForAudioClassification,
        AutoModelForVideoClassification,
        AutoProcessor,
    )

    from .configuration_blemore import BlemoreConfig
    from .modeling_blemore import BlemoreForAudioClassification, BlemoreForBlendedEmotionRecognition, BlemoreModel
    from .processing_blemore import BlemoreProcessor

    AutoConfig.register(BlemoreConfig.model_type, BlemoreConfig, exist_ok=True)
    # As a saved checkpoint's auto_map says (see modeling_blemore): AutoModel is the base model, the task classes the
    # classifier; the audio one refuses a model that needs more than audio.
    AutoModel.register(BlemoreConfig, BlemoreModel, exist_ok=True)
    AutoModelForVideoClassification.register(BlemoreConfig, BlemoreForBlendedEmotionRecognition, exist_ok=True)
    AutoModelForAudioClassification.register(BlemoreConfig, BlemoreForAudioClassification, exist_ok=True)
    AutoProcessor.register(BlemoreConfig, BlemoreProcessor, exist_ok=True)

    # HiCMAE (its own architecture): AutoModel gives the encoders and fused embedding, the video task class the
    # classifier.
    from .configuration_hicmae import HicmaeConfig
    from .modeling_hicmae import HicmaeForBlendedEmotionRecognition, HicmaeModel
    from .processing_hicmae import HicmaeProcessor

    AutoConfig.register(HicmaeConfig.model_type, HicmaeConfig, exist_ok=True)
    AutoModel.register(HicmaeConfig, HicmaeModel, exist_ok=True)
    AutoModelForVideoClassification.register(HicmaeConfig, HicmaeForBlendedEmotionRecognition, exist_ok=True)
    AutoProcessor.register(HicmaeConfig, HicmaeProcessor, exist_ok=True)
    _registered = True


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
    if _EXPORTS[name] != "decoding_blemore":
        register_auto_classes()
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = [*_EXPORTS, "register_auto_classes"]
