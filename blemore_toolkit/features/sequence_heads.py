"""Sequence heads for ``blemore heads --head attention_pool|temporal_transformer|cross_modal``.

The paper's heads see seven order-free statistics per clip. The strongest published BLEMORE entries look at the
encoders' per-window sequences instead: attention fusion over them reached 0.479 presence / 0.279 salience in
k-fold validation (MDPI MTI 2026), against 0.345 / 0.170 for the best baseline of the paper. ``blemore features``
already stores each clip's per-window sequence (``sequence``, ``num_windows``) beside the statistics; this module
reads it and trains the model's sequence heads (``modeling/sequence_heads_blemore.py``) on it.

Everything else is the heads' machinery, not a copy of it: ``cross_validation.cross_validate`` (K-fold CV, the
protocol's epoch selection, α/β per fold and pooled, ``cv/`` outputs), ``cross_validation.fit_final`` (the test fit,
with the protocol's test-fit epochs and α/β rule), ``heads.run_heads_pipeline`` (saved model, report, out-of-fold and
test probabilities, submission, push) call the functions here when given ``SEQUENCE_RECIPE`` (``head_recipe`` picks
it for a sequence head; the CLI and ``blemore predict`` use it). Training follows ``settings.training``, the protocol
(``--protocol``) with the run's overrides: ``head_training._fit`` with the soft-label KL objective and the protocol's
optimiser (Adam with L2 decay or AdamW), learning rate, weight decay, batch size, epochs, dropout and precision;
under ``epoch_selection="best_composite"`` (the paper protocol) each epoch is scored on the validation fold and the
best epoch's weights are kept, exactly as for the statistics heads. What does not apply to a sequence head: the
statistics heads' activation, initialisation, span shortcut and per-feature standardisation (the sequence heads have
their own architecture and standardise each window as below), and ``--method subsampling``. ``--hidden`` is the
window projection's width.

* Inputs: one padded ``(clips, windows, width)`` array per feature config with each clip's window count; configs
  may have different window rates (e.g. video windows of 16 frames and audio windows of 0.5 s): each keeps its own
  windows, and the model places them on one relative time axis.
* Standardisation: each input's per-window LayerNorm is set, as for the statistics heads, to standardise the
  layer-normalised windows of the training rows (``head_training.standardisation``) and frozen.
* Batches are cut to their longest clip, so padding costs nothing where clips are short.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from blemore import BlemoreError
from blemore_toolkit.features.configs import FEATURES_DIR
from blemore_toolkit.features.feature_table import FeatureTable, load_feature_table
from blemore_toolkit.features.head_training import (
    SEQUENCE_HEADS,
    STATISTICS_RECIPE,
    FittedHead,
    HeadRecipe,
    HeadSettings,
    Validation,
    _EpochSelection,
    _fit,
    clip_probabilities,
    finished_head,
    standardisation,
)

#: Windows used to fit a standardisation (a random subset beyond this: the mean and spread are stable long before).
_STANDARDISATION_WINDOWS = 50_000
#: Attention heads of the sequence heads (their width must divide ``--hidden``).
SEQUENCE_NUM_HEADS = 4


@dataclasses.dataclass
class SequenceInputs:
    """Padded per-window sequences of some clips: name → (clips, windows, width) and name → (clips,) counts."""

    sequences: dict[str, np.ndarray]
    num_windows: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.num_windows.values())))

    def __getitem__(self, index) -> SequenceInputs:
        if hasattr(index, "numpy"):  # a torch index tensor from the training loop
            index = index.numpy()
        return SequenceInputs({n: v[index] for n, v in self.sequences.items()},
                              {n: w[index] for n, w in self.num_windows.items()})

    @property
    def widths(self) -> dict[str, int]:
        return {name: int(values.shape[-1]) for name, values in self.sequences.items()}

    def model_inputs(self) -> dict:
        """``features`` and ``feature_masks`` of the model, each input cut to the longest clip of these rows."""
        import torch

        features, masks = {}, {}
        for name, values in self.sequences.items():
            counts = self.num_windows[name]
            length = max(1, int(counts.max())) if len(counts) else 1
            features[name] = torch.from_numpy(np.ascontiguousarray(values[:, :length]))
            masks[name] = torch.arange(length)[None, :] < torch.from_numpy(counts.astype(np.int64))[:, None]
        return {"features": features, "feature_masks": masks}

    def valid_windows(self, name: str) -> np.ndarray:
        """(total windows, width): every real window of the input, padding left out."""
        values, counts = self.sequences[name], self.num_windows[name]
        keep = np.arange(values.shape[1])[None, :] < counts[:, None]
        return values[keep]


@dataclasses.dataclass
class SequenceTable(FeatureTable):
    """A ``FeatureTable`` (statistics, labels, folds) with the configs' per-window sequences beside it."""

    sequences: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    num_windows: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def rows(self, mask: np.ndarray) -> SequenceTable:
        base = FeatureTable.rows(self, mask)
        return SequenceTable(**{f.name: getattr(base, f.name) for f in dataclasses.fields(FeatureTable)},
                             sequences={n: v[mask] for n, v in self.sequences.items()},
                             num_windows={n: w[mask] for n, w in self.num_windows.items()})

    def inputs(self, names: Sequence[str]) -> SequenceInputs:
        missing = [name for name in names if name not in self.sequences]
        if missing:
            raise BlemoreError(f"feature configs {missing}: no per-window sequences loaded")
        return SequenceInputs({n: self.sequences[n] for n in names}, {n: self.num_windows[n] for n in names})


def _read_sequences(dataset_dir: Path, name: str, clip_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The ``sequence`` column of a config → (clips, longest, width) float32 (zero padded) and window counts,
    in the order of ``clip_ids``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = dataset_dir / FEATURES_DIR / name
    table = pa.concat_tables([pq.read_table(f, columns=["clip_id", "sequence"])
                              for f in sorted(folder.glob("*.parquet"))])
    column = table["sequence"].combine_chunks()
    if column.null_count:
        clip = table["clip_id"][int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])]
        raise BlemoreError(f"{folder}: clip {clip} has no stored sequence; re-extract the config with "
                           "`blemore features ... --overwrite`")
    counts = np.asarray(column.value_lengths().to_numpy(zero_copy_only=False), dtype=np.int64)
    windows = column.flatten()
    width = windows.type.list_size if hasattr(windows.type, "list_size") and windows.type.list_size > 0 else None
    flat = windows.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    width = width or (flat.size // max(1, counts.sum()))
    if counts.sum() and flat.size != counts.sum() * width:
        raise BlemoreError(f"{folder}: per-window vectors of unequal width (expected {width} each)")
    flat = flat.reshape(-1, width)
    longest = max(1, int(counts.max())) if len(counts) else 1
    padded = np.zeros((len(counts), longest, width), dtype=np.float32)
    rows = np.repeat(np.arange(len(counts)), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    padded[rows, np.arange(len(rows)) - starts] = flat
    order = {clip: i for i, clip in enumerate(table["clip_id"].to_pylist())}
    position = np.array([order[clip] for clip in clip_ids], dtype=np.int64)
    return padded[position], counts[position]


def load_sequence_table(dataset_dir: str | os.PathLike, names: Sequence[str]) -> SequenceTable:
    """``feature_table.load_feature_table`` plus each config's per-window sequences, aligned by clip."""
    dataset_dir = Path(dataset_dir)
    table = load_feature_table(dataset_dir, names)
    sequences, num_windows = {}, {}
    for name in table.features:
        sequences[name], num_windows[name] = _read_sequences(dataset_dir, name, table.clip_ids)
    fields = {f.name: getattr(table, f.name) for f in dataclasses.fields(FeatureTable)}
    return SequenceTable(**fields, sequences=sequences, num_windows=num_windows)


def sequence_inputs(table: FeatureTable, group: Sequence[str]) -> SequenceInputs:
    if not isinstance(table, SequenceTable):
        raise BlemoreError("sequence heads need the per-window sequences: load the table with load_sequence_table")
    return table.inputs(group)


def sequence_head_config(settings: HeadSettings, widths: dict[str, int]):
    """The ``BlemoreConfig`` of a sequence head on inputs of these window widths."""
    from blemore_toolkit.modeling import BlemoreConfig

    return BlemoreConfig(feature_sizes=dict(widths), sequence_head=settings.head, fusion="concat",
                         fusion_hidden_size=settings.hidden, fusion_num_heads=SEQUENCE_NUM_HEADS,
                         head_hidden_sizes=[settings.hidden], dropout=settings.training.dropout)


def _set_window_standardisation(model, inputs: SequenceInputs, seed: int) -> None:
    import torch

    rng = np.random.default_rng(seed)
    for name, projection in model.blemore.sequence_encoder.projections.items():
        windows = inputs.valid_windows(name)
        if len(windows) > _STANDARDISATION_WINDOWS:
            windows = windows[rng.choice(len(windows), _STANDARDISATION_WINDOWS, replace=False)]
        weight, bias = standardisation(windows, projection.norm.eps)
        with torch.no_grad():
            projection.norm.weight.copy_(torch.from_numpy(weight))
            projection.norm.bias.copy_(torch.from_numpy(bias))
        projection.norm.requires_grad_(False)


def fit_sequence_head(train_x: SequenceInputs, train_y: np.ndarray, feature_sizes: dict[str, int] | None,
                      settings: HeadSettings, seed: int = 0, *, epochs: int | None = None,
                      validation: Validation | None = None) -> FittedHead:
    """Train a sequence head on padded sequences and (N, 6) soft targets as ``settings.training`` says.

    The counterpart of ``head_training.fit_head``: with ``validation`` (padded sequences of the validation clips) and
    ``epoch_selection="best_composite"`` every epoch is scored there and the best epoch's weights are kept, and the
    returned head carries the validation clips' probabilities and α/β search. ``epochs`` overrides the protocol's
    (the test fit's). ``feature_sizes`` (the statistics' widths) is not used: the inputs carry their window widths.
    """
    import torch

    from blemore_toolkit.modeling import BlemoreForBlendedEmotionRecognition

    training = settings.training
    if settings.method != "aggregation":
        raise BlemoreError(f"--head {settings.head} reads whole per-window sequences; --method {settings.method} "
                           "is for the statistics heads")
    if settings.hidden % SEQUENCE_NUM_HEADS:
        raise BlemoreError(f"--hidden {settings.hidden}: a sequence head needs a multiple of {SEQUENCE_NUM_HEADS}")
    epochs = training.epochs_for(settings.method) if epochs is None else epochs
    torch.manual_seed(seed)
    model = BlemoreForBlendedEmotionRecognition(sequence_head_config(settings, train_x.widths))
    _set_window_standardisation(model, train_x, seed)
    model.train()
    selection = None
    if validation is not None and training.epoch_selection == "best_composite":
        selection = _EpochSelection(model, lambda: sequence_logits(model, validation.x), validation)
    _fit(lambda batch: model(**batch.model_inputs()).logits, model.parameters(), train_x, train_y, training,
         epochs, training.batch_size_for(settings.method), seed, selection)
    if selection is not None:
        selection.restore()
    return finished_head(model, selection, epochs, validation, lambda: sequence_logits(model, validation.x))


def train_sequence_head(train_x: SequenceInputs, train_y: np.ndarray, feature_sizes: dict[str, int] | None,
                        settings: HeadSettings, seed: int = 0):
    """A sequence head trained for all of the protocol's epochs (no validation) → an eval-mode
    ``BlemoreForBlendedEmotionRecognition``."""
    return fit_sequence_head(train_x, train_y, feature_sizes, settings, seed).model


def sequence_logits(model, inputs: SequenceInputs, batch_size: int = 256) -> np.ndarray:
    """Padded sequences → (N, 6) logits (float32 inference, exactly as the saved model), as float64."""
    import torch

    outputs = []
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            batch = inputs[np.arange(start, min(start + batch_size, len(inputs)))]
            outputs.append(model(**batch.model_inputs()).logits.double().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 6))


def predict_sequence_probabilities(model, inputs: SequenceInputs, batch_size: int = 256) -> np.ndarray:
    """Padded sequences → (N, 6) emotion probabilities (float32 inference, exactly as the saved model)."""
    logits = sequence_logits(model, inputs, batch_size)
    return clip_probabilities(logits, np.arange(len(logits)), len(logits))


#: How ``cross_validate`` / ``fit_final`` / ``heads.run_heads_pipeline`` read, train and predict a sequence head.
SEQUENCE_RECIPE = HeadRecipe(load_sequence_table, sequence_inputs, fit_sequence_head, sequence_logits)


def head_recipe(head: str | None) -> HeadRecipe:
    """The recipe of any ``--head`` (None: a model on clip-level statistics): the sequence heads' or the statistics
    heads'. (It lives here, not in ``head_training``, because the heads' modules must not import this one.)"""
    return SEQUENCE_RECIPE if head in SEQUENCE_HEADS else STATISTICS_RECIPE

__all__ = [
    "SEQUENCE_RECIPE", "SequenceInputs", "SequenceTable", "fit_sequence_head", "head_recipe", "load_sequence_table",
    "predict_sequence_probabilities", "sequence_head_config", "sequence_inputs", "sequence_logits",
    "train_sequence_head",
]
