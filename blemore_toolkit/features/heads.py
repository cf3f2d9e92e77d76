"""``blemore heads FEATURE_CONFIG... --dataset DATASET --head mlp512 --protocol paper|toolkit``: heads on features.

The organisers' baseline experiment in one command: per-clip feature vectors (``blemore features``), one or more
encoders early-fused by concatenation (or late-fused by averaging the heads' probabilities), standardisation
fitted on the training folds only, the soft-label KL objective, 5-fold cross-validation over the actor-disjoint
folds with the presence/salience thresholds α/β searched on each validation fold (``tuning.tune_thresholds``), a
mean ± std table, and the test fit on all five training folds.

**Protocols** (``--protocol``, defined side by side in ``protocols.py``): ``paper`` is the organisers' protocol point
by point (Adam with L2 decay, lr 5e-6, batch 32, 200 epochs, ReLU, no dropout, torch's default init, per-feature
standardisation, every epoch evaluated and the best epoch by composite score kept per fold, their 20 × 20 α/β grid
with ties to the lowest α then β, a 100-epoch test fit decoded with the best fold's α/β); ``toolkit`` (the
default) trains faster and selects nothing on the validation fold (docs/recipes.md says how and why).

**Methods** (``--method``): ``aggregation`` trains on each clip's seven statistics; ``subsampling`` (clip encoders)
trains on every stored window vector of a clip as its own example with the clip's soft target, standardised over
the training windows, and predicts a clip from its windows' logits averaged before the softmax.

Heads (``--head``):

* ``linear``, ``mlp256``, ``mlp512`` — the paper's: a linear map, or one hidden layer of 256/512 units (the
  protocol's activation), on the concatenated, standardised features (configs concatenated in alphabetical order);
* ``concat``, ``gated``, ``cross_attention`` — the model's fusion heads with one feature input per feature config
  (each projected to ``--hidden`` units, then fused; see ``blemore_toolkit.modeling.BlemoreConfig.fusion``);
* ``attention_pool``, ``temporal_transformer``, ``cross_modal`` — sequence heads on the stored per-window sequences
  rather than the statistics (``features/sequence_heads.py``; aggregation method only). They plug into the CV,
  α/β tuning, test fit, saving and submission here through a ``HeadRecipe`` (``sequence_heads.head_recipe(head)``
  gives the recipe of any head) and are trained as the protocol says: its optimiser, learning rate, weight decay,
  batch size, epochs, dropout, precision, epoch selection, grid and test-fit rules; their standardisation is the
  per-window one of ``sequence_heads``.

**The saved head is a ``BlemoreForBlendedEmotionRecognition``**: it loads with
``AutoModelForVideoClassification.from_pretrained(folder, trust_remote_code=True)`` (the classifier's task class),
takes the raw feature vectors as ``features`` and pushes with ``--push-to-hub`` like any other BLEMORE model, and it
predicts exactly what was validated. The paper's heads fit the model's feature path (norm → Linear → activation per
input, then fusion and head):

* *standardisation* lives in the input's norm layer, frozen: under the paper protocol an elementwise affine map
  (``feature_normalization="affine"``) with weight 1/σ and bias −μ/σ of the training rows, i.e. per-feature
  standardisation and nothing else; under the toolkit protocol a LayerNorm (each clip's vector normalised across
  its own features) whose affine weights then standardise per feature;
* *linear*: ``act(u) - act(-u) = u`` exactly for ReLU and GELU, so a linear head ``W x + b`` is stored as a
  12-unit projection with weights ``[W; -W]`` and bias ``[b; -b]`` followed by the head ``[I, -I]``.
  ``mlp256``/``mlp512`` are the projection itself with 256/512 units, followed by the linear output layer.

**Why not the Trainer.** A 5-fold CV of an MLP-512 on 2,456 × 14,336 features should take about a minute on two
CPU cores under the toolkit protocol. The whole table fits in memory, so the loop here slices tensors directly.
Under the toolkit protocol the paper's heads are also learned in the span of the training rows
(``training_span``): every step is ~7× cheaper, and the result is the same as training in feature space for SGD
but only close to it for Adam/AdamW (their per-coordinate scaling depends on the basis), so the paper protocol
does not use it.

**Outputs of every run**: ``OUTPUT/cv/fold{k}/validation_probabilities.csv`` (``clip_id``, then the six
probabilities in the order ``ang disg fea hap sad neu``; under the paper protocol those of the best epoch) and
``OUTPUT/cv/results.json`` (per fold ``alpha``, ``beta``, ``acc_presence``, ``acc_salience``, ``score``,
``best_epoch``; the protocol's hyper-parameters; the test fit's α/β and where they come from). Beside the model,
for ``blemore ensemble``: ``OUTPUT/oof_probabilities.csv`` (the same out-of-fold probabilities in one file, with each
clip's outcome) and, after the test fit, ``OUTPUT/test_probabilities.csv``.

**α/β of the test fit**: paper — the α/β of the fold with the highest composite score. Toolkit — one search on the
pooled out-of-fold probabilities of all five folds (every training clip, predicted by a head that never saw its
actor): the per-fold optima vary a lot between folds on the real data, and one search on 2,456 clips is steadier
than one fold's choice. Both are reported.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

import blemore
from blemore import BlemoreError
from blemore_toolkit.data.atomic import write_text_atomically
from blemore_toolkit.evaluation.scoring import json_text
from blemore_toolkit.evaluation.tuning import ThresholdGrid, ThresholdSearch, outcome_scores, tune_thresholds
from blemore_toolkit.features.extraction import FEATURES_DIR, PROVENANCE_FILE, feature_configs
from blemore_toolkit.features.protocols import METHODS, HeadProtocol, head_protocol
from blemore_toolkit.metrics.blemore.challenge import METRICS

PAPER_HEADS: dict[str, int | None] = {"linear": None, "mlp256": 256, "mlp512": 512}
FUSION_HEADS: tuple[str, ...] = ("concat", "gated", "cross_attention")
#: Heads on the per-window sequences (``modeling/sequence_heads_blemore.py``'s ``SEQUENCE_HEADS``; a test checks
#: they agree).
SEQUENCE_HEADS: tuple[str, ...] = ("attention_pool", "temporal_transformer", "cross_modal")
HEADS: tuple[str, ...] = tuple(PAPER_HEADS) + FUSION_HEADS + SEQUENCE_HEADS
#: Width of the projection that stores a linear head exactly (2 × 6 emotions; see the module docstring).
_LINEAR_WIDTH = 2 * len(blemore.EMOTIONS)


# ---------------------------------------------------------------------------------------------------------------
# Reading feature configs
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class FeatureTable:
    """Aligned per-clip features of one or more configs, with splits, folds and labels.

    ``fold`` is -1 and ``outcome`` -1 for unlabelled (test) rows; ``soft_target`` is zero there.
    """

    clip_ids: list[str]
    split: np.ndarray
    fold: np.ndarray
    outcome: np.ndarray
    soft_target: np.ndarray
    features: dict[str, np.ndarray]

    @property
    def feature_sizes(self) -> dict[str, int]:
        return {name: int(values.shape[1]) for name, values in self.features.items()}

    def rows(self, mask: np.ndarray) -> FeatureTable:
        return FeatureTable([c for c, keep in zip(self.clip_ids, mask) if keep], self.split[mask], self.fold[mask],
                            self.outcome[mask], self.soft_target[mask],
                            {n: v[mask] for n, v in self.features.items()})

    def matrix(self, names: Sequence[str] | None = None) -> np.ndarray:
        """The chosen configs concatenated in order (float32)."""
        names = list(names or self.features)
        return np.concatenate([self.features[n] for n in names], axis=1).astype(np.float32, copy=False)


def _read_config(dataset_dir: Path, name: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = dataset_dir / FEATURES_DIR / name
    files = sorted(folder.glob("*.parquet"))
    if not files or not (folder / PROVENANCE_FILE).is_file():
        known = ", ".join(feature_configs(dataset_dir)) or "none yet"
        raise BlemoreError(f"{folder}: no finished features config {name!r} (configs in {dataset_dir}: {known}; "
                           "make one with `blemore features DATASET --encoder ...`)")
    columns = ["clip_id", "split", "fold", "outcome", "soft_target", "features"]
    return pa.concat_tables([pq.read_table(f, columns=columns) for f in files])


def _fixed_list(column, width: int | None = None) -> np.ndarray:
    """A (possibly null-holding) fixed/variable list column → (N, width) float32, nulls as zeros."""
    values = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    rows = values.to_pylist() if values.null_count else None
    if rows is not None:
        width = width or next(len(r) for r in rows if r is not None)
        return np.asarray([r if r is not None else [0.0] * width for r in rows], dtype=np.float32)
    flat = values.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(len(values), -1).astype(np.float32, copy=False)


def load_feature_table(dataset_dir: str | os.PathLike, names: Sequence[str]) -> FeatureTable:
    """Read feature configs of a prepared dataset and align them by clip (every config must hold the same clips).

    Configs are kept in alphabetical order: a saved model's ``config.json`` lists ``feature_sizes`` sorted by name
    (transformers writes configs with sorted keys), and a concatenated ``features`` tensor is split in that order.
    """
    dataset_dir = Path(dataset_dir)
    names = sorted(names)
    if not (dataset_dir / FEATURES_DIR).is_dir():
        raise BlemoreError(f"{dataset_dir}: no features/ folder (run `blemore features {dataset_dir} --encoder ...`)")
    if len(set(names)) != len(names):
        raise BlemoreError(f"feature configs {list(names)}: a config is named twice")
    tables = {name: _read_config(dataset_dir, name) for name in names}
    _check_clips(dataset_dir, tables)
    first = tables[names[0]]
    clip_ids = first["clip_id"].to_pylist()
    order = {clip: i for i, clip in enumerate(clip_ids)}
    features = {}
    for name, table in tables.items():
        ids = table["clip_id"].to_pylist()
        missing = set(clip_ids) ^ set(ids)
        if missing:
            raise BlemoreError(f"feature configs {names[0]!r} and {name!r} hold different clips (e.g. "
                               f"{sorted(missing)[0]}); extract both from the same prepared dataset")
        position = np.array([order[c] for c in ids])
        values = _fixed_list(table["features"])
        aligned = np.empty_like(values)
        aligned[position] = values
        features[name] = aligned
    outcome = np.array([-1 if o is None else o for o in first["outcome"].to_pylist()], dtype=np.int64)
    fold = np.array([-1 if f is None else f for f in first["fold"].to_pylist()], dtype=np.int64)
    split = np.array(first["split"].to_pylist())
    return FeatureTable(clip_ids, split, fold, outcome, _fixed_list(first["soft_target"], 6), features)


def _check_clips(dataset_dir: Path, tables: dict) -> None:
    """Each config's clips, splits, folds and outcomes must be the dataset's own (``dataset_clips``)."""
    from blemore_toolkit.features.dataset_clips import check_feature_clips, read_dataset_labels

    if not any((dataset_dir / "data").glob("*.parquet")):
        return  # features alone, without the clips: nothing to check against
    labels = read_dataset_labels(dataset_dir)
    for name, table in tables.items():
        path = dataset_dir / FEATURES_DIR / name / PROVENANCE_FILE
        try:
            provenance = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise BlemoreError(f"{path}: not valid JSON ({error}); extract the config again") from None
        as_numbers = [np.array([-1 if v is None else v for v in table[c].to_pylist()], dtype=np.int64)
                      for c in ("fold", "outcome")]
        check_feature_clips(dataset_dir, name, table["clip_id"].to_pylist(), np.array(table["split"].to_pylist()),
                            *as_numbers, recorded=provenance.get("clips") if isinstance(provenance, dict) else None,
                            labels=labels)


# ---------------------------------------------------------------------------------------------------------------
# Training examples: one row per clip (aggregation) or one per window (subsampling)
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Design:
    """The rows a head trains and predicts on: ``x`` (M, D) and, for each row, the table row of its clip.

    Aggregation has one row per clip (``clip == arange(N)``); subsampling one row per window of a clip, each
    carrying the clip's soft target. A clip's prediction is the softmax of its rows' mean logits.
    """

    x: np.ndarray
    clip: np.ndarray
    #: The model's feature inputs (name → width) that ``x`` concatenates.
    sizes: dict[str, int]

    def rows_of(self, clip_mask: np.ndarray) -> np.ndarray:
        """Boolean mask of the rows whose clip is selected by ``clip_mask`` (over the table's clips)."""
        return clip_mask[self.clip]


def aggregation_design(table: FeatureTable, names: Sequence[str]) -> Design:
    return Design(table.matrix(names), np.arange(len(table.clip_ids)), {n: table.feature_sizes[n] for n in names})


def subsampling_design(dataset_dir: str | os.PathLike, table: FeatureTable, names: Sequence[str]) -> Design:
    """Every stored window vector (the config's ``sequence`` column) as its own row (clip encoders only)."""
    import pyarrow.parquet as pq

    if len(names) != 1:
        raise BlemoreError(f"--method subsampling trains on one clip encoder's windows; got configs {list(names)}")
    (name,) = names
    provenance = json.loads((Path(dataset_dir) / FEATURES_DIR / name / PROVENANCE_FILE).read_text())
    if provenance.get("kind") not in ("video", None):
        raise BlemoreError(f"features config {name!r} comes from a {provenance.get('kind')} encoder; --method "
                           "subsampling needs a clip (video) encoder's windows")
    order = {clip: i for i, clip in enumerate(table.clip_ids)}
    rows, clips = [], []
    for shard in sorted((Path(dataset_dir) / FEATURES_DIR / name).glob("*.parquet")):
        part = pq.read_table(shard, columns=["clip_id", "sequence"]).to_pylist()
        for record in part:
            if record["clip_id"] not in order:  # a table of selected clips (e.g. one split)
                continue
            windows = np.asarray(record["sequence"] or [], dtype=np.float32)
            if windows.ndim != 2 or len(windows) == 0:
                raise BlemoreError(f"clip {record['clip_id']}: no windows stored in features config {name!r}")
            rows.append(windows)
            clips += [order[record["clip_id"]]] * len(windows)
    x = np.concatenate(rows)
    return Design(x, np.asarray(clips, dtype=np.int64), {name: int(x.shape[1])})


# ---------------------------------------------------------------------------------------------------------------
# The model: which BlemoreConfig a head is, and the standardisation stored in its first layer
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class HeadSettings:
    """A head and its protocol (``protocols.HEAD_PROTOCOLS``); a field set here overrides the protocol's value."""

    head: str = "mlp512"
    hidden: int = 256
    protocol: str | HeadProtocol = "toolkit"
    method: str = "aggregation"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    dropout: float | None = None
    precision: str | None = None
    seed: int = 0

    @property
    def training(self) -> HeadProtocol:
        """The protocol with this run's overrides applied (epochs and batch of ``method``)."""
        base = head_protocol(self.protocol)
        if self.method not in METHODS:
            raise BlemoreError(f"--method {self.method!r}: expected one of {', '.join(METHODS)}")
        overrides = {k: getattr(self, k) for k in ("lr", "weight_decay", "dropout", "precision")
                     if getattr(self, k) is not None}
        prefix = "subsample_" if self.method == "subsampling" else ""
        if self.epochs is not None:
            overrides[f"{prefix}epochs"] = self.epochs
        if self.batch_size is not None:
            overrides[f"{prefix}batch_size"] = self.batch_size
        return dataclasses.replace(base, **overrides)

    def as_dict(self) -> dict:
        training = self.training
        return {"head": self.head, "hidden": self.hidden, "protocol": training.name, "method": self.method,
                "seed": self.seed, "epochs": training.epochs_for(self.method),
                "batch_size": training.batch_size_for(self.method), "hyperparameters": training.as_dict()}


def model_inputs(head: str, feature_sizes: dict[str, int]) -> dict[str, int]:
    """The model's ``feature_sizes``: one concatenated input for the paper's heads, one per config for fusion."""
    if head in PAPER_HEADS:
        return {"+".join(feature_sizes): sum(feature_sizes.values())}
    return dict(feature_sizes)


def head_config(settings: HeadSettings, feature_sizes: dict[str, int]):
    """The ``BlemoreConfig`` of a head on features of these sizes (see the module docstring)."""
    from blemore_toolkit.modeling import BlemoreConfig

    training = settings.training
    inputs = model_inputs(settings.head, feature_sizes)
    norm = dict(feature_normalization="affine" if training.standardisation == "per_feature" else "layer_norm",
                projection_activation=training.activation)
    if settings.head == "linear":
        return BlemoreConfig(feature_sizes=inputs, fusion="concat", fusion_hidden_size=_LINEAR_WIDTH,
                             head_hidden_sizes=[], dropout=0.0, **norm)
    if settings.head in PAPER_HEADS:
        return BlemoreConfig(feature_sizes=inputs, fusion="concat", fusion_hidden_size=PAPER_HEADS[settings.head],
                             head_hidden_sizes=[], dropout=training.dropout, **norm)
    if settings.head not in FUSION_HEADS:
        raise BlemoreError(f"--head {settings.head!r}: expected one of {', '.join(HEADS)}")
    return BlemoreConfig(feature_sizes=inputs, fusion=settings.head, fusion_hidden_size=settings.hidden,
                         head_hidden_sizes=[settings.hidden], dropout=training.dropout, **norm)


def standardisation(values: np.ndarray, eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """LayerNorm weight and bias that standardise the layer-normalised ``values`` (the training rows).

    The toolkit protocol's standardisation. Dimensions that do not vary over the training rows get weight 0:
    they carry nothing a head could learn.
    """
    import torch

    normalised = torch.nn.functional.layer_norm(torch.as_tensor(values, dtype=torch.float32), values.shape[1:],
                                                eps=eps).double()
    std, mean = torch.std_mean(normalised, dim=0, correction=0)
    weight = torch.where(std > 1e-6, 1.0 / std.clamp(min=1e-6), torch.zeros_like(std))
    return weight.float().numpy(), (-mean * weight).float().numpy()


def per_feature_standardisation(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The paper protocol's standardisation as ``x · weight + bias``: weight 1/σ, bias −μ/σ per feature.

    μ and σ (population std, as sklearn's StandardScaler) over ``values``, the training rows only; a feature
    constant over them gets σ = 1 (StandardScaler's rule), so it is only centred.
    """
    values = np.asarray(values, dtype=np.float64)
    mean, std = values.mean(axis=0), values.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (1.0 / std).astype(np.float32), (-mean / std).astype(np.float32)


def _input_slices(inputs: dict[str, int]) -> dict[str, slice]:
    bounds = np.cumsum([0] + list(inputs.values()))
    return {name: slice(int(bounds[i]), int(bounds[i + 1])) for i, name in enumerate(inputs)}


def _set_standardisation(norms: dict, inputs: dict[str, int], train_x: np.ndarray, per_feature: bool) -> None:
    """Fit each input's standardisation on ``train_x`` and store it in (and freeze) its norm layer."""
    import torch

    for name, part in _input_slices(inputs).items():
        norm = norms[name]
        weight, bias = (per_feature_standardisation(train_x[:, part]) if per_feature
                        else standardisation(train_x[:, part], norm.eps))
        with torch.no_grad():
            norm.weight.copy_(torch.from_numpy(weight))
            norm.bias.copy_(torch.from_numpy(bias))
        norm.requires_grad_(False)


def _use_bfloat16(precision: str) -> bool:
    import torch

    if precision == "float32":
        return False
    if precision == "bfloat16":
        return True
    try:  # native bfloat16 matmuls (AVX512-BF16 / AMX) make them ~3× faster than float32; emulated ones are slower
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def soft_kl(logits, targets):
    """The paper's objective: KL(soft target ‖ softmax(logits)), mean over clips (as the model computes it)."""
    import torch.nn.functional as F

    return F.kl_div(logits.log_softmax(-1), targets, reduction="batchmean")


def _optimizer(parameters, training: HeadProtocol):
    """Adam with L2 weight decay (the paper) or AdamW with decoupled decay (the toolkit)."""
    import torch

    parameters = [p for p in parameters if p.requires_grad]
    if training.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=training.lr, weight_decay=training.weight_decay)
    try:
        return torch.optim.AdamW(parameters, lr=training.lr, weight_decay=training.weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(parameters, lr=training.lr, weight_decay=training.weight_decay)


def _fit(forward, parameters, train_x, train_y, training: HeadProtocol, epochs: int, batch_size: int, seed: int,
         on_epoch=None) -> None:
    """Minibatch training on in-memory tensors with the soft-label KL loss; ``on_epoch(epoch)`` after each epoch."""
    import torch

    # Arrays become one tensor; other inputs (the sequence heads' padded sequences) only need len() and x[index].
    x = torch.as_tensor(train_x) if isinstance(train_x, (np.ndarray, torch.Tensor)) else train_x
    y = torch.as_tensor(train_y)
    optimizer = _optimizer(parameters, training)
    generator = torch.Generator().manual_seed(seed)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=_use_bfloat16(training.precision))
    batch = max(1, min(batch_size, len(x)))
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch):
            index = order[start:start + batch]
            with autocast:
                logits = forward(x[index])
            loss = soft_kl(logits.float(), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if on_epoch is not None:
            on_epoch(epoch)


def training_span(z):
    """Coordinates of the training rows in their own span, and the map back to feature space.

    With more feature dimensions D than training clips N (14,336 vs. ~1,965 on BLEMORE), every gradient of a first
    layer ``W`` is a combination of the training rows, so the layer can be learned in the ≤ N-dimensional span of
    those rows. With the Cholesky factor of their Gram matrix, ``Z Zᵀ = L Lᵀ``, the rows have coordinates ``L``
    (row i of L) and a layer ``V`` learned on them is ``W = V L⁻¹ Z`` in feature space: ``W zᵢ = V L⁻¹ Z zᵢ =
    V L⁻¹ L Lᵀ eᵢ = V Lᵀeᵢ``, exactly what training saw. (Rank-deficient rows fall back to an eigendecomposition
    that keeps the non-zero directions.) The part of ``W`` outside the span, which no training row sees, is zero.
    Each step's D × hidden matmuls become N × hidden ones for the price of one Gram matrix per fold.

    What is exact is the map: the learned layer predicts in feature space what it predicted on the coordinates.
    Training in the span equals training in feature space for SGD from a zero (or in-span) start only; Adam and
    AdamW scale each coordinate by its own gradient history, which depends on the basis, and torch's default
    initialisation is not in the span, so with them the weights and probabilities differ from feature-space
    training. The toolkit protocol accepts that for speed; the paper protocol does not use this path.
    Returns ``(coordinates, to_features)``; with D ≤ N the rows are their own coordinates.
    """
    import torch

    if z.shape[1] <= z.shape[0]:
        return z, lambda weight: weight
    gram = (z @ z.T).double()
    factor, info = torch.linalg.cholesky_ex(gram)
    if int(info) == 0:
        def to_features(weight):
            # V L⁻¹ = (L⁻ᵀ Vᵀ)ᵀ, solved rather than inverted
            solved = torch.linalg.solve_triangular(factor.T, weight.double().T, upper=True).T
            return solved.float() @ z

        return factor.float(), to_features
    eigenvalues, eigenvectors = torch.linalg.eigh(gram)
    keep = eigenvalues > eigenvalues.max() * 1e-7
    root, basis = eigenvalues[keep].sqrt(), eigenvectors[:, keep]

    def to_features_eigen(weight):
        return ((weight.double() @ (basis / root).T).float()) @ z

    return (basis * root).float(), to_features_eigen




@dataclasses.dataclass
class Validation:
    """The validation rows a head is evaluated on: raw rows, the validation clip of each row, the clips' truth."""

    x: np.ndarray
    clip: np.ndarray
    outcome: np.ndarray
    grid: ThresholdGrid

    def probabilities(self, row_logits) -> np.ndarray:
        return clip_probabilities(row_logits, self.clip, len(self.outcome))

    def search(self, row_logits) -> ThresholdSearch:
        return tune_thresholds(self.probabilities(row_logits), self.outcome, grid=self.grid)


@dataclasses.dataclass
class FittedHead:
    """A trained head and, when it was validated, its validation clips' probabilities and α/β search.

    ``best_epoch`` is the epoch whose weights the model holds (the last one under ``epoch_selection="last"``);
    ``epoch_scores`` the composite validation score of every epoch when epochs were selected.
    """

    model: object
    best_epoch: int
    probabilities: np.ndarray | None = None
    search: ThresholdSearch | None = None
    epoch_scores: list[float] = dataclasses.field(default_factory=list)


def _composite(search: ThresholdSearch) -> float:
    score = search.score
    return float(search.acc_presence / 2 if np.isnan(score) else score)


class _EpochSelection:
    """Keeps the weights of the epoch with the highest composite validation score (ties: the earliest)."""

    def __init__(self, module, row_logits, validation: Validation):
        self.module, self.row_logits, self.validation = module, row_logits, validation
        self.best_epoch, self.best_score, self.best_state, self.scores = 0, -np.inf, None, []

    def __call__(self, epoch: int) -> None:
        import torch

        was_training = self.module.training
        self.module.eval()
        with torch.inference_mode():
            score = _composite(self.validation.search(self.row_logits()))
        self.module.train(was_training)
        self.scores.append(score)
        if score > self.best_score:
            self.best_epoch, self.best_score = epoch, score
            self.best_state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    def restore(self) -> None:
        if self.best_state is not None:
            self.module.load_state_dict(self.best_state)


def _paper_head_module(width: int, hidden: int | None, training: HeadProtocol):
    from torch import nn

    if hidden is None:
        module = nn.Linear(width, len(blemore.EMOTIONS))
        if training.init == "zero_linear":
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)
        return module, [module]
    activation = nn.ReLU() if training.activation == "relu" else nn.GELU()
    module = nn.Sequential(nn.Linear(width, hidden), activation, nn.Dropout(training.dropout),
                           nn.Linear(hidden, len(blemore.EMOTIONS)))
    return module, [module[0], module[3]]


def fit_head(train_x: np.ndarray, train_y: np.ndarray, feature_sizes: dict[str, int], settings: HeadSettings,
             seed: int = 0, *, epochs: int | None = None, validation: Validation | None = None) -> FittedHead:
    """Train a head on (M, ΣD) rows and (M, 6) soft targets as ``settings.training`` says.

    Standardisation is fitted on ``train_x`` only and stored in the model's norm layer. With ``validation`` and
    ``epoch_selection="best_composite"`` every epoch is scored there (α/β searched on the grid of the protocol)
    and the best epoch's weights are kept; with ``validation`` the returned head carries the validation clips'
    probabilities and their α/β search. ``epochs`` overrides the protocol's (the test fit's 100).
    """
    import torch

    from blemore_toolkit.modeling import BlemoreForBlendedEmotionRecognition

    training = settings.training
    epochs = training.epochs_for(settings.method) if epochs is None else epochs
    batch_size = training.batch_size_for(settings.method)
    config = head_config(settings, feature_sizes)
    inputs = dict(config.feature_sizes)
    torch.manual_seed(seed)
    model = BlemoreForBlendedEmotionRecognition(config)
    norms = {name: model.blemore.projections[name].norm for name in inputs}
    _set_standardisation(norms, inputs, train_x, per_feature=training.standardisation == "per_feature")
    select = validation is not None and training.epoch_selection == "best_composite"
    selection = None
    if settings.head in PAPER_HEADS:
        (name,) = inputs
        with torch.no_grad():
            z = norms[name](torch.as_tensor(train_x))
            z_valid = norms[name](torch.as_tensor(validation.x)) if select else None
        coordinates, to_features = (training_span(z) if training.training_span and not select
                                    else (z, lambda weight: weight))
        torch.manual_seed(seed)
        module, layers = _paper_head_module(coordinates.shape[1], PAPER_HEADS[settings.head], training)
        module.train()
        if select:
            selection = _EpochSelection(module, lambda: module(z_valid), validation)
        _fit(module, module.parameters(), coordinates, train_y, training, epochs, batch_size, seed, selection)
        if selection is not None:
            selection.restore()
        with torch.no_grad():
            first = (to_features(layers[0].weight), layers[0].bias.clone())
            _store_paper_head(model, name, [first] + [(la.weight.clone(), la.bias.clone()) for la in layers[1:]])
    else:
        model.train()
        if select:
            x_valid = torch.as_tensor(validation.x)
            selection = _EpochSelection(model, lambda: model(features=x_valid).logits, validation)
        _fit(lambda xb: model(features=xb).logits, model.parameters(), train_x, train_y, training, epochs,
             batch_size, seed, selection)
        if selection is not None:
            selection.restore()
    return finished_head(model, selection, epochs, validation, lambda: predict_logits(model, validation.x))


def finished_head(model, selection: _EpochSelection | None, epochs: int, validation: Validation | None,
                  validation_logits) -> FittedHead:
    """A trained model as a ``FittedHead``: eval mode, trainable again, the epoch it holds (the selected one, else
    the last) and, with ``validation``, the probabilities and α/β search of the weights kept, as the saved model
    computes them (``validation_logits()``)."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    fitted = FittedHead(model, selection.best_epoch if selection else epochs,
                        epoch_scores=selection.scores if selection else [])
    if validation is not None:
        logits = validation_logits()
        fitted.probabilities, fitted.search = validation.probabilities(logits), validation.search(logits)
    return fitted


def train_head(train_x: np.ndarray, train_y: np.ndarray, feature_sizes: dict[str, int], settings: HeadSettings,
               seed: int = 0):
    """Train a head (no validation, all epochs) → an eval-mode ``BlemoreForBlendedEmotionRecognition``."""
    return fit_head(train_x, train_y, feature_sizes, settings, seed).model


def _store_paper_head(model, name: str, layers: list) -> None:
    """Write the learned layers into the model's projection and head.

    A linear head ``W z + b`` goes into the 12-unit projection as ``[W; -W]``, ``[b; -b]`` and the head as
    ``[I, -I]``, which is exact for either activation: GELU(u) − GELU(−u) = ReLU(u) − ReLU(−u) = u.
    """
    import torch

    projection, output = model.blemore.projections[name].linear, model.head[-1]
    with torch.no_grad():
        if len(layers) == 1:
            (weight, bias), eye = layers[0], torch.eye(len(blemore.EMOTIONS))
            projection.weight.copy_(torch.cat([weight, -weight]))
            projection.bias.copy_(torch.cat([bias, -bias]))
            output.weight.copy_(torch.cat([eye, -eye], dim=1))
            output.bias.zero_()
        else:
            (first_weight, first_bias), (last_weight, last_bias) = layers
            projection.weight.copy_(first_weight)
            projection.bias.copy_(first_bias)
            output.weight.copy_(last_weight)
            output.bias.copy_(last_bias)


def predict_logits(model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """(M, ΣD) raw feature rows → (M, 6) logits (float32 inference, exactly as the saved model), as float64."""
    import torch

    outputs = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            rows = torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size], dtype=np.float32))
            outputs.append(model(features=rows).logits.double().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, len(blemore.EMOTIONS)))


def clip_probabilities(row_logits, clip: np.ndarray, num_clips: int) -> np.ndarray:
    """Rows' logits → (num_clips, 6) probabilities: each clip's mean logit over its rows, then the softmax.

    With one row per clip (aggregation) this is the softmax of its logits; with windows (subsampling) the
    paper's rule: logits averaged over the clip's windows before the softmax.
    """
    from blemore_toolkit.modeling.decoding_blemore import softmax, to_numpy

    logits = to_numpy(row_logits)
    if len(clip) == num_clips and np.array_equal(clip, np.arange(num_clips)):
        return softmax(logits)
    sums = np.zeros((num_clips, logits.shape[1]))
    np.add.at(sums, clip, logits)
    counts = np.bincount(clip, minlength=num_clips)
    if (counts == 0).any():
        raise BlemoreError(f"{int((counts == 0).sum())} clips have no feature rows to predict from")
    return softmax(sums / counts[:, None])


def predict_probabilities(model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """(N, ΣD) raw features, one row per clip → (N, 6) emotion probabilities."""
    logits = predict_logits(model, x, batch_size)
    return clip_probabilities(logits, np.arange(len(logits)), len(logits))


@dataclasses.dataclass(frozen=True)
class HeadRecipe:
    """How one kind of head reads its inputs, trains and predicts; the CV, α/β tuning, test fit, saving and
    submission below are shared by every recipe.

    ``load(dataset_dir, names)`` reads the table; ``inputs(table, group)`` gives one input per clip of a config group,
    indexable by a row mask (an array for the statistics heads, padded sequences for the sequence heads);
    ``fit(x, soft_targets, sizes, settings, seed, *, epochs=None, validation=None)`` trains as ``settings.training``
    says and returns a ``FittedHead`` (``fit_head`` is the statistics heads'); ``logits(model, x)`` scores inputs.
    """

    load: Callable[..., FeatureTable]
    inputs: Callable[[FeatureTable, Sequence[str]], object]
    fit: Callable[..., FittedHead]
    logits: Callable[[object, object], np.ndarray]

    def design(self, table: FeatureTable, group: Sequence[str]) -> Design:
        """One row per clip (the aggregation method) of this recipe's inputs."""
        return Design(self.inputs(table, group), np.arange(len(table.clip_ids)),
                      {n: table.feature_sizes[n] for n in group})

    def train(self, train_x, train_y: np.ndarray, feature_sizes: dict[str, int], settings: HeadSettings,
              seed: int = 0):
        """A head trained on every row for the protocol's epochs (no validation) → an eval-mode model."""
        return self.fit(train_x, train_y, feature_sizes, settings, seed).model

    def predict(self, model, x) -> np.ndarray:
        """One input per clip → (N, 6) emotion probabilities."""
        logits = self.logits(model, x)
        return clip_probabilities(logits, np.arange(len(logits)), len(logits))


def _statistics_inputs(table: FeatureTable, group: Sequence[str]) -> np.ndarray:
    return table.matrix(group)


#: The paper's and the fusion heads: one vector of statistics per clip (or per window, with subsampling designs).
STATISTICS_RECIPE = HeadRecipe(load_feature_table, _statistics_inputs, fit_head, predict_logits)


def _resolve_recipe(settings: HeadSettings, recipe: HeadRecipe | None) -> HeadRecipe:
    if recipe is not None:
        return recipe
    if settings.head in SEQUENCE_HEADS:
        raise BlemoreError(f"--head {settings.head} is a sequence head: pass its recipe "
                           "(blemore_toolkit.features.sequence_heads.head_recipe(head))")
    return STATISTICS_RECIPE


# ---------------------------------------------------------------------------------------------------------------
# Cross-validation and the test fit (reusable by any head that takes a protocol)
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class CrossValidation:
    """Per-fold results, the validation probabilities of every fold and the pooled out-of-fold search.

    ``folds[i]`` holds ``fold``, ``n_clips``, ``alpha``/``beta`` (= ``presence_threshold``/``salience_threshold``,
    searched on that fold's probabilities with the protocol's grid), ``acc_presence``, ``acc_salience``,
    ``score``, ``best_epoch`` and ``with_pooled_thresholds``. ``training_clips[k]``: the table rows fold ``k``'s
    heads were trained on. ``oof_probabilities``: each labelled training clip's probabilities from the fold that
    held it out.
    """

    folds: list[dict]
    oof_probabilities: np.ndarray
    oof_mask: np.ndarray
    pooled: dict
    seconds: float
    training_clips: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)
    epoch_scores: dict[int, list[list[float]]] = dataclasses.field(default_factory=dict)

    def summary(self) -> dict:
        result = {}
        for metric in METRICS:
            values = np.array([f[metric] for f in self.folds], dtype=np.float64)
            result[metric] = {"mean": float(np.nanmean(values)),
                              "std": float(np.nanstd(values, ddof=1)) if len(values) > 1 else 0.0}
        return result


def _labelled_train(table: FeatureTable) -> np.ndarray:
    return (table.split == "train") & (table.outcome >= 0) & (table.fold >= 0)


def cross_validate(table: FeatureTable, settings: HeadSettings, groups: Sequence[Sequence[str]] | None = None,
                   progress: bool = False, designs: Sequence[Design] | None = None,
                   recipe: HeadRecipe | None = None) -> CrossValidation:
    """K-fold CV over the ``fold`` column of the labelled training rows, as ``settings.training`` says.

    Fold ``k``'s heads train on the rows of labelled training clips whose fold is not ``k`` (recorded in
    ``training_clips``) and are evaluated on fold ``k``'s clips, where α/β are searched on the protocol's grid.
    ``groups``: feature-config groups whose heads are trained separately and whose probabilities are averaged
    (late fusion); default one group with every config (early fusion). ``designs``: the rows of each group
    (default: aggregation, one row per clip, of the recipe's inputs). ``recipe``: how the head reads, trains and
    predicts (default: the statistics heads; see ``HeadRecipe``).
    """
    from tqdm.auto import tqdm

    from blemore_toolkit.modeling.decoding_blemore import threshold_outcomes

    training = settings.training
    start_time = time.perf_counter()
    groups = [list(g) for g in (groups or [list(table.features)])]
    recipe = _resolve_recipe(settings, recipe)
    designs = list(designs) if designs is not None else [recipe.design(table, g) for g in groups]
    labelled = _labelled_train(table)
    folds = sorted(set(table.fold[labelled].tolist()))
    if len(folds) < 2:
        raise BlemoreError(f"cross-validation needs labelled training clips in at least two folds, found {folds}")
    probabilities = np.zeros((len(table.clip_ids), len(blemore.EMOTIONS)))
    results, training_clips, epoch_scores = [], {}, {}
    for fold in tqdm(folds, desc=f"cv {settings.head} ({training.name})", unit="fold", disable=not progress):
        train_clips, valid_clips = labelled & (table.fold != fold), labelled & (table.fold == fold)
        valid_index = np.flatnonzero(valid_clips)
        position = np.full(len(table.clip_ids), -1)
        position[valid_index] = np.arange(len(valid_index))
        fold_probs = np.zeros((len(valid_index), len(blemore.EMOTIONS)))
        best_epochs, epoch_scores[int(fold)] = [], []
        for design in designs:
            train_rows, valid_rows = design.rows_of(train_clips), design.rows_of(valid_clips)
            validation = Validation(design.x[valid_rows], position[design.clip[valid_rows]],
                                    table.outcome[valid_index], training.grid)
            fitted = recipe.fit(design.x[train_rows], table.soft_target[design.clip[train_rows]], design.sizes,
                                settings, seed=settings.seed + fold, validation=validation)
            fold_probs += fitted.probabilities / len(groups)
            # the clips whose rows this fold's heads were given, read back from the rows themselves
            training_clips[int(fold)] = np.unique(design.clip[train_rows])
            best_epochs.append(fitted.best_epoch)
            epoch_scores[int(fold)].append(fitted.epoch_scores)
        probabilities[valid_clips] = fold_probs
        search = tune_thresholds(fold_probs, table.outcome[valid_clips], grid=training.grid)
        results.append({"fold": int(fold), "n_clips": int(valid_clips.sum()), **search.as_dict(),
                        "alpha": search.presence_threshold, "beta": search.salience_threshold,
                        "best_epoch": best_epochs[0] if len(best_epochs) == 1 else best_epochs})
    pooled_search = tune_thresholds(probabilities[labelled], table.outcome[labelled], grid=training.grid)
    for result in results:
        # every fold decoded with the one pooled α/β. That search saw every fold's clips, this fold's included,
        # so these figures are not held out: they show how much one shared α/β costs or gains, nothing more.
        rows = labelled & (table.fold == result["fold"])
        decoded = threshold_outcomes(probabilities[rows], pooled_search.presence_threshold,
                                     pooled_search.salience_threshold)
        scores = outcome_scores(table.outcome[rows], decoded)
        result["with_pooled_thresholds"] = {m: scores[m] for m in METRICS}
    pooled = {"presence_threshold": pooled_search.presence_threshold,
              "salience_threshold": pooled_search.salience_threshold,
              "acc_presence": pooled_search.acc_presence, "acc_salience": pooled_search.acc_salience,
              "score": pooled_search.score,
              "mean_fold_thresholds": [float(np.mean([r["presence_threshold"] for r in results])),
                                       float(np.mean([r["salience_threshold"] for r in results]))]}
    from blemore_toolkit.evaluation.statistics import decoded_with_interval

    interval = decoded_with_interval(probabilities[labelled], table.outcome[labelled],
                                     [c for c, keep in zip(table.clip_ids, labelled) if keep],
                                     pooled_search.presence_threshold, pooled_search.salience_threshold)
    pooled.update({key: interval[key] for key in ("ci", "ci_level", "ci_method", "n_clusters")})
    return CrossValidation(results, probabilities, labelled, pooled, time.perf_counter() - start_time,
                           training_clips, epoch_scores)


def best_fold(cv: CrossValidation) -> dict:
    """The fold with the highest composite score (mean of the two accuracies); ties: the lowest fold id."""
    return max(sorted(cv.folds, key=lambda f: f["fold"]), key=lambda f: np.nan_to_num(f["score"], nan=-1.0))


def test_fit_thresholds(cv: CrossValidation, training: HeadProtocol) -> tuple[tuple[float, float], str]:
    """(α, β) the test fit is decoded with, as the protocol says, and a sentence saying where they come from."""
    if training.test_fit_thresholds == "best_fold":
        fold = best_fold(cv)
        return ((fold["presence_threshold"], fold["salience_threshold"]),
                f"the α/β of the best fold (fold {fold['fold']}, composite score {fold['score']:.4f})")
    return ((cv.pooled["presence_threshold"], cv.pooled["salience_threshold"]),
            "tuned on the pooled out-of-fold probabilities of the five folds")


def format_table(cv: CrossValidation, title: str = "") -> str:
    """The per-fold rows and the mean ± std row as a plain-text table."""
    lines = [title] if title else []
    lines.append(f"{'fold':>6} {'clips':>6} {'epoch':>5} {'α':>5} {'β':>5} " + " ".join(f"{m:>13}" for m in METRICS))
    for row in cv.folds:
        epoch = row.get("best_epoch")
        epoch = epoch if isinstance(epoch, int) else "-"
        lines.append(f"{row['fold']:>6} {row['n_clips']:>6} {epoch:>5} {row['presence_threshold']:>5.2f} "
                     f"{row['salience_threshold']:>5.2f} " + " ".join(f"{row[m]:>13.4f}" for m in METRICS))
    summary = cv.summary()
    lines.append(f"{'mean':>6} {'':>6} {'':>5} {'':>5} {'':>5} "
                 + " ".join(f"{summary[m]['mean']:>6.4f}±{summary[m]['std']:<6.4f}" for m in METRICS))
    p = cv.pooled
    lines.append(f"pooled out-of-fold, one α/β for all folds: α={p['presence_threshold']:.2f} "
                 f"β={p['salience_threshold']:.2f} acc_presence={p['acc_presence']:.4f} "
                 f"acc_salience={p['acc_salience']:.4f} score={p['score']:.4f}")
    if "ci" in p:
        from blemore_toolkit.evaluation.statistics import format_interval

        lines.append(f"  {int(100 * p['ci_level'])}% {p['ci_method']} over {p['n_clusters']}: "
                     + ", ".join(f"{m} {format_interval(p, m)}" for m in METRICS))
    return "\n".join(lines)


def fit_final(table: FeatureTable, settings: HeadSettings, groups: Sequence[Sequence[str]], thresholds: tuple,
              designs: Sequence[Design] | None = None, recipe: HeadRecipe | None = None):
    """Heads trained on every labelled training clip (the protocol's test-fit epochs), decoded with ``thresholds``."""
    training = settings.training
    labelled = _labelled_train(table)
    recipe = _resolve_recipe(settings, recipe)
    designs = list(designs) if designs is not None else [recipe.design(table, g) for g in groups]
    models = []
    for design in designs:
        rows = design.rows_of(labelled)
        model = recipe.fit(design.x[rows], table.soft_target[design.clip[rows]], design.sizes, settings,
                           seed=settings.seed + 100, epochs=training.test_fit_epochs).model
        model.config.presence_threshold, model.config.salience_threshold = map(float, thresholds)
        model.config.decoding_rule = "thresholds"
        # read by `blemore predict`: a subsampling head scores windows, and a clip is its windows' mean logits
        model.config.feature_method = settings.method
        models.append(model)
    return models


def write_cv_outputs(cv: CrossValidation, table: FeatureTable, folder: Path, settings: HeadSettings,
                     extra: dict | None = None) -> Path:
    """``folder/cv/fold{k}/validation_probabilities.csv`` and ``folder/cv/results.json`` (see the module docstring)."""

    cv_dir = Path(folder) / "cv"
    for row in cv.folds:
        rows = np.flatnonzero(cv.oof_mask & (table.fold == row["fold"]))
        lines = [",".join(["clip_id", *blemore.EMOTIONS])]
        lines += [",".join([table.clip_ids[i], *(repr(float(p)) for p in cv.oof_probabilities[i])]) for i in rows]
        (cv_dir / f"fold{row['fold']}").mkdir(parents=True, exist_ok=True)
        write_text_atomically(cv_dir / f"fold{row['fold']}" / "validation_probabilities.csv", "\n".join(lines) + "\n")
    keys = ("fold", "n_clips", "alpha", "beta", "acc_presence", "acc_salience", "score", "best_epoch",
            "with_pooled_thresholds")
    results = {**settings.as_dict(), "folds": [{k: row[k] for k in keys if k in row} for row in cv.folds],
               "summary": cv.summary(), "pooled_out_of_fold": cv.pooled, "cv_seconds": cv.seconds, **(extra or {})}
    write_text_atomically(cv_dir / "results.json", json_text(results))
    return cv_dir


# ---------------------------------------------------------------------------------------------------------------
# Saving: the model folder (weights, remote code, card, report) and the submission
# ---------------------------------------------------------------------------------------------------------------


def _model_card(report: dict, table_text: str) -> str:
    configs = report["feature_configs"]
    inputs = report["model_feature_sizes"]
    subsampling_note = ("\nSubsampling: the model scores one window vector; a clip's prediction is its windows' "
                        "logits averaged, then the softmax and the decoding below.\n"
                        if report["method"] == "subsampling" else "")
    return f"""---
library_name: transformers
tags:
- blemore
- emotion-recognition
- blended-emotions
---
# BLEMORE {report['head']} head on {', '.join(configs)}

{_card_inputs(report, configs, inputs)}
{subsampling_note}

Decoding thresholds: α = {report['thresholds'][0]:.2f}, β = {report['thresholds'][1]:.2f}
({report['threshold_choice']}).

## 5-fold cross-validation (actor-disjoint folds, α/β searched per validation fold)

```
{table_text}
```

Feature provenance and training settings: `heads_report.json`.
"""


def _card_inputs(report: dict, configs: list[str], inputs: dict) -> str:
    trained_by = f"`blemore heads --protocol {report['protocol']} --method {report['method']}`"
    if report["head"] in SEQUENCE_HEADS:
        return f"""A `BlemoreForBlendedEmotionRecognition` with a `{report['head']}` sequence head, trained by
{trained_by} on the per-window sequences that `blemore features` stores (`sequence` column), soft-label KL
objective, per-window standardisation fitted on the training folds and stored in the model. Sequence inputs
(`config.feature_sizes`, window widths): {inputs}.

```python
from transformers import AutoModelForVideoClassification, AutoProcessor

model = AutoModelForVideoClassification.from_pretrained("PATH_OR_REPO", trust_remote_code=True)
processor = AutoProcessor.from_pretrained("PATH_OR_REPO", trust_remote_code=True)  # pads the windows
clips = [{{name: row_sequence[name] for name in model.config.feature_sizes}}]  # (windows, width) per input
predictions = model.decode(model(**processor(clips)))  # features + feature_masks
```"""
    return f"""A `BlemoreForBlendedEmotionRecognition` trained by {trained_by} on precomputed encoder features
(`blemore features`), soft-label KL objective, standardisation fitted on the training folds and stored in the
model. Feature inputs (`config.feature_sizes`): {inputs}.

```python
import torch
from transformers import AutoModelForVideoClassification

model = AutoModelForVideoClassification.from_pretrained("PATH_OR_REPO", trust_remote_code=True)
features = torch.tensor(rows["features"])  # (batch, {sum(inputs.values())}): {' + '.join(configs)} concatenated
predictions = model.decode(model(features=features))  # [[{{"emotion": "ang", "salience": 70.0}}, ...], ...]
```"""


def save_head(model, folder: Path, report: dict, table_text: str) -> Path:
    """``save_pretrained`` plus the card and report."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    write_text_atomically(folder / "heads_report.json", json_text(report))
    (folder / "README.md").write_text(_model_card(report, table_text))
    return folder


#: What ``blemore ensemble`` reads from a heads run folder (written by ``run_heads_pipeline``).
OOF_PROBABILITIES_FILE = "oof_probabilities.csv"
TEST_PROBABILITIES_FILE = "test_probabilities.csv"


def write_run_probabilities(output: Path, table: FeatureTable, cv: CrossValidation,
                            test_probabilities: np.ndarray | None) -> dict[str, str]:
    """The inputs of a later late fusion (``blemore ensemble``), beside the model: the out-of-fold probabilities of
    every labelled training clip with its outcome (the numbers of ``cv/fold*/validation_probabilities.csv`` in one
    file, with the truth the ensemble checks against the dataset) and the test fit's test probabilities."""
    from blemore_toolkit.evaluation.probabilities import write_probabilities

    output.mkdir(parents=True, exist_ok=True)
    rows = cv.oof_mask
    written = {"oof": str(write_probabilities(output / OOF_PROBABILITIES_FILE,
                                              [c for c, keep in zip(table.clip_ids, rows) if keep],
                                              cv.oof_probabilities[rows], table.outcome[rows]))}
    if test_probabilities is not None:
        test_rows = table.split == "test"
        written["test"] = str(write_probabilities(output / TEST_PROBABILITIES_FILE,
                                                  [c for c, keep in zip(table.clip_ids, test_rows) if keep],
                                                  test_probabilities))
    return written


def _provenance(dataset_dir: Path, names: Sequence[str]) -> dict:
    return {n: json.loads((dataset_dir / FEATURES_DIR / n / PROVENANCE_FILE).read_text()) for n in names}


def run_heads_pipeline(
    dataset_dir: str | os.PathLike,
    names: Sequence[str],
    settings: HeadSettings,
    *,
    output: str | os.PathLike | None = None,
    late_fusion: bool = False,
    submission: str | os.PathLike | None = None,
    push_to_hub: str | None = None,
    hub_endpoint: str | None = None,
    cv_only: bool = False,
    progress: bool = True,
    recipe: HeadRecipe | None = None,
) -> dict:
    """CV table and outputs, test fit, saved model(s), optional submission and push. Returns the report."""
    dataset_dir = Path(dataset_dir)
    names = sorted(names)  # the order BlemoreConfig keeps feature inputs in (see load_feature_table)
    training = settings.training
    recipe = _resolve_recipe(settings, recipe)
    if settings.method == "subsampling" and recipe is not STATISTICS_RECIPE:
        raise BlemoreError(f"--head {settings.head} reads whole per-window sequences; --method subsampling is for "
                           "the statistics heads")
    table = recipe.load(dataset_dir, names)
    groups = [[n] for n in names] if late_fusion else [list(names)]
    if settings.method == "subsampling":
        designs = [subsampling_design(dataset_dir, table, g) for g in groups]
    else:
        designs = [recipe.design(table, g) for g in groups]
    fusion = "late (probabilities averaged)" if late_fusion and len(names) > 1 else "early (concatenation)"
    if settings.head in SEQUENCE_HEADS and not (late_fusion and len(names) > 1):
        fusion = "one sequence model over every config's windows"
    cv = cross_validate(table, settings, groups, progress=progress, designs=designs, recipe=recipe)
    title = (f"{settings.head} on {' + '.join(names)} ({fusion}, {settings.method}, protocol {training.name}), "
             f"{cv.seconds:.1f} s")
    table_text = format_table(cv, title)
    print(table_text)
    thresholds, choice = test_fit_thresholds(cv, training)
    test_epochs = training.test_fit_epochs or training.epochs_for(settings.method)
    output = Path(output or f"heads-{settings.head}-{'-'.join(names)}")
    test_fit = {"alpha": float(thresholds[0]), "beta": float(thresholds[1]), "choice": choice,
                "epochs": test_epochs, "trained": not cv_only}
    cv_dir = write_cv_outputs(cv, table, output, settings, {"feature_configs": list(names), "fusion": fusion,
                                                            "test_fit": test_fit})
    report = {
        "head": settings.head, "feature_configs": list(names), "fusion": fusion, "protocol": training.name,
        "method": settings.method, "settings": settings.as_dict(), "cv_folds": cv.folds,
        "cv_summary": cv.summary(), "cv_pooled": cv.pooled, "cv_seconds": cv.seconds, "cv_dir": str(cv_dir),
        "thresholds": list(thresholds), "threshold_choice": choice, "test_fit_epochs": test_epochs,
        "feature_provenance": _provenance(dataset_dir, names),
    }
    if cv_only:
        report["probability_files"] = write_run_probabilities(output, table, cv, None)
        return report
    models = fit_final(table, settings, groups, thresholds, designs, recipe=recipe)
    folders = []
    for group, model in zip(groups, models):
        folder = output / group[0] if late_fusion and len(groups) > 1 else output
        save_head(model, folder, {**report, "model_feature_sizes": dict(model.config.feature_sizes)}, table_text)
        folders.append(folder)
    report["model_folders"] = [str(f) for f in folders]
    if late_fusion and len(groups) > 1:
        write_text_atomically(output / "late_fusion.json", json_text(
            {"members": [str(f.relative_to(output)) for f in folders], "thresholds": list(thresholds),
             "rule": "average the members' softmax probabilities, then decode with the thresholds"}))
    test_rows = table.split == "test"
    probs = None
    if test_rows.any():
        probs = sum(clip_probabilities(recipe.logits(m, d.x), d.clip, len(table.clip_ids))
                    for d, m in zip(designs, models)) / len(models)
        probs = probs[test_rows]
    report["probability_files"] = write_run_probabilities(output, table, cv, probs)
    if submission is not None:
        if probs is None:
            raise BlemoreError(f"{dataset_dir}: the feature configs hold no test clips to predict")
        from blemore_toolkit.modeling.decoding_blemore import decode

        predictions = decode(probs, "thresholds", presence_threshold=thresholds[0], salience_threshold=thresholds[1])
        from blemore_toolkit.evaluation.submission import write_submission

        clip_ids = [c for c, keep in zip(table.clip_ids, test_rows) if keep]
        report["submission"] = str(write_submission(dict(zip(clip_ids, predictions)), submission))
    if push_to_hub:
        from blemore_toolkit.data.hub import push_model_folder

        if len(folders) > 1:
            raise BlemoreError("--push-to-hub pushes one model; with --late-fusion push each member folder with "
                               "`blemore push`")
        commit = push_model_folder(folders[0], push_to_hub, endpoint=hub_endpoint)
        report["pushed"] = {"repo": push_to_hub, "commit": getattr(commit, "oid", None)}
    for folder in folders:
        sizes = json.loads((folder / "config.json").read_text())["feature_sizes"]
        write_text_atomically(folder / "heads_report.json", json_text({**report, "model_feature_sizes": sizes}))
    return report


__all__ = [
    "CrossValidation", "Design", "FeatureTable", "FittedHead", "HEADS", "HeadRecipe", "HeadSettings",
    "OOF_PROBABILITIES_FILE", "SEQUENCE_HEADS", "STATISTICS_RECIPE", "TEST_PROBABILITIES_FILE", "Validation",
    "aggregation_design", "best_fold", "clip_probabilities", "cross_validate", "fit_final", "fit_head",
    "format_table", "head_config", "load_feature_table", "per_feature_standardisation", "predict_logits",
    "predict_probabilities", "run_heads_pipeline", "standardisation", "subsampling_design", "test_fit_thresholds",
    "train_head", "write_cv_outputs", "write_run_probabilities",
]
