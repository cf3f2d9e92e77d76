"""Configuration of BLEMORE models: which encoders, how they are fused, what is learned and how it is decoded.

Shipped as Hub remote code (flat folder, relative imports only, no ``blemore`` import).
"""

from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .decoding_blemore import (
    BLEMORE_BLEND_FRACTION,
    BLEND_PAIRS,
    DECODERS,
    EMOTIONS,
    OUTCOME_NAMES,
    OUTCOMES,
    SALIENCE_LEVELS,
    config_decoding_parameters,
    resolve_outcome_prior,
)

#: What ``decoding_rule`` was called in config.json files written before it was renamed.
LEGACY_DECODING_RULE_KEY = "decoder"

#: Names of the two encoder inputs; a precomputed feature input may not reuse the name of an encoder it sits beside.
ENCODER_MODALITIES: tuple[str, ...] = ("video", "audio")


@strict
class BlemoreConfig(PreTrainedConfig):
    r"""
    Configuration of [`BlemoreModel`] and [`BlemoreForBlendedEmotionRecognition`].

    A BLEMORE model encodes each available modality into one vector, fuses the vectors and predicts six emotion
    logits (``ang disg fea hap sad neu``; ``id2label``/``label2id`` hold them). Modalities come from any mix of:

    - a video encoder built from ``video_config`` (any transformers video model config: VideoMAE, TimeSformer,
      ViViT, V-JEPA 2, ...), fed ``pixel_values_videos``;
    - an audio encoder built from ``audio_config`` (any speech model config: WavLM, HuBERT, Wav2Vec2, ...), fed
      ``input_values`` and ``attention_mask``;
    - precomputed feature vectors named in ``feature_sizes`` (e.g. ``{"video": 768, "audio": 1024}``), fed as
      ``features``.

    Args:
        video_config (`PreTrainedConfig` or `dict`, *optional*):
            Config of the video encoder; None for a model without one.
        audio_config (`PreTrainedConfig` or `dict`, *optional*):
            Config of the audio encoder; None for a model without one.
        feature_sizes (`dict[str, int]`, *optional*):
            Name → width of each precomputed feature input. A concatenated ``features`` tensor holds them in
            the order of their names (sorted; the order ``config.json`` keeps). A name may not be
            ``"video"``/``"audio"`` when that encoder is also configured.
        fusion (`str`, *optional*, defaults to `"gated"`):
            ``"concat"`` (concatenate the projected modality vectors), ``"gated"`` (a learned per-dimension softmax
            gate over modalities) or ``"cross_attention"`` (each modality's pooled vector attends over the token
            sequences of the other modalities, then the results are concatenated).
        fusion_hidden_size (`int`, *optional*, defaults to 256):
            Width every modality is projected to before fusion.
        fusion_num_heads (`int`, *optional*, defaults to 4):
            Attention heads of the cross-attention fusion.
        head_hidden_sizes (`list[int]`, *optional*, defaults to `(256,)`):
            Hidden layers of the classification MLP after fusion (empty: a linear head).
        dropout (`float`, *optional*, defaults to 0.1):
            Dropout in the projections, the fusion and the head.
        projection_activation (`str`, *optional*, defaults to `"gelu"`):
            Activation after each modality's projection: ``"gelu"`` or ``"relu"`` (the organisers' MLP heads).
        feature_normalization (`str`, *optional*, defaults to `"layer_norm"`):
            What each modality's vector goes through before its projection: ``"layer_norm"`` (per-vector
            normalisation, then an elementwise affine map) or ``"affine"`` (the elementwise affine map alone, e.g. a
            per-feature standardisation ``x · 1/σ − μ/σ`` fitted on training data, as in the organisers' heads).
        audio_hidden_layers (`str` or `list[int]`, *optional*, defaults to `"last"`):
            Which audio encoder hidden states to use: ``"last"``, ``"all"`` or a list of indices into
            ``hidden_states`` (0 is the input of the first transformer layer). Challenge entries found middle
            layers best for non-verbal vocalisations, e.g. ``list(range(6, 13))`` for a 12-layer base model.
            Selecting layers turns the audio encoder's LayerDrop off (skipped layers would shift the selection).
        audio_layer_aggregation (`str`, *optional*, defaults to `"weighted"`):
            How several selected layers are combined: ``"weighted"`` (learned softmax weights, initialised equal)
            or ``"mean"``.
        freeze_video_encoder (`bool`, *optional*, defaults to `False`):
            Keep the video encoder's weights fixed during training.
        freeze_audio_encoder (`bool`, *optional*, defaults to `False`):
            Keep the whole audio encoder fixed.
        freeze_audio_feature_encoder (`bool`, *optional*, defaults to `False`):
            Keep only the audio encoder's convolutional waveform front end fixed (common when fine-tuning
            wav2vec2-style models on little data).
        objective (`str`, *optional*, defaults to `"soft_kl"`):
            ``"soft_kl"``: the paper's objective, KL divergence from the soft target (saliences as proportions over
            the six emotions) to the softmax of the six logits. ``"outcome"``: cross-entropy over the 36 outcomes
            (a 36-way head; ``logits`` then hold the log of the implied emotion proportions).
        decoding_rule (`str`, *optional*, defaults to `"thresholds"`):
            How probabilities become ``[{"emotion", "salience"}]``: ``"thresholds"`` (the paper's α/β rule) or
            ``"expected_score"`` (the outcome maximising the expected challenge score). See ``decoding_blemore``.
            A ``config.json`` written before this field was renamed holds it as ``decoder``; that key is read once
            and becomes ``decoding_rule`` (``decoder`` is a name transformers reserves for a decoder sub-config).
        presence_threshold (`float`, *optional*, defaults to 0.15):
            α of the threshold decoder: the second emotion is present when its probability reaches α. The default
            lies halfway between what the soft targets give the second emotion of a single (0) and of the weakest
            blend partner (0.3).
        salience_threshold (`float`, *optional*, defaults to 0.2):
            β of the threshold decoder: a blend is 50/50 when its two probabilities differ by at most β (halfway
            between the 50/50 and the 70/30 targets).
        blend_fraction (`float`, *optional*, defaults to 1660/3050):
            Expected fraction of blended clips, which sets the weight of salience accuracy per clip in the
            expected-score decoder.
        outcome_temperature (`float`, *optional*, defaults to 1.0):
            Temperature when six emotion probabilities are turned into an outcome distribution (soft_kl models).
        outcome_prior (`str` or `list[float]`, *optional*, defaults to `"blemore"`):
            Prior over the 36 outcomes for that conversion: ``"blemore"`` (the released label frequencies),
            ``"uniform"`` or 36 weights in ``OUTCOMES`` order.
        sequence_head (`str`, *optional*):
            Read the feature inputs as per-window sequences (``features[name]`` of shape ``(batch, windows, size)``
            with ``feature_masks[name]`` marking the real windows) through a sequence head instead of pooling them:
            ``"attention_pool"``, ``"temporal_transformer"`` or ``"cross_modal"`` (see ``sequence_heads_blemore``).
            ``feature_sizes`` then holds each input's window width. None (the default): clip-level features.
            Only for models on precomputed features (no encoders).
        sequence_num_layers (`int`, *optional*, defaults to 1):
            Transformer layers of ``"temporal_transformer"``, cross-modal blocks of ``"cross_modal"``.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the initial weights of the new (non-encoder) layers.
    """

    model_type = "blemore"
    sub_configs_defaults = {
        "video_config": SubConfigSpec(config_class=AutoConfig, model_type="videomae", optional=True),
        "audio_config": SubConfigSpec(config_class=AutoConfig, model_type="wavlm", optional=True),
    }
    # Keep Trainer predictions to the logits (and outcome logits): embeddings are for feature extraction.
    keys_to_ignore_at_inference = [
        "fused_embeds", "modality_embeds", "video_embeds", "audio_embeds",
        "video_hidden_states", "audio_hidden_states", "video_attentions", "audio_attentions",
    ]  # fmt: skip

    #: The label space, mirrored from ``blemore.py`` (a test checks they are equal).
    emotions = EMOTIONS
    blend_pairs = BLEND_PAIRS
    salience_levels = SALIENCE_LEVELS
    outcomes = OUTCOMES
    outcome_names = OUTCOME_NAMES

    video_config: PreTrainedConfig | dict | None = None
    audio_config: PreTrainedConfig | dict | None = None
    feature_sizes: dict[str, int] | None = None
    fusion: Literal["concat", "gated", "cross_attention"] = "gated"
    fusion_hidden_size: int = 256
    fusion_num_heads: int = 4
    head_hidden_sizes: list[int] | tuple[int, ...] = (256,)
    dropout: float | int = 0.1
    projection_activation: Literal["gelu", "relu"] = "gelu"
    feature_normalization: Literal["layer_norm", "affine"] = "layer_norm"
    audio_hidden_layers: Literal["last", "all"] | list[int] | tuple[int, ...] = "last"
    audio_layer_aggregation: Literal["weighted", "mean"] = "weighted"
    freeze_video_encoder: bool = False
    freeze_audio_encoder: bool = False
    freeze_audio_feature_encoder: bool = False
    objective: Literal["soft_kl", "outcome"] = "soft_kl"
    decoding_rule: Literal["thresholds", "expected_score"] = "thresholds"
    presence_threshold: float | int = 0.15
    salience_threshold: float | int = 0.2
    blend_fraction: float | int = BLEMORE_BLEND_FRACTION
    outcome_temperature: float | int = 1.0
    outcome_prior: Literal["blemore", "uniform"] | list[float] | tuple[float, ...] = "blemore"
    sequence_head: Literal["attention_pool", "temporal_transformer", "cross_modal"] | None = None
    sequence_num_layers: int = 1
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        legacy_rule = kwargs.pop(LEGACY_DECODING_RULE_KEY, None)
        if legacy_rule is not None:
            # A config.json from before the rename: its `decoder` is the decoding rule. Given beside a different
            # `decoding_rule` it is ambiguous, and refused rather than one of them silently dropped.
            if self.decoding_rule != legacy_rule and self.decoding_rule != "thresholds":
                raise ValueError(f"decoder={legacy_rule!r} (the old name of decoding_rule) contradicts "
                                 f"decoding_rule={self.decoding_rule!r}; pass decoding_rule only")
            self.decoding_rule = legacy_rule
        if self.feature_sizes:
            # config.json is written with sorted keys, so the feature inputs are kept in name order from the start:
            # a model reloaded from disk splits a concatenated ``features`` tensor exactly as it was trained to.
            self.feature_sizes = {name: int(self.feature_sizes[name]) for name in sorted(self.feature_sizes)}
        if self.id2label is None:
            self.id2label = dict(enumerate(EMOTIONS))
        if self.label2id is None:
            self.label2id = {label: index for index, label in self.id2label.items()}
        super().__post_init__(**kwargs)

    @property
    def modality_names(self) -> list[str]:
        """Fusion inputs in order: ``video`` and ``audio`` encoders (when configured), then the feature inputs."""
        names = [name for name in ENCODER_MODALITIES if getattr(self, f"{name}_config") is not None]
        return names + list(self.feature_sizes or {})

    @property
    def feature_input_kind(self) -> str | None:
        """What ``features`` holds: ``"sequence"`` (per-window, with ``feature_masks``), ``"vector"`` (one per
        clip) or None (no feature inputs)."""
        if not self.feature_sizes:
            return None
        return "sequence" if self.sequence_head is not None else "vector"

    @property
    def decoding_parameters(self) -> dict:
        """Keyword arguments of ``decoding_blemore.decode_outcomes`` as stored in this config."""
        return config_decoding_parameters(self)

    def validate_blemore(self):
        """Reject settings the model cannot build or decode with, at construction and before saving."""
        labels = tuple(str(self.id2label.get(i, self.id2label.get(str(i)))) for i in range(len(self.id2label)))
        if labels != EMOTIONS or dict(self.label2id or {}) != {label: i for i, label in enumerate(EMOTIONS)}:
            hint = ""
            if len(labels) == len(OUTCOMES):
                hint = (" 36 labels are the outcomes: a BLEMORE model predicts them with objective='outcome' "
                        "(a 36-way head; pass that instead of id2label/label2id) or decodes them from the six "
                        "emotions (model.decode);")
            raise ValueError(
                f"id2label/label2id must map 0..5 to the six emotions {EMOTIONS}, got {len(labels)} labels.{hint} "
                "leave id2label, label2id and num_labels unset"
            )
        for name, size in (self.feature_sizes or {}).items():
            if name in ENCODER_MODALITIES and getattr(self, f"{name}_config") is not None:
                raise ValueError(f"feature input {name!r} clashes with the {name} encoder; give it another name")
            if int(size) <= 0:
                raise ValueError(f"feature input {name!r} needs a positive size, got {size}")
        if self.fusion == "cross_attention" and self.fusion_hidden_size % self.fusion_num_heads:
            raise ValueError(
                f"fusion_hidden_size ({self.fusion_hidden_size}) must be divisible by "
                f"fusion_num_heads ({self.fusion_num_heads})"
            )
        if self.projection_activation not in ("gelu", "relu"):
            raise ValueError(f"projection_activation must be 'gelu' or 'relu', got {self.projection_activation!r}")
        if self.feature_normalization not in ("layer_norm", "affine"):
            raise ValueError(f"feature_normalization must be 'layer_norm' or 'affine', got "
                             f"{self.feature_normalization!r}")
        if self.sequence_head is not None:
            if not self.feature_sizes or self.video_config is not None or self.audio_config is not None:
                raise ValueError("a sequence head reads precomputed feature sequences only: set feature_sizes and "
                                 "no video_config/audio_config")
            if self.fusion_hidden_size % self.fusion_num_heads:
                raise ValueError(f"fusion_hidden_size ({self.fusion_hidden_size}) must be divisible by "
                                 f"fusion_num_heads ({self.fusion_num_heads}) for a sequence head")
            if self.sequence_num_layers < 1:
                raise ValueError(f"sequence_num_layers must be at least 1, got {self.sequence_num_layers}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not isinstance(self.audio_hidden_layers, str) and not self.audio_hidden_layers:
            raise ValueError("audio_hidden_layers must be 'last', 'all' or a non-empty list of layer indices")
        if self.decoding_rule not in DECODERS:
            raise ValueError(f"decoding_rule must be one of {DECODERS}, got {self.decoding_rule!r}")
        if not 0 < self.blend_fraction <= 1:
            raise ValueError(f"blend_fraction must be in (0, 1], got {self.blend_fraction}")
        if self.outcome_temperature <= 0:
            raise ValueError(f"outcome_temperature must be positive, got {self.outcome_temperature}")
        resolve_outcome_prior(self.outcome_prior)

    @classmethod
    def from_backbone_configs(
        cls,
        video_config: PreTrainedConfig | None = None,
        audio_config: PreTrainedConfig | None = None,
        **kwargs,
    ) -> "BlemoreConfig":
        """A config composing the given encoder configs (either may be None) with the other settings in kwargs."""
        return cls(video_config=video_config, audio_config=audio_config, **kwargs)


BlemoreConfig.register_for_auto_class()

__all__ = ["BlemoreConfig"]
