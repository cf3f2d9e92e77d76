"""HiCMAE as a BLEMORE model: video encoder over face crops, audio encoder over log-mel frames, cross-modal fusion
encoder, hierarchical feature fusion, six-emotion head.

- ``HicmaeModel``: the three encoders and the fused embedding (what ``AutoModel`` gives).
- ``HicmaeForBlendedEmotionRecognition``: adds the head, the BLEMORE soft-label objective and decoding (what
  ``AutoModelForVideoClassification`` gives), with the outputs of every BLEMORE classifier (``BlemoreOutput``).

The transformer layers are transformers' VideoMAE layers (the same pre-norm block with query/value biases as the
reference), given the stochastic depth the fine-tuning used; the patch embeddings and fixed sinusoid tables are
VideoMAE's too (a Conv2d over (time, mel) patches for audio). The cross-attention of the fusion encoder is this
file's own. ``blemore convert hicmae`` maps the original checkpoints onto these names.

Shipped as Hub remote code (flat folder, relative imports only, no ``blemore`` import).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.models.videomae.modeling_videomae import VideoMAELayer, get_sinusoid_encoding_table
from transformers.utils import ModelOutput

from .configuration_hicmae import HicmaeConfig
from .decoding_blemore import OUTCOME_TARGETS, decode_outcomes, outcomes_to_predictions, softmax
from .modeling_blemore import BlemoreOutput

BASE_AUTO_CLASS = "AutoModel"
VIDEO_AUTO_CLASS = "AutoModelForVideoClassification"


@dataclass
class HicmaeModelOutput(ModelOutput):
    r"""
    Embeddings of a HiCMAE model.

    Args:
        fused_embeds (`torch.FloatTensor` of shape `(batch_size, 4 * hidden_size)`):
            The LayerNormed concatenation of the four vectors below, which the head classifies.
        modality_embeds (`torch.FloatTensor` of shape `(batch_size, 4, hidden_size)`):
            The four vectors before that LayerNorm: video and audio (layer-weighted unimodal features), then the
            video and audio streams of the fusion encoder (mean-pooled).
        video_embeds, audio_embeds (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
            The unimodal features: every encoder layer, final-normed and mean-pooled, combined by the learned
            softmax layer weights.
        video_hidden_states, audio_hidden_states (`torch.FloatTensor` of shape `(batch_size, layers, tokens,
            hidden_size)`, *optional*): every layer's output through the encoder's final LayerNorm
            (with `output_hidden_states=True`).
        fusion_video_states, fusion_audio_states (`torch.FloatTensor` of shape `(batch_size, tokens, hidden_size)`,
            *optional*): the fusion encoder's normed outputs (with `output_hidden_states=True`).
    """

    fused_embeds: torch.FloatTensor | None = None
    modality_embeds: torch.FloatTensor | None = None
    video_embeds: torch.FloatTensor | None = None
    audio_embeds: torch.FloatTensor | None = None
    video_hidden_states: torch.FloatTensor | None = None
    audio_hidden_states: torch.FloatTensor | None = None
    fusion_video_states: torch.FloatTensor | None = None
    fusion_audio_states: torch.FloatTensor | None = None


def drop_path(hidden: torch.Tensor, probability: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero a residual branch for whole samples, scaling the kept ones by 1 / (1 - p)."""
    if probability == 0.0 or not training:
        return hidden
    keep = 1.0 - probability
    mask = hidden.new_empty((hidden.shape[0],) + (1,) * (hidden.dim() - 1)).bernoulli_(keep)
    return hidden * mask / keep


class HicmaeLayer(VideoMAELayer):
    """VideoMAE's pre-norm transformer layer with stochastic depth on both residual branches."""

    def __init__(self, config: HicmaeConfig, drop_path_rate: float = 0.0):
        super().__init__(config)
        self.drop_path_rate = float(drop_path_rate)

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> torch.Tensor:
        attention_output = self.attention(self.layernorm_before(hidden_states), **kwargs)
        hidden_states = hidden_states + drop_path(attention_output, self.drop_path_rate, self.training)
        mlp_output = self.output.dropout(self.output.dense(self.intermediate(self.layernorm_after(hidden_states))))
        return hidden_states + drop_path(mlp_output, self.drop_path_rate, self.training)


class HicmaeVideoEmbeddings(nn.Module):
    """Tubelet patches (Conv3d) plus the fixed sinusoid table, as VideoMAE embeds a video."""

    def __init__(self, config: HicmaeConfig):
        super().__init__()
        patch = (config.tubelet_size, config.patch_size, config.patch_size)
        self.projection = nn.Conv3d(config.num_channels, config.hidden_size, kernel_size=patch, stride=patch)
        self.position_embeddings = get_sinusoid_encoding_table(config.num_video_patches, config.hidden_size)
        self.expected = (config.num_frames, config.num_channels, config.image_size, config.image_size)

    def forward(self, pixel_values_videos: torch.Tensor) -> torch.Tensor:
        if tuple(pixel_values_videos.shape[1:]) != self.expected:
            raise ValueError(f"pixel_values_videos has shape {tuple(pixel_values_videos.shape)}; this model takes "
                             f"(batch, {', '.join(map(str, self.expected))})")
        tokens = self.projection(pixel_values_videos.permute(0, 2, 1, 3, 4)).flatten(2).transpose(1, 2)
        return tokens + self.position_embeddings.detach().to(device=tokens.device, dtype=tokens.dtype, copy=True)


class HicmaeAudioEmbeddings(nn.Module):
    """(time, mel) patches of a log-mel spectrogram (Conv2d, time-major token order) plus the sinusoid table."""

    def __init__(self, config: HicmaeConfig):
        super().__init__()
        patch = config.audio_patch_size
        self.projection = nn.Conv2d(1, config.hidden_size, kernel_size=patch, stride=patch)
        self.position_embeddings = get_sinusoid_encoding_table(config.num_audio_patches, config.hidden_size)
        self.expected = (config.audio_length, config.num_mel_bins)

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        if tuple(input_features.shape[1:]) != self.expected:
            raise ValueError(f"input_features has shape {tuple(input_features.shape)}; this model takes "
                             f"(batch, {', '.join(map(str, self.expected))}) log-mel frames")
        tokens = self.projection(input_features.unsqueeze(1)).flatten(2).transpose(1, 2)
        return tokens + self.position_embeddings.detach().to(device=tokens.device, dtype=tokens.dtype, copy=True)


class HicmaeCrossAttention(nn.Module):
    """Multi-head attention of one stream's tokens (queries) over the other stream's tokens (keys, values)."""

    def __init__(self, config: HicmaeConfig):
        super().__init__()
        size = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.dropout = config.attention_probs_dropout_prob
        self.query = nn.Linear(size, size, bias=config.qv_bias)
        self.key = nn.Linear(size, size, bias=False)
        self.value = nn.Linear(size, size, bias=config.qv_bias)
        self.output = nn.Linear(size, size)
        self.output_dropout = nn.Dropout(config.hidden_dropout_prob)

    def _heads(self, hidden: torch.Tensor) -> torch.Tensor:
        batch, length, width = hidden.shape
        return hidden.view(batch, length, self.num_heads, width // self.num_heads).transpose(1, 2)

    def forward(self, hidden: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        attended = F.scaled_dot_product_attention(
            self._heads(self.query(hidden)), self._heads(self.key(context)), self._heads(self.value(context)),
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.output_dropout(self.output(attended.transpose(1, 2).flatten(2)))


class HicmaeFusionLayer(nn.Module):
    """Cross-attention to the other modality (pre-norm on both sides, residual), then a transformer layer."""

    def __init__(self, config: HicmaeConfig, drop_path_rate: float = 0.0):
        super().__init__()
        self.cross_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.cross_context_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.cross_attention = HicmaeCrossAttention(config)
        self.layer = HicmaeLayer(config, drop_path_rate)
        self.drop_path_rate = float(drop_path_rate)

    def forward(self, hidden: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        attended = self.cross_attention(self.cross_layernorm(hidden), self.cross_context_layernorm(context))
        return self.layer(hidden + drop_path(attended, self.drop_path_rate, self.training))


def _stochastic_depths(rate: float, depth: int) -> list[float]:
    return [float(value) for value in torch.linspace(0, float(rate), depth)]


class HicmaePreTrainedModel(PreTrainedModel):
    config_class = HicmaeConfig
    base_model_prefix = "hicmae"
    main_input_name = "pixel_values_videos"
    input_modalities = ("video", "audio")
    supports_gradient_checkpointing = True
    _no_split_modules = ["HicmaeLayer", "HicmaeFusionLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True

    def __init__(self, config: HicmaeConfig, *inputs, **kwargs):
        config.validate_hicmae()
        super().__init__(config, *inputs, **kwargs)

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, HicmaeModel):
            init.constant_(module.video_layer_weights, 1.0 / self.config.num_hidden_layers)
            init.constant_(module.audio_layer_weights, 1.0 / self.config.num_audio_hidden_layers)
        elif isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv3d)):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save as usual, with the Auto classes, the processor and the pipeline named for remote code."""
        if self._auto_class is not None:
            from .pipeline_hicmae import custom_pipelines_entry

            module = type(self).__module__.rsplit(".", 1)[-1]
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            auto_map.setdefault("AutoConfig", f"configuration_hicmae.{type(self.config).__name__}")
            auto_map[BASE_AUTO_CLASS] = f"{module}.HicmaeModel"
            auto_map[VIDEO_AUTO_CLASS] = f"{module}.HicmaeForBlendedEmotionRecognition"
            auto_map["AutoProcessor"] = "processing_hicmae.HicmaeProcessor"
            self.config.auto_map = auto_map
            self.config.custom_pipelines = custom_pipelines_entry()
        return super().save_pretrained(save_directory, *args, **kwargs)


class HicmaeModel(HicmaePreTrainedModel):
    """The video, audio and fusion encoders and the fused embedding: returns [`HicmaeModelOutput`]."""

    def __init__(self, config: HicmaeConfig):
        super().__init__(config)
        eps = config.layer_norm_eps
        self.video_embeddings = HicmaeVideoEmbeddings(config)
        self.video_layers = nn.ModuleList(
            HicmaeLayer(config, rate) for rate in _stochastic_depths(config.drop_path_rate, config.num_hidden_layers)
        )
        self.video_layernorm = nn.LayerNorm(config.hidden_size, eps=eps)
        self.audio_embeddings = HicmaeAudioEmbeddings(config)
        self.audio_layers = nn.ModuleList(
            HicmaeLayer(config, rate)
            for rate in _stochastic_depths(config.drop_path_rate, config.num_audio_hidden_layers)
        )
        self.audio_layernorm = nn.LayerNorm(config.hidden_size, eps=eps)
        fusion_rates = _stochastic_depths(config.drop_path_rate, config.num_fusion_layers)
        self.fusion_video_layers = nn.ModuleList(HicmaeFusionLayer(config, rate) for rate in fusion_rates)
        self.fusion_audio_layers = nn.ModuleList(HicmaeFusionLayer(config, rate) for rate in fusion_rates)
        self.fusion_video_layernorm = nn.LayerNorm(config.hidden_size, eps=eps)
        self.fusion_audio_layernorm = nn.LayerNorm(config.hidden_size, eps=eps)
        self.video_layer_weights = nn.Parameter(
            torch.full((config.num_hidden_layers,), 1.0 / config.num_hidden_layers)
        )
        self.audio_layer_weights = nn.Parameter(
            torch.full((config.num_audio_hidden_layers,), 1.0 / config.num_audio_hidden_layers)
        )
        self.embedding_layernorm = nn.LayerNorm(4 * config.hidden_size, eps=eps)
        self.post_init()

    @staticmethod
    def _encode(embeddings: torch.Tensor, layers: nn.ModuleList, norm: nn.LayerNorm) -> torch.Tensor:
        """Every layer's output through the encoder's final norm: (batch, layers, tokens, hidden)."""
        hidden, outputs = embeddings, []
        for layer in layers:
            hidden = layer(hidden)
            outputs.append(hidden)
        return norm(torch.stack(outputs, dim=1))

    @staticmethod
    def _layer_weighted(states: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return torch.einsum("blc,l->bc", states.mean(dim=2), weights.softmax(dim=0).to(states.dtype))

    def forward(
        self,
        pixel_values_videos: torch.FloatTensor | None = None,
        input_features: torch.FloatTensor | None = None,
        output_hidden_states: bool = False,
        return_dict: bool | None = None,
    ) -> HicmaeModelOutput | tuple:
        r"""
        Args:
            pixel_values_videos (`torch.FloatTensor` of shape `(batch_size, num_frames, 3, image_size, image_size)`):
                Face crops, normalised as `HicmaeProcessor` does (ImageNet mean and std).
            input_features (`torch.FloatTensor` of shape `(batch_size, audio_length, num_mel_bins)`):
                Normalised log-mel frames from `HicmaeProcessor`.
            output_hidden_states (`bool`): also return every encoder layer's normed output and the fusion streams.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if pixel_values_videos is None or input_features is None:
            raise ValueError("HiCMAE needs both `pixel_values_videos` (face crops) and `input_features` (log-mel)")
        video_states = self._encode(self.video_embeddings(pixel_values_videos), self.video_layers,
                                    self.video_layernorm)
        audio_states = self._encode(self.audio_embeddings(input_features), self.audio_layers, self.audio_layernorm)
        video_embeds = self._layer_weighted(video_states, self.video_layer_weights)
        audio_embeds = self._layer_weighted(audio_states, self.audio_layer_weights)

        video, audio = video_states[:, -1], audio_states[:, -1]
        for video_layer, audio_layer in zip(self.fusion_video_layers, self.fusion_audio_layers):
            video, audio = video_layer(video, audio), audio_layer(audio, video)  # both read the previous layer
        video, audio = self.fusion_video_layernorm(video), self.fusion_audio_layernorm(audio)

        modality_embeds = torch.stack([video_embeds, audio_embeds, video.mean(dim=1), audio.mean(dim=1)], dim=1)
        fused_embeds = self.embedding_layernorm(modality_embeds.flatten(1))
        output = HicmaeModelOutput(
            fused_embeds=fused_embeds,
            modality_embeds=modality_embeds,
            video_embeds=video_embeds,
            audio_embeds=audio_embeds,
            video_hidden_states=video_states if output_hidden_states else None,
            audio_hidden_states=audio_states if output_hidden_states else None,
            fusion_video_states=video if output_hidden_states else None,
            fusion_audio_states=audio if output_hidden_states else None,
        )
        return output if return_dict else output.to_tuple()


_OUTCOME_TARGETS = torch.tensor(OUTCOME_TARGETS.tolist())


class HicmaeForBlendedEmotionRecognition(HicmaePreTrainedModel):
    """HiCMAE with the six-emotion head, the BLEMORE soft-label objective and decoding."""

    # The loss is a mean over the batch computed here; the Trainer must not rescale it.
    accepts_loss_kwargs = False

    def __init__(self, config: HicmaeConfig):
        super().__init__(config)
        self.hicmae = HicmaeModel(config)
        self.head = nn.Linear(4 * config.hidden_size, len(config.emotions))
        self.post_init()

    def forward(
        self,
        pixel_values_videos: torch.FloatTensor | None = None,
        input_features: torch.FloatTensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> BlemoreOutput | tuple:
        r"""
        Args:
            pixel_values_videos, input_features: as in [`HicmaeModel.forward`]; or with a views axis after the
                batch, `(batch, views, ...)` (what `HicmaeProcessor(num_segments=K)` gives), and the logits and
                embeddings are the mean over the views, as the fork's test averages its segments.
            labels (`torch.FloatTensor` of shape `(batch_size, 6)` or `torch.LongTensor` of shape `(batch_size,)`):
                the soft target (saliences as proportions in `EMOTIONS` order) or the outcome index (0-35).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        views = None
        if pixel_values_videos is not None and pixel_values_videos.dim() == 6:  # (batch, views, frames, C, H, W)
            views = pixel_values_videos.shape[1]
            pixel_values_videos = pixel_values_videos.flatten(0, 1)
            input_features = input_features.flatten(0, 1) if input_features is not None else None
        base = self.hicmae(pixel_values_videos=pixel_values_videos, input_features=input_features, return_dict=True)
        logits = self.head(base.fused_embeds)
        embeds = {key: base[key] for key in ("fused_embeds", "modality_embeds", "video_embeds", "audio_embeds")}
        if views is not None:  # the fork's test: the mean of each view's outputs
            logits = logits.unflatten(0, (-1, views)).mean(dim=1)
            embeds = {key: value.unflatten(0, (-1, views)).mean(dim=1) for key, value in embeds.items()}
        loss = self.compute_loss(logits, labels) if labels is not None else None
        output = BlemoreOutput(loss=loss, logits=logits, **embeds)
        return output if return_dict else output.to_tuple()

    @staticmethod
    def compute_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """KL divergence from the soft target to the softmax of the logits, a mean over the batch."""
        if labels.is_floating_point():
            soft_targets = labels.to(logits.dtype)
        else:
            soft_targets = _OUTCOME_TARGETS.to(dtype=logits.dtype, device=logits.device)[labels.long()]
        return F.kl_div(logits.log_softmax(-1), soft_targets, reduction="batchmean")

    def decode_outcomes(self, outputs=None, *, logits=None, outcome_logits=None):
        """Outcome indices (numpy, one per clip) with the config's decoding rule and parameters."""
        if outputs is not None:
            logits = outputs["logits"]
        if isinstance(logits, torch.Tensor):
            logits = logits.detach().float().cpu().numpy()
        return decode_outcomes(softmax(logits), **self.config.decoding_parameters)

    def decode(self, outputs=None, *, logits=None, outcome_logits=None) -> list[list[dict]]:
        """Challenge predictions `[{"emotion", "salience"}]` per clip."""
        return outcomes_to_predictions(self.decode_outcomes(outputs, logits=logits))


HicmaeModel.register_for_auto_class(BASE_AUTO_CLASS)
HicmaeForBlendedEmotionRecognition.register_for_auto_class(VIDEO_AUTO_CLASS)

__all__ = ["HicmaeForBlendedEmotionRecognition", "HicmaeModel", "HicmaeModelOutput", "HicmaePreTrainedModel"]
