"""Configuration of HiCMAE as a BLEMORE model (Sun et al., 2024, "HiCMAE: Hierarchical Contrastive Masked
Autoencoder for Self-Supervised Audio-Visual Emotion Recognition").

Shipped as Hub remote code (flat folder, relative imports only, no ``blemore`` import).
"""

from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from .decoding_blemore import (
    BLEMORE_BLEND_FRACTION,
    DECODERS,
    EMOTIONS,
    config_decoding_parameters,
    resolve_outcome_prior,
)


@strict
class HicmaeConfig(PreTrainedConfig):
    r"""
    Configuration of [`HicmaeModel`] and [`HicmaeForBlendedEmotionRecognition`].

    HiCMAE has its own joint architecture: a video encoder over face crops (tubelet patches, as VideoMAE), an audio
    encoder over log-mel frames (2D patches, as AudioMAE), a cross-modal fusion encoder whose two streams attend to
    each other, and hierarchical feature fusion: every layer of each unimodal encoder passes through that encoder's
    final LayerNorm, is mean-pooled over tokens and combined with learned softmax layer weights; the two fusion
    streams are mean-pooled too, and the four vectors, concatenated and LayerNormed, are the fused embedding that the
    six-emotion head reads. The defaults are the base model the BLEMORE fine-tuning used
    (``avit_dim512_patch16_160_a256`` with ``--depth 10 --depth_audio 10 --fusion_depth 2``).

    Args:
        image_size (`int`, defaults to 160): side of the square face crops.
        patch_size (`int`, defaults to 16): spatial patch side of the video encoder.
        num_frames (`int`, defaults to 16): frames per clip.
        tubelet_size (`int`, defaults to 2): frames per video patch.
        num_channels (`int`, defaults to 3): colour channels.
        audio_length (`int`, defaults to 256): log-mel frames (10 ms hop) per clip.
        num_mel_bins (`int`, defaults to 128): mel bins per frame.
        audio_patch_size (`int`, defaults to 16): patch side of the audio encoder (time and frequency).
        hidden_size (`int`, defaults to 512): width of all three encoders.
        num_attention_heads (`int`, defaults to 8): heads of every attention layer.
        intermediate_size (`int`, defaults to 2048): MLP width (4 × hidden).
        num_hidden_layers (`int`, defaults to 10): layers of the video encoder.
        num_audio_hidden_layers (`int`, defaults to 10): layers of the audio encoder.
        num_fusion_layers (`int`, defaults to 2): cross-modal layers (each has a video and an audio stream).
        qv_bias (`bool`, defaults to True): query and value biases (no key bias), as in VideoMAE.
        hidden_act (`str`, defaults to "gelu"), layer_norm_eps (`float`, defaults to 1e-6).
        hidden_dropout_prob, attention_probs_dropout_prob (`float`, default 0.0): dropout in the layers.
        drop_path_rate (`float`, defaults to 0.1): stochastic depth, rising linearly over the layers of each encoder
            (the fine-tuning script's ``--drop_path``); the fusion encoder uses the same rule over its own layers.
        objective (`str`, defaults to "soft_kl"): KL divergence from the soft target to the softmax of the six
            logits, as every BLEMORE model (the same gradients as the soft-target cross-entropy the fork trained with).
        decoding_rule, presence_threshold, salience_threshold, blend_fraction, outcome_temperature, outcome_prior:
            decoding of the probabilities into challenge predictions, as in ``BlemoreConfig``.
        initializer_range (`float`, defaults to 0.02): standard deviation of new linear weights.
    """

    model_type = "hicmae"
    keys_to_ignore_at_inference = ["fused_embeds", "modality_embeds", "video_embeds", "audio_embeds"]
    emotions = EMOTIONS

    image_size: int = 160
    patch_size: int = 16
    num_frames: int = 16
    tubelet_size: int = 2
    num_channels: int = 3
    audio_length: int = 256
    num_mel_bins: int = 128
    audio_patch_size: int = 16
    hidden_size: int = 512
    num_attention_heads: int = 8
    intermediate_size: int = 2048
    num_hidden_layers: int = 10
    num_audio_hidden_layers: int = 10
    num_fusion_layers: int = 2
    qv_bias: bool = True
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-6
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    drop_path_rate: float | int = 0.1
    chunk_size_feed_forward: int = 0
    objective: Literal["soft_kl"] = "soft_kl"
    decoding_rule: Literal["thresholds", "expected_score"] = "thresholds"
    presence_threshold: float | int = 0.15
    salience_threshold: float | int = 0.2
    blend_fraction: float | int = BLEMORE_BLEND_FRACTION
    outcome_temperature: float | int = 1.0
    outcome_prior: Literal["blemore", "uniform"] | list[float] | tuple[float, ...] = "blemore"
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        if self.id2label is None:
            self.id2label = dict(enumerate(EMOTIONS))
        if self.label2id is None:
            self.label2id = {label: index for index, label in self.id2label.items()}
        super().__post_init__(**kwargs)

    @property
    def num_video_patches(self) -> int:
        return (self.num_frames // self.tubelet_size) * (self.image_size // self.patch_size) ** 2

    @property
    def num_audio_patches(self) -> int:
        return (self.audio_length // self.audio_patch_size) * (self.num_mel_bins // self.audio_patch_size)

    @property
    def decoding_parameters(self) -> dict:
        """Keyword arguments of ``decoding_blemore.decode_outcomes`` as stored in this config (its ``decoder``
        argument is the rule)."""
        return config_decoding_parameters(self)

    def validate_hicmae(self):
        """Reject settings the model cannot build or decode with."""
        labels = tuple(str(self.id2label.get(i, self.id2label.get(str(i)))) for i in range(len(self.id2label)))
        if labels != EMOTIONS:
            raise ValueError(f"id2label must map 0..5 to the six emotions {EMOTIONS}, got {len(labels)} labels; "
                             "leave id2label, label2id and num_labels unset")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                             f"({self.num_attention_heads})")
        if self.image_size % self.patch_size or self.num_frames % self.tubelet_size:
            raise ValueError(f"image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size}) "
                             f"and num_frames ({self.num_frames}) of tubelet_size ({self.tubelet_size})")
        if self.audio_length % self.audio_patch_size or self.num_mel_bins % self.audio_patch_size:
            raise ValueError(f"audio_length ({self.audio_length}) and num_mel_bins ({self.num_mel_bins}) must be "
                             f"multiples of audio_patch_size ({self.audio_patch_size})")
        if min(self.num_hidden_layers, self.num_audio_hidden_layers, self.num_fusion_layers) < 1:
            raise ValueError("HiCMAE needs at least one video, one audio and one fusion layer")
        if self.decoding_rule not in DECODERS:
            raise ValueError(f"decoding_rule must be one of {DECODERS}, got {self.decoding_rule!r}")
        resolve_outcome_prior(self.outcome_prior)


HicmaeConfig.register_for_auto_class()

__all__ = ["HicmaeConfig"]
