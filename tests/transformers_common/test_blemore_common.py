"""transformers' own common tests (`ModelTesterMixin`, `ConfigTester`) run against BLEMORE model variants.

The mixins come from transformers' source release of the installed version (see `transformers_source.py`; fetched
by `.ci/transformers_common.sh`). Without it these tests are skipped, with the reason; `.ci/run` sets
`BLEMORE_TRANSFORMERS_COMMON=required`, which turns the skip into a failure.
"""

from __future__ import annotations

import copy
import os
import unittest

import pytest
import torch
from tiny_encoder_configs import IMAGE_SIZE, NUM_FRAMES, NUM_SAMPLES, VIDEO_TOKENS, audio_config, video_config

from blemore_toolkit.modeling import (
    BlemoreConfig,
    BlemoreForAudioClassification,
    BlemoreForBlendedEmotionRecognition,
    BlemoreModel,
)

from . import transformers_source

_ABSENT = transformers_source.absent_reason()
if _ABSENT and os.environ.get(transformers_source.REQUIRED_VARIABLE) == "required":
    raise RuntimeError(f"{transformers_source.REQUIRED_VARIABLE}=required, but {_ABSENT}")
if _ABSENT:
    pytest.skip(_ABSENT, allow_module_level=True)

ModelTesterMixin, ConfigTester, _common = transformers_source.load_common_tests()

BATCH_SIZE = 2


def audio_frames(num_samples: int) -> int:
    length = num_samples
    for kernel, stride in zip((10, 8), (5, 4)):
        length = (length - kernel) // stride + 1
    return length


class BlemoreModelTester:
    """Builds one BLEMORE variant and its inputs, as transformers' model testers do."""

    batch_size = BATCH_SIZE
    num_hidden_layers = 2
    num_attention_heads = 2
    hidden_size = 16
    is_training = True

    def __init__(self, parent, video=False, audio=False, feature_sizes=None, sequence_head=None):
        self.parent = parent
        self.video, self.audio = video, audio
        self.feature_sizes, self.sequence_head = feature_sizes, sequence_head
        # The encoders and their (tokens, hidden size), for the per-encoder output checks.
        self.encoders = {}
        if video:
            self.encoders["video"] = (VIDEO_TOKENS, self.hidden_size)
        if audio:
            self.encoders["audio"] = (audio_frames(NUM_SAMPLES), self.hidden_size)
        self.seq_length = next(iter(self.encoders.values()))[0] if self.encoders else 1

    def get_config(self) -> BlemoreConfig:
        return BlemoreConfig(
            video_config=video_config() if self.video else None,
            audio_config=audio_config() if self.audio else None,
            feature_sizes=self.feature_sizes, sequence_head=self.sequence_head,
            fusion_hidden_size=8, fusion_num_heads=2, head_hidden_sizes=[8], dropout=0.0,
        )  # fmt: skip

    def prepare_config_and_inputs_for_common(self):
        config = self.get_config()
        inputs = {}
        if self.video:
            inputs["pixel_values_videos"] = torch.randn(BATCH_SIZE, NUM_FRAMES, 3, IMAGE_SIZE, IMAGE_SIZE)
        if self.audio:
            inputs["input_values"] = torch.randn(BATCH_SIZE, NUM_SAMPLES)
            mask = torch.ones(BATCH_SIZE, NUM_SAMPLES, dtype=torch.long)
            mask[-1, NUM_SAMPLES // 2 :] = 0
            inputs["attention_mask"] = mask
        if self.feature_sizes and self.sequence_head:
            inputs["features"] = {name: torch.randn(BATCH_SIZE, 3, size) for name, size in self.feature_sizes.items()}
        elif self.feature_sizes:
            inputs["features"] = torch.randn(BATCH_SIZE, sum(self.feature_sizes.values()))
        return config, inputs


#: Common tests that do not apply to BLEMORE models, and why. Each is skipped with its reason.
NOT_APPLICABLE = {
    "test_model_get_set_embeddings": "BLEMORE models take frames, waveforms or feature vectors: no token embeddings",
    "test_eager_matches_sdpa_inference": (
        "it compares `hidden_states` (or the logits of a class named *Classification) on a text-shaped dummy "
        "attention_mask; BLEMORE returns per-encoder hidden states and its audio mask is per sample. Eager and SDPA "
        "are compared on BLEMORE's logits in tests/test_modeling_conventions.py"
    ),
}
#: Variants without encoders (precomputed features): nothing to checkpoint, no encoder outputs to return.
NOT_APPLICABLE_WITHOUT_ENCODERS = {
    "test_gradient_checkpointing_backward_compatibility": "no encoder layers to checkpoint (precomputed features)",
    "test_gradient_checkpointing_enable_disable": "no encoder layers to checkpoint (precomputed features)",
    "test_peft_gradient_checkpointing_enable_disable": "no encoder layers to checkpoint (precomputed features)",
    "test_training_gradient_checkpointing": "no encoder layers to checkpoint (precomputed features)",
    "test_training_gradient_checkpointing_use_reentrant_false": "no encoder layers to checkpoint",
    "test_training_gradient_checkpointing_use_reentrant_true": "no encoder layers to checkpoint",
}
#: Variants with the WavLM encoder.
NOT_APPLICABLE_WITH_WAVLM = {
    "test_training_gradient_checkpointing_use_reentrant_true": (
        "WavLM alone never returns from backward under reentrant checkpointing with transformers 5.24 and torch "
        "2.13 (a tiny WavLMModel, gradient_checkpointing_enable(use_reentrant=True), forward + backward hangs); "
        "the non-reentrant variant runs"
    ),
}
#: ConfigTester checks that do not apply: BLEMORE's label space is fixed to the six emotions.
CONFIG_NOT_APPLICABLE = {
    "create_and_test_config_with_num_labels": "id2label is the six BLEMORE emotions; other label counts are refused",
}


class BlemoreCommonTests(ModelTesterMixin):
    variant: dict = {}
    all_model_classes = (BlemoreModel, BlemoreForBlendedEmotionRecognition)
    test_resize_embeddings = False  # no token embeddings
    _is_composite = True  # video and audio sub-configs and encoders
    test_mismatched_shapes = False  # the head's size is fixed by the label space (six emotions or 36 outcomes)

    def setUp(self):
        self.model_tester = BlemoreModelTester(self, **self.variant)
        self.config_tester = ConfigTester(self, config_class=BlemoreConfig, has_text_modality=False)
        name = self._testMethodName
        reasons = dict(NOT_APPLICABLE)
        if not self.model_tester.encoders:
            reasons.update(NOT_APPLICABLE_WITHOUT_ENCODERS)
        if "audio" in self.model_tester.encoders:
            reasons.update(NOT_APPLICABLE_WITH_WAVLM)
        for prefix, reason in reasons.items():
            if name == prefix or name.startswith(prefix + "_"):
                self.skipTest(reason)

    def test_config(self):
        for name in dir(self.config_tester):
            if name.startswith(("create_and_test_", "check_")) and name not in CONFIG_NOT_APPLICABLE:
                with self.subTest(name):
                    getattr(self.config_tester, name)()

    # ---- inputs: the classifier learns from outcome indices (the dataset's `outcome` column)
    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        inputs = super()._prepare_for_class(inputs_dict, model_class, return_labels=False)
        if return_labels and model_class is not BlemoreModel:
            inputs["labels"] = torch.tensor([7, 0][:BATCH_SIZE])
        return inputs

    # ---- training needs a loss: the base model (embeddings, no head) has none, as transformers' base models
    def _train_classifiers_only(self, test):
        classes = self.all_model_classes
        self.all_model_classes = tuple(c for c in classes if c is not BlemoreModel)
        try:
            test()
        finally:
            self.all_model_classes = classes

    def test_training(self):
        self._train_classifiers_only(super().test_training)

    def test_training_gradient_checkpointing(self):
        self._train_classifiers_only(super().test_training_gradient_checkpointing)

    def test_training_gradient_checkpointing_use_reentrant_false(self):
        self._train_classifiers_only(super().test_training_gradient_checkpointing_use_reentrant_false)

    def test_training_gradient_checkpointing_use_reentrant_true(self):
        self._train_classifiers_only(super().test_training_gradient_checkpointing_use_reentrant_true)

    # ---- encoder outputs: composite, one field per encoder (`video_hidden_states`, `audio_attentions`, ...)
    def _encoder_outputs(self, outputs, kind: str) -> dict:
        return {name: outputs[f"{name}_{kind}"] for name in self.model_tester.encoders if f"{name}_{kind}" in outputs}

    def _check_encoder_outputs(self, config, inputs, kind: str, **switch):
        for model_class in self.all_model_classes:
            model = model_class._from_config(copy.deepcopy(config), attn_implementation="eager").eval()
            with torch.no_grad():
                outputs = model(**self._prepare_for_class(inputs, model_class), **switch)
            found = self._encoder_outputs(outputs, kind)
            self.assertEqual(sorted(found), sorted(self.model_tester.encoders), f"{model_class.__name__}: {kind}")
            for name, values in found.items():
                tokens, hidden = self.model_tester.encoders[name]
                if kind == "hidden_states":
                    self.assertEqual(len(values), self.model_tester.num_hidden_layers + 1)
                    self.assertEqual(list(values[0].shape), [BATCH_SIZE, tokens, hidden])
                else:
                    self.assertEqual(len(values), self.model_tester.num_hidden_layers)
                    self.assertEqual(list(values[0].shape),
                                     [BATCH_SIZE, self.model_tester.num_attention_heads, tokens, tokens])

    def _check_output_switch(self, kind: str):
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        self._check_encoder_outputs(config, inputs, kind, **{f"output_{kind}": True})
        config.__setattr__(f"output_{kind}", True)  # the config's setting is the default
        self._check_encoder_outputs(config, inputs, kind)
        if not self.model_tester.encoders:  # nothing to return, and nothing returned
            model = self.all_model_classes[-1](config).eval()
            with torch.no_grad():
                outputs = model(**inputs)
            self.assertFalse(any(key.endswith(kind) for key in outputs))

    def test_hidden_states_output(self):
        self._check_output_switch("hidden_states")

    def test_attention_outputs(self):
        self._check_output_switch("attentions")

    def test_retain_grad_hidden_states_attentions(self):
        if not self.model_tester.encoders:
            self.skipTest("no encoder (precomputed features): no hidden states or attentions")
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        config.output_hidden_states = config.output_attentions = True
        model = self.all_model_classes[-1]._from_config(config, attn_implementation="eager")
        outputs = model(**inputs)
        kept = []
        for kind in ("hidden_states", "attentions"):
            for name, values in self._encoder_outputs(outputs, kind).items():
                if (name, kind) == ("audio", "attentions"):
                    # WavLM returns torch's head-averaged weights broadcast to every head, a copy beside the
                    # attention rather than on the output's path: no gradient reaches them, in WavLM alone too.
                    continue
                values[0].retain_grad()
                kept.append(values[0])
        outputs[0].flatten()[0].backward()
        self.assertTrue(kept and all(tensor.grad is not None for tensor in kept))


class VideoAudioTest(BlemoreCommonTests, unittest.TestCase):
    variant = {"video": True, "audio": True}


class VideoTest(BlemoreCommonTests, unittest.TestCase):
    variant = {"video": True}


class AudioTest(BlemoreCommonTests, unittest.TestCase):
    variant = {"audio": True}
    all_model_classes = (BlemoreModel, BlemoreForBlendedEmotionRecognition, BlemoreForAudioClassification)


class FeaturesTest(BlemoreCommonTests, unittest.TestCase):
    variant = {"feature_sizes": {"audio": 6, "video": 4}}
    has_attentions = False


class SequenceHeadTest(BlemoreCommonTests, unittest.TestCase):
    variant = {"feature_sizes": {"audio": 6, "video": 4}, "sequence_head": "temporal_transformer"}
    has_attentions = False
