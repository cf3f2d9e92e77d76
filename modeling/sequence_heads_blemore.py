"""Sequence heads of BLEMORE models: per-window feature sequences of each modality → one vector per modality.

The paper's heads see seven order-free statistics per clip. A sequence head sees the windows themselves (the
``sequence`` column that ``blemore features`` stores beside the statistics) and can use their order and their
interplay across modalities. Every head here has the same frame:

1. each window vector is normalised and projected to ``fusion_hidden_size`` (``BlemoreWindowProjection``) and gets
   its position added (``BlemoreWindowPositions``: where the window sits in its clip as a fraction of the clip's
   valid windows, so two modalities with different window rates share one time axis and no maximum length is
   built in);
2. a mixer relates the windows (``config.sequence_head``):

   * ``"attention_pool"``: a per-window MLP only (content × position), then attention pooling;
   * ``"temporal_transformer"``: ``sequence_num_layers`` transformer encoder layers over the windows, padded
     windows masked out;
   * ``"cross_modal"``: ``sequence_num_layers`` blocks in which each modality's windows attend over the other
     modalities' windows (over their own when there is one modality);

3. multi-head attention pooling over the valid windows (``BlemoreAttentionPooling``) gives one vector per modality,
   and the vectors are concatenated for the classification head.

Padded windows never influence a valid one: attention masks exclude them, and pooling gives them zero weight.

``BlemoreSequenceProcessor`` says what such a model takes and pads clips into it: ``features`` (name → (batch,
windows, width)) and ``feature_masks`` (name → (batch, windows)). A saved sequence model carries its
``processor_config.json``, so ``AutoProcessor.from_pretrained(folder, trust_remote_code=True)`` gives it.

Shipped as Hub remote code beside ``modeling_blemore.py`` (flat folder, relative imports only, no ``blemore``
import).
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import torch
from torch import nn

SEQUENCE_HEADS: tuple[str, ...] = ("attention_pool", "temporal_transformer", "cross_modal")


class BlemoreWindowProjection(nn.Module):
    """Normalise each window vector and map it to the shared width (as the clip-level projection does)."""

    def __init__(self, input_size: int, output_size: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(input_size)
        self.linear = nn.Linear(input_size, output_size)
        self.activation = nn.GELU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.activation(self.linear(self.norm(windows))))


class BlemoreWindowPositions(nn.Module):
    """Each window's place in its clip, ``(index + 0.5) / valid windows`` in (0, 1), as sines → a learned vector.

    Relative rather than absolute positions: a video encoder's windows and an audio encoder's half-second windows of
    the same moment get the same position, and clips of any length are handled alike.
    """

    def __init__(self, hidden_size: int, num_frequencies: int = 8):
        super().__init__()
        self.num_frequencies = num_frequencies
        self.linear = nn.Linear(2 * num_frequencies, hidden_size)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(dim=1, keepdim=True).clamp(min=1).to(self.linear.weight.dtype)
        index = torch.arange(mask.shape[1], device=mask.device, dtype=lengths.dtype)[None, :]
        fraction = (index + 0.5) / lengths  # (batch, windows)
        # Frequencies π·2^k (not a buffer: loading initialises buffers lazily, and these are constants).
        frequencies = math.pi * 2.0 ** torch.arange(self.num_frequencies, device=mask.device, dtype=lengths.dtype)
        angles = fraction[..., None] * frequencies
        return self.linear(torch.cat([angles.sin(), angles.cos()], dim=-1))


class BlemoreAttentionPooling(nn.Module):
    """Multi-head attention pooling: each head scores the windows and averages its share of the channels with the
    softmax of its scores over the valid windows."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.score = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.Tanh(), nn.Linear(hidden_size, num_heads))

    def forward(self, windows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch_size, length, width = windows.shape
        scores = self.score(windows).float()  # (batch, windows, heads)
        scores = scores.masked_fill(~mask[..., None], torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=1).to(windows.dtype)
        heads = windows.view(batch_size, length, self.num_heads, width // self.num_heads)
        return torch.einsum("bth,bthd->bhd", weights, heads).reshape(batch_size, width)


class BlemoreCrossModalBlock(nn.Module):
    """One modality's windows attend over the windows of the other modalities (a pre-norm transformer block whose
    keys and values come from elsewhere), so a moment of the face can pick out the matching moment of the voice."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float):
        super().__init__()
        self.query_norm = nn.LayerNorm(hidden_size)
        self.memory_norm = nn.LayerNorm(hidden_size)
        self.attention = nn.MultiheadAttention(hidden_size, num_heads, dropout=dropout, batch_first=True)
        self.feed_forward_norm = nn.LayerNorm(hidden_size)
        self.feed_forward = nn.Sequential(
            nn.Linear(hidden_size, 2 * hidden_size), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(2 * hidden_size, hidden_size),
        )  # fmt: skip
        self.dropout = nn.Dropout(dropout)

    def forward(self, windows: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        attended, _ = self.attention(
            self.query_norm(windows), self.memory_norm(memory), self.memory_norm(memory),
            key_padding_mask=~memory_mask, need_weights=False,
        )  # fmt: skip
        windows = windows + self.dropout(attended)
        return windows + self.dropout(self.feed_forward(self.feed_forward_norm(windows)))


def _transformer(hidden_size: int, num_heads: int, num_layers: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        hidden_size, num_heads, dim_feedforward=2 * hidden_size, dropout=dropout, activation="gelu",
        batch_first=True, norm_first=True,
    )  # fmt: skip
    return nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)


class BlemoreSequenceEncoder(nn.Module):
    """Per-window sequences of every feature input → ``(batch, num_inputs * fusion_hidden_size)`` (see the module
    docstring); ``output_size`` is that width."""

    def __init__(self, config):
        super().__init__()
        if config.sequence_head not in SEQUENCE_HEADS:
            raise ValueError(f"sequence_head must be one of {SEQUENCE_HEADS}, got {config.sequence_head!r}")
        hidden, heads, dropout = config.fusion_hidden_size, config.fusion_num_heads, config.dropout
        self.head_kind, self.names = config.sequence_head, list(config.feature_sizes)
        self.projections = nn.ModuleDict(
            {name: BlemoreWindowProjection(int(size), hidden, dropout) for name, size in config.feature_sizes.items()}
        )
        self.positions = nn.ModuleDict({name: BlemoreWindowPositions(hidden) for name in self.names})
        layers = config.sequence_num_layers
        if self.head_kind == "attention_pool":
            mixers = {
                name: nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout)) for name in self.names
            }
        elif self.head_kind == "temporal_transformer":
            mixers = {name: _transformer(hidden, heads, layers, dropout) for name in self.names}
        else:
            mixers = {
                name: nn.ModuleList([BlemoreCrossModalBlock(hidden, heads, dropout) for _ in range(layers)])
                for name in self.names
            }
        self.mixers = nn.ModuleDict(mixers)
        self.norms = nn.ModuleDict({name: nn.LayerNorm(hidden) for name in self.names})
        self.pools = nn.ModuleDict({name: BlemoreAttentionPooling(hidden, heads) for name in self.names})
        self.output_size = len(self.names) * hidden

    def forward(self, sequences: dict, masks: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """``sequences``: name → (batch, windows, size); ``masks``: name → (batch, windows) bool, True = a real
        window. Returns the concatenated pooled vectors and the per-input vectors (batch, inputs, hidden)."""
        # A clip without a window of some input would leave attention nothing to attend to: its first (zero) window
        # then counts as valid, which gives a defined, input-independent vector instead of NaN.
        masks = {name: masks[name].bool() for name in self.names}
        masks = {name: mask | ((torch.arange(mask.shape[1], device=mask.device) == 0) & ~mask.any(1, keepdim=True))
                 for name, mask in masks.items()}
        windows = {}
        for name in self.names:
            values = sequences[name].to(self.projections[name].linear.weight.dtype)
            windows[name] = self.projections[name](values) + self.positions[name](masks[name])
        if self.head_kind == "attention_pool":
            windows = {name: self.mixers[name](windows[name]) for name in self.names}
        elif self.head_kind == "temporal_transformer":
            windows = {
                name: self.mixers[name](windows[name], src_key_padding_mask=~masks[name]) for name in self.names
            }
        else:
            for depth in range(len(self.mixers[self.names[0]])):
                updated = {}
                for name in self.names:
                    others = [other for other in self.names if other != name] or [name]
                    memory = torch.cat([windows[other] for other in others], dim=1)
                    memory_mask = torch.cat([masks[other] for other in others], dim=1)
                    updated[name] = self.mixers[name][depth](windows[name], memory, memory_mask)
                windows = updated
        pooled = [self.pools[name](self.norms[name](windows[name]), masks[name]) for name in self.names]
        modality_embeds = torch.stack(pooled, dim=1)
        return modality_embeds.flatten(1), modality_embeds


PROCESSOR_CONFIG_NAME = "processor_config.json"


class BlemoreSequenceProcessor:
    """Per-clip window sequences → the padded ``features`` and ``feature_masks`` of a sequence-head model.

    Args:
        feature_sizes (`dict[str, int]`): the model's inputs and their window widths (``config.feature_sizes``).

    Call it with a list of clips, each a dict name → ``(windows, width)`` array (e.g. the ``sequence`` column of
    each features config for that clip), or with a dict name → list of such arrays.
    """

    def __init__(self, feature_sizes: dict[str, int]):
        self.feature_sizes = {name: int(feature_sizes[name]) for name in sorted(feature_sizes)}

    @classmethod
    def from_config(cls, config) -> BlemoreSequenceProcessor:
        return cls(dict(config.feature_sizes))

    def __call__(self, clips, return_tensors: str = "pt") -> dict:
        if return_tensors != "pt":
            raise ValueError("BlemoreSequenceProcessor returns torch tensors only (return_tensors='pt')")
        if isinstance(clips, dict):
            counts = {len(values) for values in clips.values()}
            if len(counts) != 1:
                raise ValueError(f"every input needs one sequence per clip, got counts {sorted(counts)}")
            clips = [{name: clips[name][i] for name in clips} for i in range(counts.pop())]
        features, masks = {}, {}
        for name, width in self.feature_sizes.items():
            sequences = []
            for index, clip in enumerate(clips):
                if name not in clip:
                    raise ValueError(f"clip {index} has no sequence for the model's input {name!r}")
                values = np.asarray(clip[name], dtype=np.float32)
                values = values.reshape(0, width) if values.size == 0 else values
                if values.ndim != 2 or values.shape[1] != width:
                    raise ValueError(f"clip {index}: input {name!r} has shape {values.shape}; expected (windows, "
                                     f"{width})")
                sequences.append(values)
            length = max([1] + [len(values) for values in sequences])
            padded = np.zeros((len(sequences), length, width), dtype=np.float32)
            valid = np.zeros((len(sequences), length), dtype=bool)
            for row, values in enumerate(sequences):
                padded[row, : len(values)], valid[row, : len(values)] = values, True
            features[name], masks[name] = torch.from_numpy(padded), torch.from_numpy(valid)
        return {"features": features, "feature_masks": masks}

    def to_dict(self) -> dict:
        return {
            "processor_class": type(self).__name__,
            "feature_sizes": self.feature_sizes,
            "auto_map": {"AutoProcessor": f"{__name__.rsplit('.', 1)[-1]}.{type(self).__name__}"},
        }

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> list[str]:
        """Write ``processor_config.json`` (the code ships with the model, which imports this file)."""
        os.makedirs(save_directory, exist_ok=True)
        path = os.path.join(save_directory, PROCESSOR_CONFIG_NAME)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)
            f.write("\n")
        return [path]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> BlemoreSequenceProcessor:
        from transformers.utils import cached_file

        hub_kwargs = {key: kwargs[key] for key in ("cache_dir", "force_download", "local_files_only", "token",
                                                   "revision", "subfolder") if key in kwargs}
        path = cached_file(pretrained_model_name_or_path, PROCESSOR_CONFIG_NAME, **hub_kwargs)
        with open(path, encoding="utf-8") as f:
            return cls(json.load(f)["feature_sizes"])

    @classmethod
    def register_for_auto_class(cls, auto_class: str = "AutoProcessor") -> None:
        """Called by ``AutoProcessor`` on remote code; the ``auto_map`` is written by ``to_dict`` already."""
        cls._auto_class = auto_class

    def __repr__(self) -> str:
        return f"{type(self).__name__}(feature_sizes={self.feature_sizes})"


__all__ = [
    "SEQUENCE_HEADS",
    "BlemoreSequenceProcessor",
    "BlemoreAttentionPooling",
    "BlemoreCrossModalBlock",
    "BlemoreSequenceEncoder",
    "BlemoreWindowPositions",
    "BlemoreWindowProjection",
]
