"""The BLEMORE layers between the encoders and the head: per-modality normalisation and projection, learned
weights over audio layers, and the gated and cross-attention fusions.

Shipped as Hub remote code beside ``modeling_blemore.py`` (flat folder, relative imports only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_blemore import BlemoreConfig


class BlemoreFeatureAffine(nn.Module):
    """Elementwise ``x · weight + bias`` (no per-vector normalisation): holds a per-feature standardisation."""

    def __init__(self, size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.bias = nn.Parameter(torch.zeros(size))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden * self.weight + self.bias


class BlemoreProjection(nn.Module):
    """Normalise a modality's pooled vector and map it to the shared fusion width."""

    def __init__(self, input_size: int, output_size: int, dropout: float, activation: str = "gelu",
                 normalization: str = "layer_norm"):
        super().__init__()
        self.norm = nn.LayerNorm(input_size) if normalization == "layer_norm" else BlemoreFeatureAffine(input_size)
        self.linear = nn.Linear(input_size, output_size)
        self.activation = nn.ReLU() if activation == "relu" else nn.GELU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.activation(self.linear(self.norm(hidden))))


class BlemoreLayerWeights(nn.Module):
    """Learned softmax weights over selected hidden layers of the audio encoder (starting equal)."""

    def __init__(self, num_layers: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_layers))

    def forward(self, layers: torch.Tensor) -> torch.Tensor:
        # layers: (num_layers, batch, frames, hidden)
        return torch.einsum("l,lbth->bth", self.logits.softmax(dim=0), layers)


class BlemoreGatedFusion(nn.Module):
    """A per-dimension softmax gate over modalities, computed from all of them: the model learns which modality
    to trust for each feature and can lean on audio where the face is uninformative and vice versa."""

    def __init__(self, num_modalities: int, hidden_size: int, dropout: float):
        super().__init__()
        self.num_modalities, self.hidden_size = num_modalities, hidden_size
        self.dropout = nn.Dropout(dropout)
        self.gate = nn.Linear(num_modalities * hidden_size, num_modalities * hidden_size)

    def forward(self, modality_embeds: torch.Tensor, tokens, masks) -> torch.Tensor:
        batch_size = modality_embeds.shape[0]
        gates = self.gate(self.dropout(modality_embeds.flatten(1)))
        gates = gates.view(batch_size, self.num_modalities, self.hidden_size).softmax(dim=1)
        return (gates * modality_embeds).sum(dim=1)


class BlemoreCrossAttentionFusion(nn.Module):
    """Each modality's pooled vector queries the token sequences of the other modalities (its own when alone),
    so a modality can pick out the moments of the other that matter (e.g. a laugh for a smile)."""

    def __init__(self, config: BlemoreConfig, token_sizes: dict[str, int]):
        super().__init__()
        hidden_size = config.fusion_hidden_size
        self.num_heads, self.dropout_p = config.fusion_num_heads, config.dropout
        self.token_projections = nn.ModuleDict(
            {name: nn.Linear(size, hidden_size) for name, size in token_sizes.items()}
        )
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.output = nn.Linear(hidden_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        self.names = list(token_sizes)

    def _heads(self, hidden: torch.Tensor) -> torch.Tensor:
        batch_size, length, width = hidden.shape
        return hidden.view(batch_size, length, self.num_heads, width // self.num_heads).transpose(1, 2)

    def forward(self, modality_embeds: torch.Tensor, tokens: dict, masks: dict) -> torch.Tensor:
        memories = {name: self.token_projections[name](tokens[name]) for name in self.names}
        fused = []
        for index, name in enumerate(self.names):
            others = [other for other in self.names if other != name] or [name]
            memory = torch.cat([memories[other] for other in others], dim=1)
            valid = torch.cat([masks[other] for other in others], dim=1)  # (batch, keys), True = attend
            query = modality_embeds[:, index : index + 1]
            attended = F.scaled_dot_product_attention(
                self._heads(self.query(query)),
                self._heads(self.key(memory)),
                self._heads(self.value(memory)),
                attn_mask=valid[:, None, None, :],
                dropout_p=self.dropout_p if self.training else 0.0,
            )
            attended = self.output(attended.transpose(1, 2).flatten(2))
            fused.append(self.norm(query + self.dropout(attended)).squeeze(1))
        return torch.cat(fused, dim=-1)


__all__ = [
    "BlemoreCrossAttentionFusion",
    "BlemoreFeatureAffine",
    "BlemoreGatedFusion",
    "BlemoreLayerWeights",
    "BlemoreProjection",
]
