"""``blemore heads FEATURE_CONFIG... --dataset DATASET --head mlp512``: the paper's heads on encoder features.

The protocol of the organisers' baselines, in one command: per-clip feature vectors (``blemore features``), one or
more encoders early-fused by concatenation (or late-fused by averaging the heads' probabilities), standardisation
fitted on the training folds only, the soft-label KL objective, 5-fold cross-validation over the actor-disjoint
folds with the presence/salience thresholds α/β tuned on each validation fold (``tuning.tune_thresholds``), a
mean ± std table, and finally the test fit on all five training folds.

Heads (``--head``):

* ``linear``, ``mlp256``, ``mlp512`` — the paper's: a linear map, or one hidden layer of 256/512 units (GELU), on
  the concatenated, standardised features (one feature input; configs concatenated in alphabetical order);
* ``concat``, ``gated``, ``cross_attention`` — the model's fusion heads with one feature input per feature config
  (each projected to ``--hidden`` units, then fused; see ``modeling.BlemoreConfig.fusion``);
* ``attention_pool``, ``temporal_transformer``, ``cross_modal`` — sequence heads on the stored per-window sequences
  rather than the statistics (``features/sequence_heads.py``; they plug into the CV, test fit and saving here
  through a ``HeadRecipe``: ``sequence_heads.head_recipe(head)`` gives the recipe of any head).

**The saved head is a ``BlemoreForBlendedEmotionRecognition``**: it loads with ``AutoModel.from_pretrained(folder,
trust_remote_code=True)``, takes the raw feature vectors as ``features`` and pushes with ``--push-to-hub`` like any
other BLEMORE model, and it predicts exactly what was validated (the fusion heads are trained as that module; the
paper's heads are trained on the standardised features and written into its layers exactly). Two identities make
the paper's heads fit the model's feature path (``LayerNorm → Linear → GELU`` per input, then fusion and head)
without any change to it:

* *standardisation*: each input's LayerNorm first normalises a clip's vector; its elementwise affine weights are then
  set to ``1/σ`` and ``-μ/σ`` of those normalised vectors over the training rows, and frozen. The Linear layer so
  sees per-feature standardised inputs (the per-clip LayerNorm takes away only one offset and one scale per clip,
  which matters little for 7-statistic vectors);
* *linear*: ``GELU(u) - GELU(-u) = u`` exactly, so a linear head ``W x + b`` is stored as a 12-unit projection with
  weights ``[W; -W]`` and bias ``[b; -b]`` followed by the head ``[I, -I]``. ``mlp256``/``mlp512`` are the
  projection itself with 256/512 units, followed by the linear output layer.

**Why not the Trainer.** A 5-fold CV of an MLP-512 on 2,456 × 14,336 features must take about a minute on two
CPU cores. The whole table fits in memory, so the loop here slices tensors directly (no collation, no dataloader,
no evaluation hooks) and uses fused AdamW and, where the CPU has native support, bfloat16 matmuls
(``--precision auto``; weights and optimiser stay float32). The paper's heads are learned in the span of the
training rows (``training_span``): with more dimensions than clips, a first layer only ever sees that span, so
training on the rows' ≤ N coordinates and mapping the layer back is exact and makes every step ~7× cheaper. The
fusion heads are trained as the model itself (their LayerNorms frozen, so no gradient flows to the inputs).

**α/β of the test fit**: tuned once on the pooled out-of-fold probabilities of all five folds (every training clip,
predicted by a head that never saw its actor). The per-fold optima vary a lot between folds on the real data; one
search on 2,456 clips is steadier than averaging five noisy choices. Both are reported.
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
from blemore_toolkit.evaluation.tuning import outcome_scores, tune_thresholds
from blemore_toolkit.features.extraction import FEATURES_DIR, PROVENANCE_FILE, feature_configs
from metrics.blemore.challenge import METRICS

PAPER_HEADS: dict[str, int | None] = {"linear": None, "mlp256": 256, "mlp512": 512}
FUSION_HEADS: tuple[str, ...] = ("concat", "gated", "cross_attention")
#: Heads on the per-window sequences (``modeling.sequence_heads_blemore.SEQUENCE_HEADS``; a test checks they agree).
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


# ---------------------------------------------------------------------------------------------------------------
# The model: which BlemoreConfig a head is, standardisation folded into the feature LayerNorms
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class HeadSettings:
    """Training settings of a head (defaults: what the benchmark and the recipes use)."""

    head: str = "mlp512"
    hidden: int = 256
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-2
    dropout: float = 0.1
    precision: str = "auto"
    seed: int = 0


def model_inputs(head: str, feature_sizes: dict[str, int]) -> dict[str, int]:
    """The model's ``feature_sizes``: one concatenated input for the paper's heads, one per config for fusion."""
    if head in PAPER_HEADS:
        return {"+".join(feature_sizes): sum(feature_sizes.values())}
    return dict(feature_sizes)


def head_config(settings: HeadSettings, feature_sizes: dict[str, int]):
    """The ``BlemoreConfig`` of a head on features of these sizes (see the module docstring)."""
    from modeling import BlemoreConfig

    inputs = model_inputs(settings.head, feature_sizes)
    if settings.head == "linear":
        return BlemoreConfig(feature_sizes=inputs, fusion="concat", fusion_hidden_size=_LINEAR_WIDTH,
                             head_hidden_sizes=[], dropout=0.0)
    if settings.head in PAPER_HEADS:
        return BlemoreConfig(feature_sizes=inputs, fusion="concat", fusion_hidden_size=PAPER_HEADS[settings.head],
                             head_hidden_sizes=[], dropout=settings.dropout)
    if settings.head not in FUSION_HEADS:
        raise BlemoreError(f"--head {settings.head!r}: expected one of {', '.join(HEADS)}")
    return BlemoreConfig(feature_sizes=inputs, fusion=settings.head, fusion_hidden_size=settings.hidden,
                         head_hidden_sizes=[settings.hidden], dropout=settings.dropout)


def standardisation(values: np.ndarray, eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """LayerNorm weight and bias that standardise the layer-normalised ``values`` (the training rows).

    Dimensions that do not vary over the training rows get weight 0: they carry nothing a head could learn.
    """
    import torch

    normalised = torch.nn.functional.layer_norm(torch.as_tensor(values, dtype=torch.float32), values.shape[1:],
                                                eps=eps).double()
    std, mean = torch.std_mean(normalised, dim=0, correction=0)
    weight = torch.where(std > 1e-6, 1.0 / std.clamp(min=1e-6), torch.zeros_like(std))
    return weight.float().numpy(), (-mean * weight).float().numpy()


def _input_slices(inputs: dict[str, int]) -> dict[str, slice]:
    bounds = np.cumsum([0] + list(inputs.values()))
    return {name: slice(int(bounds[i]), int(bounds[i + 1])) for i, name in enumerate(inputs)}


def _set_standardisation(norms: dict, inputs: dict[str, int], train_x: np.ndarray) -> None:
    """Fit each input's standardisation on ``train_x`` and store it in (and freeze) its LayerNorm."""
    import torch

    for name, part in _input_slices(inputs).items():
        norm = norms[name]
        weight, bias = standardisation(train_x[:, part], norm.eps)
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


def _optimizer(parameters, settings: HeadSettings):
    import torch

    parameters = [p for p in parameters if p.requires_grad]
    try:
        return torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=settings.weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=settings.weight_decay)


def _fit(forward, parameters, train_x, train_y, settings: HeadSettings, seed: int) -> None:
    """Minibatch AdamW on in-memory tensors (or arrays) with the soft-label KL loss."""
    import torch

    # Arrays become one tensor; other inputs (the sequence heads' padded sequences) only need len() and x[index].
    x = torch.as_tensor(train_x) if isinstance(train_x, (np.ndarray, torch.Tensor)) else train_x
    y = torch.as_tensor(train_y)
    optimizer = _optimizer(parameters, settings)
    generator = torch.Generator().manual_seed(seed)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=_use_bfloat16(settings.precision))
    batch = max(1, min(settings.batch_size, len(x)))
    for _ in range(settings.epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch):
            index = order[start:start + batch]
            with autocast:
                logits = forward(x[index])
            loss = soft_kl(logits.float(), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def training_span(z):
    """Coordinates of the training rows in their own span, and the map back to feature space.

    With more feature dimensions D than training clips N (14,336 vs. ~1,965 on BLEMORE), every gradient of a first
    layer ``W`` is a combination of the training rows, so the layer can be learned in the ≤ N-dimensional span of
    those rows. With the Cholesky factor of their Gram matrix, ``Z Zᵀ = L Lᵀ``, the rows have coordinates ``L``
    (row i of L) and a layer ``V`` learned on them is ``W = V L⁻¹ Z`` in feature space: ``W zᵢ = V L⁻¹ Z zᵢ =
    V L⁻¹ L Lᵀ eᵢ = V Lᵀeᵢ``, exactly what training saw. (Rank-deficient rows fall back to an eigendecomposition
    that keeps the non-zero directions.) The part of ``W`` outside the span, which no training row sees, is zero.
    Each step's D × hidden matmuls become N × hidden ones for the price of one Gram matrix per fold.
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


def _fit_paper_head(z, train_y: np.ndarray, settings: HeadSettings, seed: int) -> list:
    """The paper's linear/MLP head on standardised features ``z`` → [(weight, bias), ...] in feature space."""
    import torch
    from torch import nn

    coordinates, to_features = training_span(z)
    hidden = PAPER_HEADS[settings.head]
    torch.manual_seed(seed)
    if hidden is None:
        module = nn.Linear(coordinates.shape[1], len(blemore.EMOTIONS))
        nn.init.zeros_(module.weight)
        nn.init.zeros_(module.bias)
        layers = [module]
    else:
        module = nn.Sequential(nn.Linear(coordinates.shape[1], hidden), nn.GELU(), nn.Dropout(settings.dropout),
                               nn.Linear(hidden, len(blemore.EMOTIONS)))
        layers = [module[0], module[3]]
    module.train()
    _fit(module, module.parameters(), coordinates, train_y, settings, seed)
    with torch.no_grad():
        first = (to_features(layers[0].weight), layers[0].bias.clone())
        return [first] + [(layer.weight.clone(), layer.bias.clone()) for layer in layers[1:]]


def train_head(train_x: np.ndarray, train_y: np.ndarray, feature_sizes: dict[str, int], settings: HeadSettings,
               seed: int = 0):
    """Train a head on (N, ΣD) features and (N, 6) soft targets → an eval-mode ``BlemoreForBlendedEmotionRecognition``.

    Standardisation is fitted on ``train_x`` only and folded into the model (see the module docstring). The paper's
    heads are learned on the standardised features in the span of the training rows (``training_span``) and
    written into the model; the fusion heads are trained as the model itself.
    """
    import torch

    from modeling import BlemoreForBlendedEmotionRecognition

    config = head_config(settings, feature_sizes)
    inputs = dict(config.feature_sizes)
    torch.manual_seed(seed)
    model = BlemoreForBlendedEmotionRecognition(config)
    norms = {name: model.blemore.projections[name].norm for name in inputs}
    _set_standardisation(norms, inputs, train_x)
    if settings.head in PAPER_HEADS:
        (name,) = inputs
        with torch.no_grad():
            z = norms[name](torch.as_tensor(train_x))
        layers = _fit_paper_head(z, train_y, settings, seed)
        _store_paper_head(model, name, layers)
    else:
        model.train()
        _fit(lambda xb: model(features=xb).logits, model.parameters(), train_x, train_y, settings, seed)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model


def _store_paper_head(model, name: str, layers: list) -> None:
    """Write the learned layers into the model's projection and head.

    A linear head ``W z + b`` goes into the 12-unit projection as ``[W; -W]``, ``[b; -b]`` and the head as
    ``[I, -I]``, which is exact because GELU(u) − GELU(−u) = u.
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


def predict_probabilities(model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """(N, ΣD) raw features → (N, 6) emotion probabilities (float32 inference, exactly as the saved model)."""
    import torch

    outputs = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            logits = model(features=torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size]))).logits
            outputs.append(logits.softmax(-1).double().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, len(blemore.EMOTIONS)))


@dataclasses.dataclass(frozen=True)
class HeadRecipe:
    """How one kind of head reads its inputs, trains and predicts; the CV, test fit and saving below are shared.

    ``inputs(table, group)`` returns the rows' inputs of a config group, indexable by a row mask (an array for the
    statistics heads, padded sequences for the sequence heads).
    """

    load: Callable[..., FeatureTable]
    inputs: Callable[[FeatureTable, Sequence[str]], object]
    train: Callable[..., object]
    predict: Callable[[object, object], np.ndarray]


def _statistics_inputs(table: FeatureTable, group: Sequence[str]) -> np.ndarray:
    return table.matrix(group)


#: The paper's and the fusion heads: one vector of statistics per clip and config.
STATISTICS_RECIPE = HeadRecipe(load_feature_table, _statistics_inputs, train_head, predict_probabilities)


def _resolve_recipe(settings: HeadSettings, recipe: HeadRecipe | None) -> HeadRecipe:
    if recipe is not None:
        return recipe
    if settings.head in SEQUENCE_HEADS:
        raise BlemoreError(f"--head {settings.head} is a sequence head: pass its recipe "
                           "(blemore_toolkit.features.sequence_heads.head_recipe(head))")
    return STATISTICS_RECIPE


# ---------------------------------------------------------------------------------------------------------------
# Cross-validation and the test fit
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class CrossValidation:
    """Per-fold results (α/β tuned on each validation fold), out-of-fold probabilities and the pooled choice."""

    folds: list[dict]
    oof_probabilities: np.ndarray
    oof_mask: np.ndarray
    pooled: dict
    seconds: float

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
                   progress: bool = False, recipe: HeadRecipe | None = None) -> CrossValidation:
    """5-fold CV over the ``fold`` column of the labelled training rows.

    ``groups``: feature-config groups whose heads are trained separately and whose probabilities are averaged
    (late fusion); default one group with every config (early fusion). ``recipe``: how the head reads, trains and
    predicts (default: the statistics heads; see ``HeadRecipe``).
    """
    from tqdm.auto import tqdm

    start_time = time.perf_counter()
    groups = [list(g) for g in (groups or [list(table.features)])]
    labelled = _labelled_train(table)
    folds = sorted(set(table.fold[labelled].tolist()))
    if len(folds) < 2:
        raise BlemoreError(f"cross-validation needs labelled training clips in at least two folds, found {folds}")
    probabilities = np.zeros((len(table.clip_ids), len(blemore.EMOTIONS)))
    recipe = _resolve_recipe(settings, recipe)
    matrices = [recipe.inputs(table, group) for group in groups]
    results = []
    for fold in tqdm(folds, desc=f"cv {settings.head}", unit="fold", disable=not progress):
        train_rows, valid_rows = labelled & (table.fold != fold), labelled & (table.fold == fold)
        fold_probs = np.zeros((int(valid_rows.sum()), len(blemore.EMOTIONS)))
        for group, x in zip(groups, matrices):
            sizes = {n: table.feature_sizes[n] for n in group}
            model = recipe.train(x[train_rows], table.soft_target[train_rows], sizes, settings,
                                 seed=settings.seed + fold)
            fold_probs += recipe.predict(model, x[valid_rows]) / len(groups)
        probabilities[valid_rows] = fold_probs
        search = tune_thresholds(fold_probs, table.outcome[valid_rows])
        results.append({"fold": int(fold), "n_clips": int(valid_rows.sum()), **search.as_dict()})
    pooled_search = tune_thresholds(probabilities[labelled], table.outcome[labelled])
    from modeling.decoding_blemore import threshold_outcomes

    for result in results:  # each fold decoded with the one pooled α/β: no fold tunes on its own clips
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
    return CrossValidation(results, probabilities, labelled, pooled, time.perf_counter() - start_time)


def format_table(cv: CrossValidation, title: str = "") -> str:
    """The per-fold rows and the mean ± std row as a plain-text table."""
    lines = [title] if title else []
    lines.append(f"{'fold':>6} {'clips':>6} {'α':>5} {'β':>5} " + " ".join(f"{m:>13}" for m in METRICS))
    for row in cv.folds:
        lines.append(f"{row['fold']:>6} {row['n_clips']:>6} {row['presence_threshold']:>5.2f} "
                     f"{row['salience_threshold']:>5.2f} " + " ".join(f"{row[m]:>13.4f}" for m in METRICS))
    summary = cv.summary()
    lines.append(f"{'mean':>6} {'':>6} {'':>5} {'':>5} "
                 + " ".join(f"{summary[m]['mean']:>6.4f}±{summary[m]['std']:<6.4f}" for m in METRICS))
    p = cv.pooled
    lines.append(f"pooled out-of-fold, one α/β for all folds: α={p['presence_threshold']:.2f} "
                 f"β={p['salience_threshold']:.2f} acc_presence={p['acc_presence']:.4f} "
                 f"acc_salience={p['acc_salience']:.4f} score={p['score']:.4f}")
    return "\n".join(lines)


def fit_final(table: FeatureTable, settings: HeadSettings, groups: Sequence[Sequence[str]], thresholds: tuple,
              recipe: HeadRecipe | None = None):
    """Heads trained on every labelled training clip, their decoding thresholds set to ``thresholds`` (α, β)."""
    labelled = _labelled_train(table)
    recipe = _resolve_recipe(settings, recipe)
    models = []
    for group in groups:
        sizes = {n: table.feature_sizes[n] for n in group}
        model = recipe.train(recipe.inputs(table, group)[labelled], table.soft_target[labelled], sizes, settings,
                             seed=settings.seed + 100)
        model.config.presence_threshold, model.config.salience_threshold = map(float, thresholds)
        model.config.decoder = "thresholds"
        models.append(model)
    return models


# ---------------------------------------------------------------------------------------------------------------
# Saving: the model folder (weights, remote code, card, report) and the submission
# ---------------------------------------------------------------------------------------------------------------


def _model_card(report: dict, table_text: str) -> str:
    configs = report["feature_configs"]
    inputs = report["model_feature_sizes"]
    return f"""---
library_name: transformers
tags:
- blemore
- emotion-recognition
- blended-emotions
---
# BLEMORE {report['head']} head on {', '.join(configs)}

{_card_inputs(report, configs, inputs)}

Decoding thresholds: α = {report['thresholds'][0]:.2f}, β = {report['thresholds'][1]:.2f}
({report['threshold_choice']}).

## 5-fold cross-validation (actor-disjoint folds, α/β tuned per validation fold)

```
{table_text}
```

Feature provenance and training settings: `heads_report.json`.
"""


def _card_inputs(report: dict, configs: list[str], inputs: dict) -> str:
    if report["head"] in SEQUENCE_HEADS:
        return f"""A `BlemoreForBlendedEmotionRecognition` with a `{report['head']}` sequence head, trained by
`blemore heads` on the per-window sequences that `blemore features` stores (`sequence` column), soft-label KL
objective, per-window standardisation fitted on the training folds and stored in the model. Sequence inputs
(`config.feature_sizes`, window widths): {inputs}.

```python
from transformers import AutoModel, AutoProcessor

model = AutoModel.from_pretrained("PATH_OR_REPO", trust_remote_code=True)
processor = AutoProcessor.from_pretrained("PATH_OR_REPO", trust_remote_code=True)  # pads the windows
clips = [{{name: row_sequence[name] for name in model.config.feature_sizes}}]  # (windows, width) per input
predictions = model.decode(model(**processor(clips)))  # features + feature_masks
```"""
    return f"""A `BlemoreForBlendedEmotionRecognition` trained by `blemore heads` on precomputed encoder features
(the seven per-clip statistics of `blemore features`), soft-label KL objective, standardisation fitted on the
training folds and stored in the model. Feature inputs (`config.feature_sizes`): {inputs}.

```python
import torch
from transformers import AutoModel

model = AutoModel.from_pretrained("PATH_OR_REPO", trust_remote_code=True)
features = torch.tensor(rows["features"])  # (batch, {sum(inputs.values())}): {' + '.join(configs)} concatenated
predictions = model.decode(model(features=features))  # [[{{"emotion": "ang", "salience": 70.0}}, ...], ...]
```"""


def save_head(model, folder: Path, report: dict, table_text: str) -> Path:
    """``save_pretrained`` plus the card and report."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    (folder / "heads_report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (folder / "README.md").write_text(_model_card(report, table_text))
    return folder


#: What ``blemore ensemble`` reads from a heads run folder (written by ``run_heads_pipeline``).
OOF_PROBABILITIES_FILE = "oof_probabilities.csv"
TEST_PROBABILITIES_FILE = "test_probabilities.csv"


def write_run_probabilities(output: Path, table: FeatureTable, cv: CrossValidation,
                            test_probabilities: np.ndarray | None) -> dict[str, str]:
    """The out-of-fold probabilities of every labelled training clip (with its outcome) and the test fit's test
    probabilities, beside the model: the inputs of a later late fusion (``blemore ensemble``)."""
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
    """CV table, test fit, saved model(s), optional submission and push. Returns the report (also saved)."""
    dataset_dir = Path(dataset_dir)
    names = sorted(names)  # the order BlemoreConfig keeps feature inputs in (see load_feature_table)
    recipe = _resolve_recipe(settings, recipe)
    table = recipe.load(dataset_dir, names)
    groups = [[n] for n in names] if late_fusion else [list(names)]
    fusion = "late (probabilities averaged)" if late_fusion and len(names) > 1 else "early (concatenation)"
    if settings.head in SEQUENCE_HEADS and not (late_fusion and len(names) > 1):
        fusion = "one sequence model over every config's windows"
    cv = cross_validate(table, settings, groups, progress=progress, recipe=recipe)
    title = f"{settings.head} on {' + '.join(names)} ({fusion}), {cv.seconds:.1f} s"
    table_text = format_table(cv, title)
    print(table_text)
    thresholds = (cv.pooled["presence_threshold"], cv.pooled["salience_threshold"])
    report = {
        "head": settings.head, "feature_configs": list(names), "fusion": fusion,
        "settings": dataclasses.asdict(settings), "cv_folds": cv.folds, "cv_summary": cv.summary(),
        "cv_pooled": cv.pooled, "cv_seconds": cv.seconds, "thresholds": list(thresholds),
        "threshold_choice": "tuned on the pooled out-of-fold probabilities of the five folds",
        "feature_provenance": _provenance(dataset_dir, names),
    }
    if cv_only:
        return report
    output = Path(output or f"heads-{settings.head}-{'-'.join(names)}")
    models = fit_final(table, settings, groups, thresholds, recipe=recipe)
    folders = []
    for group, model in zip(groups, models):
        folder = output / group[0] if late_fusion and len(groups) > 1 else output
        save_head(model, folder, {**report, "model_feature_sizes": dict(model.config.feature_sizes)}, table_text)
        folders.append(folder)
    report["model_folders"] = [str(f) for f in folders]
    if late_fusion and len(groups) > 1:
        (output / "late_fusion.json").write_text(json.dumps(
            {"members": [str(f.relative_to(output)) for f in folders], "thresholds": list(thresholds),
             "rule": "average the members' softmax probabilities, then decode with the thresholds"}, indent=2))
    test_rows = table.split == "test"
    probs = None
    if test_rows.any():
        probs = sum(recipe.predict(m, recipe.inputs(table, g)[test_rows]) for g, m in zip(groups, models))
        probs = probs / len(models)
    report["probability_files"] = write_run_probabilities(output, table, cv, probs)
    if submission is not None:
        if probs is None:
            raise BlemoreError(f"{dataset_dir}: the feature configs hold no test clips to predict")
        from modeling.decoding_blemore import decode

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
        (folder / "heads_report.json").write_text(json.dumps({**report, "model_feature_sizes":
                                                              json.loads((folder / "config.json").read_text())
                                                              ["feature_sizes"]}, indent=2, default=str) + "\n")
    return report


__all__ = [
    "CrossValidation", "FeatureTable", "HEADS", "HeadRecipe", "HeadSettings", "SEQUENCE_HEADS", "cross_validate",
    "STATISTICS_RECIPE", "fit_final", "format_table", "head_config", "load_feature_table", "predict_probabilities",
    "run_heads_pipeline", "standardisation", "train_head", "write_run_probabilities",
]
