"""BLEMORE models: any transformers video and/or audio encoder (or precomputed features) → fusion → six emotions.

- ``BlemoreModel``: encoders, pooling, per-modality projection and fusion; returns embeddings.
- ``BlemoreForBlendedEmotionRecognition``: adds the classification head, the training objectives (the paper's
  soft-label KL over six emotions, or 36-way outcome cross-entropy) and decoding into challenge predictions with
  the parameters stored in the config.

Shipped as Hub remote code (flat folder, relative imports only, no ``blemore`` import).
"""

from __future__ import annotations

import inspect
import os
import shutil
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, logging

from .configuration_blemore import ENCODER_MODALITIES, BlemoreConfig
from .decoding_blemore import EMOTIONS, OUTCOME_TARGETS, OUTCOMES, decode_outcomes, outcomes_to_predictions, softmax
from .fusion_blemore import (
    BlemoreCrossAttentionFusion,
    BlemoreFeatureAffine,
    BlemoreGatedFusion,
    BlemoreLayerWeights,
    BlemoreProjection,
)
from .model_card_blemore import CARD_FACTS_FILE, GENERIC_CARD_MARKS, read_card_facts, render_model_card
from .pipeline_blemore import custom_pipelines_entry
from .sequence_heads_blemore import BlemoreSequenceEncoder, BlemoreSequenceProcessor

logger = logging.get_logger(__name__)

# Auto classes of a saved checkpoint (its config's ``auto_map``), as transformers' own models do it: ``AutoModel``
# gives the base ``BlemoreModel`` (embeddings), the task classes give the classifier.
# ``AutoModelForVideoClassification`` is the classifier's task class for every BLEMORE model;
# ``AutoModelForAudioClassification`` only for a model that runs on audio alone (an audio-only Auto class must not
# hand back a model that needs video or feature vectors).
BASE_AUTO_CLASS = "AutoModel"
VIDEO_AUTO_CLASS = "AutoModelForVideoClassification"
AUDIO_AUTO_CLASS = "AutoModelForAudioClassification"
AUTO_MODEL_CLASSES: tuple[str, ...] = (BASE_AUTO_CLASS, VIDEO_AUTO_CLASS, AUDIO_AUTO_CLASS)


def runs_on_audio_alone(config: BlemoreConfig) -> bool:
    return config.modality_names == ["audio"]


@dataclass
class BlemoreModelOutput(ModelOutput):
    r"""
    Embeddings of a BLEMORE model.

    Args:
        fused_embeds (`torch.FloatTensor` of shape `(batch_size, fused_size)`):
            The fused representation the head classifies (`fused_size` is `fusion_hidden_size` for gated fusion,
            `num_modalities * fusion_hidden_size` for concat and cross-attention).
        modality_embeds (`torch.FloatTensor` of shape `(batch_size, num_modalities, fusion_hidden_size)`):
            Each modality after pooling and projection, in `config.modality_names` order.
        video_embeds (`torch.FloatTensor` of shape `(batch_size, video_hidden_size)`, *optional*):
            The video encoder's output, mean-pooled over tokens (None without a video encoder).
        audio_embeds (`torch.FloatTensor` of shape `(batch_size, audio_hidden_size)`, *optional*):
            The audio encoder's selected hidden layers, combined and mean-pooled over the valid frames (None without
            an audio encoder).
        video_hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states=True` is
            passed or `config.output_hidden_states=True`):
            The video encoder's hidden states, one `(batch_size, video_tokens, video_hidden_size)` tensor for its
            embeddings and one per layer (None without a video encoder).
        audio_hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned as `video_hidden_states`):
            The audio encoder's hidden states, one `(batch_size, audio_frames, audio_hidden_size)` tensor for the
            input of its first transformer layer and one per layer (None without an audio encoder).
        video_attentions (`tuple(torch.FloatTensor)`, *optional*, returned when `output_attentions=True` is passed
            or `config.output_attentions=True`):
            The video encoder's attention weights, one `(batch_size, num_heads, video_tokens, video_tokens)` tensor
            per layer (None without a video encoder). Needs an attention implementation that returns weights
            (`model.set_attn_implementation("eager")`).
        audio_attentions (`tuple(torch.FloatTensor)`, *optional*, returned as `video_attentions`):
            The audio encoder's attention weights, one `(batch_size, num_heads, audio_frames, audio_frames)` tensor
            per layer (None without an audio encoder).
    """

    fused_embeds: torch.FloatTensor | None = None
    modality_embeds: torch.FloatTensor | None = None
    video_embeds: torch.FloatTensor | None = None
    audio_embeds: torch.FloatTensor | None = None
    video_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    audio_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    video_attentions: tuple[torch.FloatTensor, ...] | None = None
    audio_attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class BlemoreOutput(ModelOutput):
    r"""
    Output of [`BlemoreForBlendedEmotionRecognition`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` are given):
            The configured objective: soft-label KL divergence (`"soft_kl"`) or outcome cross-entropy (`"outcome"`).
        logits (`torch.FloatTensor` of shape `(batch_size, 6)`):
            Emotion logits in `config.id2label` order (`ang disg fea hap sad neu`); their softmax is the predicted
            salience proportion of each emotion. With the `"outcome"` objective they are the log of the proportions
            implied by the outcome distribution.
        outcome_logits (`torch.FloatTensor` of shape `(batch_size, 36)`, *optional*):
            Logits over the 36 outcomes (`config.outcome_names` order); only with the `"outcome"` objective.
        fused_embeds, modality_embeds, video_embeds, audio_embeds:
            As in [`BlemoreModelOutput`].
        video_hidden_states, audio_hidden_states, video_attentions, audio_attentions:
            As in [`BlemoreModelOutput`] (only when asked for).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    outcome_logits: torch.FloatTensor | None = None
    fused_embeds: torch.FloatTensor | None = None
    modality_embeds: torch.FloatTensor | None = None
    video_embeds: torch.FloatTensor | None = None
    audio_embeds: torch.FloatTensor | None = None
    video_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    audio_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    video_attentions: tuple[torch.FloatTensor, ...] | None = None
    audio_attentions: tuple[torch.FloatTensor, ...] | None = None


#: The attention implementations a model may declare; a BLEMORE model declares those all its encoders support.
ATTENTION_SUPPORT_FLAGS: tuple[str, ...] = ("_supports_sdpa", "_supports_flash_attn", "_supports_flex_attn")


def encoder_model_classes(config: BlemoreConfig) -> list[type]:
    """The transformers classes `AutoModel.from_config` builds for the configured encoders."""
    classes = []
    for name in ENCODER_MODALITIES:
        sub_config = getattr(config, f"{name}_config")
        if sub_config is not None:
            classes.append(AutoModel._model_mapping[type(sub_config)])
    return classes


def main_input_name_of(config: BlemoreConfig) -> str:
    """The input every clip of this model has: video frames, else the waveform, else the features."""
    if config.video_config is not None:
        return "pixel_values_videos"
    if config.audio_config is not None:
        return "input_values"
    return "features"


class BlemorePreTrainedModel(PreTrainedModel):
    config_class = BlemoreConfig
    base_model_prefix = "blemore"
    # The class's default (the first argument of forward); each model sets its own from its modalities, which is
    # what the Trainer reads (e.g. `include_for_metrics=["inputs"]`): an audio-only model's is `input_values`.
    main_input_name = "pixel_values_videos"
    input_modalities = ("video", "audio")
    supports_gradient_checkpointing = True
    # What the class can hold; a model declares only what all its encoders support (see __init__): an audio model
    # on WavLM, which has eager attention only, refuses "sdpa" at the BLEMORE level instead of half switching.
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True

    def __init__(self, config: BlemoreConfig, *inputs, **kwargs):
        # from_pretrained applies keyword arguments (id2label, label2id, num_labels as the classification tutorials
        # pass them) after the config was validated: check again before building layers that could not hold them.
        config.validate_blemore()
        # Set before PreTrainedModel.__init__, which checks the requested attention implementation against them.
        encoders = encoder_model_classes(config)
        for flag in ATTENTION_SUPPORT_FLAGS:
            object.__setattr__(self, flag, all(getattr(encoder, flag, False) for encoder in encoders))
        object.__setattr__(self, "main_input_name", main_input_name_of(config))
        super().__init__(config, *inputs, **kwargs)

    def _require_encoders_support(self, flag: str, what: str) -> None:
        encoders = encoder_model_classes(self.config)
        lacking = [encoder.__name__ for encoder in encoders if not getattr(encoder, flag, False)]
        if lacking:
            raise ValueError(f"this BLEMORE model does not support {what}: its encoder {', '.join(lacking)} has no "
                             f"{what} attention (use attn_implementation='eager')")

    def _sdpa_can_dispatch(self, is_init_check: bool = False) -> bool:
        self._require_encoders_support("_supports_sdpa", "sdpa")
        return super()._sdpa_can_dispatch(is_init_check)

    def _flex_attn_can_dispatch(self, is_init_check: bool = False) -> bool:
        self._require_encoders_support("_supports_flex_attn", "flex_attention")
        return super()._flex_attn_can_dispatch(is_init_check)

    @classmethod
    def _can_set_attn_implementation(cls) -> bool:
        """The attention implementation is the encoders' setting (checked on them); BLEMORE's own attention layers
        (cross-attention fusion, sequence heads) compute with torch's scaled_dot_product_attention whatever it is."""
        return True

    def _init_weights(self, module):
        """Only the BLEMORE layers. Encoder modules go to their encoder's own rules (WavLM's uniform feature
        projection, zero positional-conv bias, ...): `initialize_weights` hands each encoder's modules to that
        encoder's `_initialize_weights`, and a direct call with one of them is delegated the same way."""
        encoder = self._encoder_of(module)
        if encoder is not None:
            encoder._init_weights(module)
            return
        std = self.config.initializer_range
        if isinstance(module, BlemoreLayerWeights):
            init.zeros_(module.logits)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, BlemoreFeatureAffine)):
            init.ones_(module.weight)
            init.zeros_(module.bias)

    @torch.no_grad()
    @init.guard_torch_init_functions()
    def initialize_weights(self):
        """Initialise what was not loaded: each encoder as transformers initialises it alone, the rest here.

        transformers' own traversal treats every module of a model defined outside transformers as custom code and
        skips modules without parameters of their own, whose init rules set their children (WavLM's feature
        projection is uniform in ±1/sqrt(fan_in), its positional-conv bias zero): an encoder inside a BLEMORE model
        would get the generic N(0, 0.02) instead. Here each encoder runs its own `initialize_weights`.
        """

        def visit(module: nn.Module):
            for child in module.children():
                if isinstance(child, PreTrainedModel) and not isinstance(child, BlemorePreTrainedModel):
                    child.initialize_weights()
                else:
                    visit(child)
            self._initialize_weights(module)

        visit(self)

    def _encoder_of(self, module: nn.Module) -> PreTrainedModel | None:
        """The encoder (a transformers PreTrainedModel inside this model) that `module` belongs to, if any."""
        for candidate in self.modules():
            if candidate is not self and isinstance(candidate, PreTrainedModel) and not isinstance(
                candidate, BlemorePreTrainedModel
            ):
                if candidate is module or any(sub is module for sub in candidate.modules()):
                    return candidate
        return None

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save as usual; for remote code, also the Auto classes, the pipeline and the processor's code.

        ``register_for_auto_class`` records only the class being saved; a Hub user should reach the base model through
        ``AutoModel``, the classifier through its task classes, the processor through ``AutoProcessor`` and the
        pipeline through ``pipeline(model=REPO, trust_remote_code=True)``.
        """
        if self._auto_class is not None:
            self._write_remote_code_map()
        saved = super().save_pretrained(save_directory, *args, **kwargs)
        if getattr(self.config, "sequence_head", None) is not None:  # padding of the window sequences
            BlemoreSequenceProcessor.from_config(self.config).save_pretrained(save_directory)
        # The card facts of a run (validation results, ...) travel with the model into every copy it is saved to.
        source = os.fspath(getattr(self, "name_or_path", "") or "")
        facts = os.path.join(source, CARD_FACTS_FILE)
        target = os.path.join(os.fspath(save_directory), CARD_FACTS_FILE)
        if source and os.path.isfile(facts) and os.path.abspath(facts) != os.path.abspath(target):
            shutil.copyfile(facts, target)
        return saved

    def _upload_modified_files(self, working_dir, repo_id, *args, **kwargs):
        """``push_to_hub``: upload the BLEMORE model card instead of transformers' empty template.

        A card already in the repo (e.g. the one ``blemore train --push-to-hub`` wrote, with validation results) is
        kept, as transformers keeps it; transformers' generic cards are replaced: the template that stands in for a
        missing card, and the card `Trainer.push_to_hub` writes (a model pushed once more with `model.push_to_hub`
        gets its BLEMORE card back). The card uses the facts a run saved with the model (``blemore_card.json``:
        validation results, training, dataset).
        """
        readme = os.path.join(working_dir, "README.md")
        existing = open(readme, encoding="utf-8").read() if os.path.isfile(readme) else None
        if existing is None or any(mark in existing for mark in GENERIC_CARD_MARKS):
            with open(readme, "w", encoding="utf-8") as f:
                f.write(render_model_card(self.config, repo_id, **read_card_facts(working_dir)))
        return super()._upload_modified_files(working_dir, repo_id, *args, **kwargs)

    def _write_remote_code_map(self) -> None:
        module = type(self).__module__.rsplit(".", 1)[-1]
        package = module.replace("modeling_", "", 1)
        config = self.config
        auto_map = dict(getattr(config, "auto_map", None) or {})
        auto_map.setdefault("AutoConfig", f"configuration_{package}.{type(config).__name__}")
        auto_map[BASE_AUTO_CLASS] = f"{module}.BlemoreModel"
        classifier = f"{module}.BlemoreForBlendedEmotionRecognition"
        auto_map[VIDEO_AUTO_CLASS] = classifier
        if runs_on_audio_alone(config):
            auto_map[AUDIO_AUTO_CLASS] = classifier
        else:
            auto_map.pop(AUDIO_AUTO_CLASS, None)
        pipelines = custom_pipelines_entry(config)
        if pipelines is not None:
            # A model on precomputed features has no processor and no pipeline: its inputs are the feature vectors.
            auto_map.setdefault("AutoProcessor", f"processing_{package}.BlemoreProcessor")
            # The pipeline file (and the processor's, which it imports) are relative imports of this file, so
            # save_pretrained copies them beside it even when only the model is saved.
            config.custom_pipelines = pipelines
        elif getattr(config, "sequence_head", None) is not None:  # padding of the window sequences
            auto_map["AutoProcessor"] = f"sequence_heads_{package}.BlemoreSequenceProcessor"
        else:
            auto_map.pop("AutoProcessor", None)
        if pipelines is None and getattr(config, "custom_pipelines", None):
            config.custom_pipelines = {}
        config.auto_map = auto_map


def _forward_parameter_names(module: nn.Module) -> set[str]:
    return set(inspect.signature(module.forward).parameters)


class BlemoreModel(BlemorePreTrainedModel):
    """Encoders, pooling, projection and fusion of a BLEMORE model (no head): returns [`BlemoreModelOutput`]."""

    def __init__(self, config: BlemoreConfig):
        super().__init__(config)
        if not config.modality_names:
            raise ValueError("a BLEMORE model needs a video_config, an audio_config or feature_sizes")
        self.video_encoder = AutoModel.from_config(config.video_config) if config.video_config is not None else None
        self.audio_encoder = AutoModel.from_config(config.audio_config) if config.audio_config is not None else None

        # Video models name their input pixel_values (VideoMAE, TimeSformer, ViViT) or pixel_values_videos (V-JEPA 2).
        self._video_input_name, self._video_extra_inputs = None, {}
        if self.video_encoder is not None:
            accepted = _forward_parameter_names(self.video_encoder)
            self._video_input_name = "pixel_values_videos" if "pixel_values_videos" in accepted else "pixel_values"
            if "skip_predictor" in accepted:  # V-JEPA 2: only its encoder's output is wanted
                self._video_extra_inputs["skip_predictor"] = True

        self._audio_layers = self._resolve_audio_layers(config) if self.audio_encoder is not None else None
        if self._audio_layers is not None and getattr(config.audio_config, "layerdrop", 0.0) > 0:
            # LayerDrop skips whole layers during training, which would shift the hidden states being selected.
            logger.info("audio_hidden_layers selects layers: LayerDrop of the audio encoder is turned off")
            config.audio_config.layerdrop = 0.0
        self.audio_layer_weights = None
        if (
            self._audio_layers is not None
            and len(self._audio_layers) > 1
            and config.audio_layer_aggregation == "weighted"
        ):
            self.audio_layer_weights = BlemoreLayerWeights(len(self._audio_layers))

        token_sizes = {}
        if self.video_encoder is not None:
            token_sizes["video"] = config.video_config.hidden_size
        if self.audio_encoder is not None:
            token_sizes["audio"] = config.audio_config.hidden_size
        token_sizes.update({name: int(size) for name, size in (config.feature_sizes or {}).items()})
        self.projections = nn.ModuleDict(
            {
                name: BlemoreProjection(size, config.fusion_hidden_size, config.dropout,
                                        config.projection_activation, config.feature_normalization)
                for name, size in token_sizes.items()
            }
        )
        num_modalities = len(token_sizes)
        if config.fusion == "gated":
            self.fusion = BlemoreGatedFusion(num_modalities, config.fusion_hidden_size, config.dropout)
            self.fused_size = config.fusion_hidden_size
        elif config.fusion == "cross_attention":
            self.fusion = BlemoreCrossAttentionFusion(config, token_sizes)
            self.fused_size = num_modalities * config.fusion_hidden_size
        else:
            self.fusion = None
            self.fused_size = num_modalities * config.fusion_hidden_size
        self.sequence_encoder = None
        if config.sequence_head is not None:  # per-window feature sequences replace pooling, projection and fusion
            self.sequence_encoder = BlemoreSequenceEncoder(config)
            self.projections, self.fusion = nn.ModuleDict(), None
            self.fused_size = self.sequence_encoder.output_size

        self.post_init()
        self._apply_freezing()

    @staticmethod
    def _resolve_audio_layers(config: BlemoreConfig) -> list[int] | None:
        """Indices into the audio encoder's hidden_states, or None for its last_hidden_state."""
        choice = config.audio_hidden_layers
        if choice == "last":
            return None
        num_states = config.audio_config.num_hidden_layers + 1  # the transformer input, then every layer's output
        if choice == "all":
            return list(range(num_states))
        layers = [index + num_states if index < 0 else index for index in choice]
        if any(not 0 <= index < num_states for index in layers):
            raise ValueError(
                f"audio_hidden_layers {list(choice)} out of range: the audio encoder has {num_states} hidden states "
                f"(0 = input of the first layer, {num_states - 1} = last layer)"
            )
        return layers

    def _apply_freezing(self):
        if self.config.freeze_video_encoder and self.video_encoder is not None:
            self.video_encoder.requires_grad_(False)
        if self.audio_encoder is not None:
            if self.config.freeze_audio_encoder:
                self.audio_encoder.requires_grad_(False)
            elif self.config.freeze_audio_feature_encoder:
                if not hasattr(self.audio_encoder, "freeze_feature_encoder"):
                    raise ValueError(
                        f"freeze_audio_feature_encoder: {type(self.audio_encoder).__name__} has no waveform feature "
                        "encoder to freeze"
                    )
                self.audio_encoder.freeze_feature_encoder()

    def train(self, mode: bool = True):
        """Frozen encoders stay in eval mode (no dropout), so they act as the fixed feature extractors they are."""
        super().train(mode)
        if self.video_encoder is not None and self.config.freeze_video_encoder:
            self.video_encoder.eval()
        if self.audio_encoder is not None and self.config.freeze_audio_encoder:
            self.audio_encoder.eval()
        return self

    def _audio_frame_mask(self, attention_mask: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Sample-level attention mask → frame-level validity (batch, num_frames) of the audio encoder's output."""
        if hasattr(self.audio_encoder, "_get_feat_extract_output_lengths"):
            lengths = self.audio_encoder._get_feat_extract_output_lengths(attention_mask.sum(-1))
        else:  # any other encoder: assume a uniform stride over the padded input
            lengths = torch.ceil(attention_mask.sum(-1) * num_frames / attention_mask.shape[-1])
        lengths = lengths.clamp(min=1, max=num_frames)
        return torch.arange(num_frames, device=attention_mask.device)[None, :] < lengths[:, None]

    def _encode_video(self, pixel_values_videos: torch.Tensor, output_hidden_states: bool, output_attentions: bool):
        output = self.video_encoder(
            **{self._video_input_name: pixel_values_videos}, **self._video_extra_inputs,
            output_hidden_states=output_hidden_states, output_attentions=output_attentions,
        )  # fmt: skip
        tokens = output.last_hidden_state
        return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device), output

    def _encode_audio(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None,
                      output_hidden_states: bool, output_attentions: bool):
        wants_layers = self._audio_layers is not None
        # The mask goes to the encoder as given, even when nothing is padded (the same result): deciding that from
        # its values would be a data-dependent branch, which torch.export and torch.compile(fullgraph=True) refuse.
        with warnings.catch_warnings():
            if attention_mask is not None:
                # transformers' WavLM attention hands torch a boolean padding mask beside its float position bias;
                # torch deprecates mixing the two types but computes the same attention. Ignored here, for this call.
                warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask and attn_mask",
                                        category=UserWarning)
            output = self.audio_encoder(input_values, attention_mask=attention_mask,
                                        output_hidden_states=wants_layers or output_hidden_states,
                                        output_attentions=output_attentions)
        if not wants_layers:
            tokens = output.last_hidden_state
        else:
            layers = torch.stack([output.hidden_states[index] for index in self._audio_layers])
            tokens = self.audio_layer_weights(layers) if self.audio_layer_weights is not None else layers.mean(0)
        if attention_mask is None:
            mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        else:
            mask = self._audio_frame_mask(attention_mask, tokens.shape[1])
        return tokens, mask, output

    def _split_features(self, features) -> dict[str, torch.Tensor]:
        sizes = {name: int(size) for name, size in (self.config.feature_sizes or {}).items()}
        if features is None:
            raise ValueError(f"this model needs `features` for its feature inputs {list(sizes)}")
        if isinstance(features, dict):
            missing = [name for name in sizes if name not in features]
            if missing:
                raise ValueError(f"`features` lacks {missing} (the model's feature inputs are {list(sizes)})")
            return {name: features[name] for name in sizes}
        if features.shape[-1] != sum(sizes.values()):
            raise ValueError(
                f"`features` has width {features.shape[-1]}, but the feature inputs {sizes} add up to "
                f"{sum(sizes.values())} (pass a dict, or the inputs concatenated in that order)"
            )
        return dict(zip(sizes, features.split(list(sizes.values()), dim=-1)))

    def forward(
        self,
        pixel_values_videos: torch.FloatTensor | None = None,
        input_values: torch.FloatTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        features: torch.FloatTensor | dict[str, torch.FloatTensor] | None = None,
        return_dict: bool | None = None,
        feature_masks: dict[str, torch.Tensor] | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
    ) -> BlemoreModelOutput | tuple:
        r"""
        Args:
            pixel_values_videos (`torch.FloatTensor` of shape `(batch_size, num_frames, channels, height, width)`):
                Frames prepared by the video encoder's processor (see `BlemoreProcessor`). Needed with a video
                encoder.
            input_values (`torch.FloatTensor` of shape `(batch_size, num_samples)`):
                16 kHz waveforms prepared by the audio encoder's feature extractor. Needed with an audio encoder.
            attention_mask (`torch.LongTensor` of shape `(batch_size, num_samples)`, *optional*):
                1 for real audio samples, 0 for padding; used by the audio encoder and to pool only real frames.
            features (`torch.FloatTensor` or `dict[str, torch.FloatTensor]`):
                Precomputed features: a dict name → `(batch_size, size)` (or `(batch_size, steps, size)`, averaged
                over steps), or one tensor holding the inputs of `config.feature_sizes` concatenated in order.
                Needed when `config.feature_sizes` is set. With a `config.sequence_head`: a dict name →
                `(batch_size, windows, size)` per-window sequences (windows may differ between inputs).
            feature_masks (`dict[str, torch.BoolTensor]`, *optional*):
                Sequence heads only: name → `(batch_size, windows)`, True for real windows, False for padding
                (default: every window is real).
            output_hidden_states (`bool`, *optional*):
                Return each encoder's hidden states (`video_hidden_states`, `audio_hidden_states`); default
                `config.output_hidden_states`.
            output_attentions (`bool`, *optional*):
                Return each encoder's attention weights (`video_attentions`, `audio_attentions`); default
                `config.output_attentions`. Encoders return weights with eager attention only.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        output_hidden_states = bool(
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        output_attentions = bool(output_attentions if output_attentions is not None else self.config.output_attentions)
        if self.sequence_encoder is not None:
            return self._forward_sequences(features, feature_masks, return_dict)
        tokens, masks, encoded = {}, {}, {}
        video_embeds = audio_embeds = None
        if self.video_encoder is not None:
            if pixel_values_videos is None:
                raise ValueError("this model has a video encoder and needs `pixel_values_videos`")
            tokens["video"], masks["video"], encoded["video"] = self._encode_video(
                pixel_values_videos, output_hidden_states, output_attentions
            )
        if self.audio_encoder is not None:
            if input_values is None:
                raise ValueError("this model has an audio encoder and needs `input_values`")
            tokens["audio"], masks["audio"], encoded["audio"] = self._encode_audio(
                input_values, attention_mask, output_hidden_states, output_attentions
            )
        if self.config.feature_sizes:
            for name, values in self._split_features(features).items():
                values = values.to(self.projections[name].linear.weight.dtype)
                tokens[name] = values[:, None, :] if values.dim() == 2 else values
                masks[name] = torch.ones(tokens[name].shape[:2], dtype=torch.bool, device=values.device)

        pooled = {name: _masked_mean(tokens[name], masks[name]) for name in tokens}
        if "video" in pooled and self.video_encoder is not None:
            video_embeds = pooled["video"]
        if "audio" in pooled and self.audio_encoder is not None:
            audio_embeds = pooled["audio"]
        modality_embeds = torch.stack([self.projections[name](pooled[name]) for name in self.projections], dim=1)
        if self.fusion is None:
            fused_embeds = modality_embeds.flatten(1)
        else:
            fused_embeds = self.fusion(modality_embeds, tokens, masks)

        extras = {}
        for name, encoder_output in encoded.items():
            if output_hidden_states:
                extras[f"{name}_hidden_states"] = encoder_output.hidden_states
            if output_attentions:
                extras[f"{name}_attentions"] = encoder_output.attentions
        output = BlemoreModelOutput(
            fused_embeds=fused_embeds,
            modality_embeds=modality_embeds,
            video_embeds=video_embeds,
            audio_embeds=audio_embeds,
            **extras,
        )
        return output if return_dict else output.to_tuple()

    def _forward_sequences(self, features, feature_masks, return_dict: bool) -> BlemoreModelOutput | tuple:
        names = list(self.config.feature_sizes)
        if not isinstance(features, dict) or any(name not in features for name in names):
            raise ValueError(f"this model's sequence head needs `features` as a dict with {names}, each of shape "
                             "(batch, windows, size)")
        masks = {}
        for name in names:
            values = features[name]
            if values.dim() != 3 or values.shape[-1] != int(self.config.feature_sizes[name]):
                raise ValueError(f"features[{name!r}] has shape {tuple(values.shape)}; expected (batch, windows, "
                                 f"{self.config.feature_sizes[name]})")
            given = (feature_masks or {}).get(name)
            masks[name] = (torch.ones(values.shape[:2], dtype=torch.bool, device=values.device) if given is None
                           else given.to(device=values.device, dtype=torch.bool))
        fused_embeds, modality_embeds = self.sequence_encoder({n: features[n] for n in names}, masks)
        output = BlemoreModelOutput(fused_embeds=fused_embeds, modality_embeds=modality_embeds)
        return output if return_dict else output.to_tuple()


_OUTCOME_TARGETS = torch.tensor(OUTCOME_TARGETS.tolist())


def _outcome_targets(like: torch.Tensor) -> torch.Tensor:
    """(36, 6) soft targets of the outcomes, as a constant (not a buffer: loading initialises buffers lazily)."""
    return _OUTCOME_TARGETS.to(dtype=like.dtype, device=like.device)


def _masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class BlemoreForBlendedEmotionRecognition(BlemorePreTrainedModel):
    """A BLEMORE model with its classification head, objectives and decoding.

    Example (tiny random encoders; use `from_pretrained_backbones` for real ones):

    ```python
    >>> from transformers import VideoMAEConfig, WavLMConfig
    >>> config = BlemoreConfig(video_config=VideoMAEConfig(...), audio_config=WavLMConfig(...))
    >>> model = BlemoreForBlendedEmotionRecognition(config)
    >>> outputs = model(pixel_values_videos=..., input_values=..., attention_mask=..., labels=soft_targets)
    >>> model.decode(outputs)  # [[{"emotion": "ang", "salience": 70.0}, {"emotion": "hap", "salience": 30.0}], ...]
    ```
    """

    # The loss is a mean over the batch computed here; the Trainer must not rescale it (see transformers' docs).
    accepts_loss_kwargs = False

    def __init__(self, config: BlemoreConfig):
        super().__init__(config)
        self.blemore = BlemoreModel(config)
        layers, size = [], self.blemore.fused_size
        for hidden_size in config.head_hidden_sizes:
            layers += [nn.Dropout(config.dropout), nn.Linear(size, hidden_size), nn.GELU()]
            size = hidden_size
        num_outputs = len(OUTCOMES) if config.objective == "outcome" else len(EMOTIONS)
        layers += [nn.Dropout(config.dropout), nn.Linear(size, num_outputs)]
        self.head = nn.Sequential(*layers)
        self.post_init()

    def forward(
        self,
        pixel_values_videos: torch.FloatTensor | None = None,
        input_values: torch.FloatTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        features: torch.FloatTensor | dict[str, torch.FloatTensor] | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        feature_masks: dict[str, torch.Tensor] | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
    ) -> BlemoreOutput | tuple:
        r"""
        Args:
            pixel_values_videos, input_values, attention_mask, features, feature_masks, output_hidden_states,
            output_attentions:
                As in [`BlemoreModel.forward`].
            labels (`torch.FloatTensor` of shape `(batch_size, 6)` or `torch.LongTensor` of shape `(batch_size,)`):
                Either the soft target (saliences as proportions in `EMOTIONS` order, the dataset's `soft_target`
                column) or the outcome index (0-35, the dataset's `outcome` column). Both objectives accept both:
                `"soft_kl"` turns an outcome index into its soft target; `"outcome"` maps a soft target to its
                outcome (it must be one of the 36 exactly).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        base = self.blemore(
            pixel_values_videos=pixel_values_videos,
            input_values=input_values,
            attention_mask=attention_mask,
            features=features,
            return_dict=True,
            feature_masks=feature_masks,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )
        head_output = self.head(base.fused_embeds)
        if self.config.objective == "outcome":
            outcome_logits = head_output
            emotion_probs = outcome_logits.softmax(-1) @ _outcome_targets(outcome_logits)
            logits = emotion_probs.clamp(min=torch.finfo(emotion_probs.dtype).tiny).log()
        else:
            outcome_logits, logits = None, head_output

        loss = self.compute_loss(logits, outcome_logits, labels) if labels is not None else None
        output = BlemoreOutput(
            loss=loss,
            logits=logits,
            outcome_logits=outcome_logits,
            fused_embeds=base.fused_embeds,
            modality_embeds=base.modality_embeds,
            video_embeds=base.video_embeds,
            audio_embeds=base.audio_embeds,
            video_hidden_states=base.video_hidden_states,
            audio_hidden_states=base.audio_hidden_states,
            video_attentions=base.video_attentions,
            audio_attentions=base.audio_attentions,
        )
        return output if return_dict else output.to_tuple()

    def compute_loss(
        self, logits: torch.Tensor, outcome_logits: torch.Tensor | None, labels: torch.Tensor
    ) -> torch.Tensor:
        """The configured objective, a mean over the batch (see `forward` for the accepted label forms)."""
        targets = _outcome_targets(logits)
        if self.config.objective == "outcome":
            if labels.is_floating_point():
                distance = (labels[:, None, :].to(targets.dtype) - targets[None]).abs().sum(-1)
                closest = distance.min(dim=-1)
                if (closest.values > 1e-3).any():
                    raise ValueError("labels: a soft target is not one of the 36 BLEMORE outcomes")
                labels = closest.indices
            return F.cross_entropy(outcome_logits, labels.long())
        soft_targets = targets[labels.long()] if not labels.is_floating_point() else labels.to(logits.dtype)
        return F.kl_div(logits.log_softmax(-1), soft_targets, reduction="batchmean")

    def decode_outcomes(self, outputs=None, *, logits=None, outcome_logits=None):
        """Outcome indices (numpy, one per clip) with the config's decoder and parameters.

        Pass a model output, or `logits` (and, for `"outcome"` models, `outcome_logits`) as tensors or arrays.
        The 36-way probabilities are used when available, so nothing the model knows is thrown away.
        """
        if outputs is not None:
            logits, outcome_logits = outputs["logits"], outputs.get("outcome_logits")
        probabilities = softmax(outcome_logits) if outcome_logits is not None else softmax(logits)
        return decode_outcomes(probabilities, **self.config.decoding_parameters)

    def decode(self, outputs=None, *, logits=None, outcome_logits=None) -> list[list[dict]]:
        """Challenge predictions `[{"emotion", "salience"}]` per clip with the config's decoder and parameters."""
        return outcomes_to_predictions(self.decode_outcomes(outputs, logits=logits, outcome_logits=outcome_logits))

    @classmethod
    def from_pretrained_backbones(
        cls,
        video_backbone: str | None = None,
        audio_backbone: str | None = None,
        *,
        freeze_video_encoder: bool = False,
        freeze_audio_encoder: bool = False,
        freeze_audio_feature_encoder: bool = False,
        backbone_kwargs: dict | None = None,
        **config_kwargs,
    ) -> BlemoreForBlendedEmotionRecognition:
        """A new BLEMORE model on pretrained encoders given by Hub name or local path (either may be None).

        The encoders keep their pretrained weights; projection, fusion and head are freshly initialised.
        `backbone_kwargs` go to both `from_pretrained` calls (e.g. `revision`, `cache_dir`, `local_files_only`);
        other keyword arguments are `BlemoreConfig` settings (`fusion`, `objective`, `feature_sizes`, ...).
        A video checkpoint saved with a classification head (e.g. a Kinetics fine-tune) loads as its encoder.
        """
        backbone_kwargs = dict(backbone_kwargs or {})
        encoders = {}
        for name, source in (("video", video_backbone), ("audio", audio_backbone)):
            if source is not None:
                encoders[name] = AutoModel.from_pretrained(source, **backbone_kwargs)
        config = BlemoreConfig(
            video_config=encoders["video"].config if "video" in encoders else None,
            audio_config=encoders["audio"].config if "audio" in encoders else None,
            freeze_video_encoder=freeze_video_encoder,
            freeze_audio_encoder=freeze_audio_encoder,
            freeze_audio_feature_encoder=freeze_audio_feature_encoder,
            **config_kwargs,
        )
        model = cls(config)
        for name, encoder in encoders.items():
            target = getattr(model.blemore, f"{name}_encoder")
            missing, unexpected = target.load_state_dict(encoder.state_dict(), strict=False)
            if missing or unexpected:
                raise ValueError(
                    f"{name} backbone {video_backbone if name == 'video' else audio_backbone!r}: weights do not fit "
                    f"the encoder built from its config (missing {missing[:5]}, unexpected {unexpected[:5]})"
                )
        model.blemore._apply_freezing()
        return model


class BlemoreForAudioClassification(BlemoreForBlendedEmotionRecognition):
    """What ``AutoModelForAudioClassification`` builds in this environment: the classifier of an audio-only model.

    Refuses a config that needs video or feature vectors, which an audio classification user could not feed.
    """

    def __init__(self, config: BlemoreConfig):
        if not runs_on_audio_alone(config):
            raise ValueError(
                f"this BLEMORE model takes {config.modality_names}, not audio alone: load it with "
                "AutoModelForVideoClassification (or BlemoreForBlendedEmotionRecognition)"
            )
        super().__init__(config)


BlemoreModel.register_for_auto_class(BASE_AUTO_CLASS)
BlemoreForBlendedEmotionRecognition.register_for_auto_class(VIDEO_AUTO_CLASS)

__all__ = [
    "AUTO_MODEL_CLASSES",
    "BlemoreForAudioClassification",
    "BlemoreForBlendedEmotionRecognition",
    "BlemoreModel",
    "BlemoreModelOutput",
    "BlemoreOutput",
    "BlemorePreTrainedModel",
]
