"""Training one head of ``blemore heads`` on feature rows, as its protocol says, and predicting with it.

``HeadSettings`` (a head and its protocol), ``head_config`` (the ``BlemoreConfig`` a head is), the standardisation
stored in the model, the protocol's training loop (``fit_head``: soft-label KL, optional epoch selection on a
validation fold), prediction (``predict_logits``, ``clip_probabilities``) and the ``HeadRecipe`` through which the
cross-validation (``cross_validation.py``) and the pipeline (``heads.py``) train any kind of head.

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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

import blemore
from blemore import BlemoreError
from blemore_toolkit.evaluation.tuning import ThresholdGrid, ThresholdSearch, tune_thresholds
from blemore_toolkit.features.feature_table import Design, FeatureTable, load_feature_table
from blemore_toolkit.features.protocols import METHODS, HeadProtocol, head_protocol

PAPER_HEADS: dict[str, int | None] = {"linear": None, "mlp256": 256, "mlp512": 512}
FUSION_HEADS: tuple[str, ...] = ("concat", "gated", "cross_attention")
#: Heads on the per-window sequences (``modeling/sequence_heads_blemore.py``'s ``SEQUENCE_HEADS``; a test checks
#: they agree).
SEQUENCE_HEADS: tuple[str, ...] = ("attention_pool", "temporal_transformer", "cross_modal")
HEADS: tuple[str, ...] = tuple(PAPER_HEADS) + FUSION_HEADS + SEQUENCE_HEADS
#: Width of the projection that stores a linear head exactly (2 × 6 emotions; see the module docstring).
_LINEAR_WIDTH = 2 * len(blemore.EMOTIONS)


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
    submission of ``cross_validation.py`` and ``heads.py`` are shared by every recipe.

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


__all__ = [
    "FUSION_HEADS", "FittedHead", "HEADS", "HeadRecipe", "HeadSettings", "PAPER_HEADS", "SEQUENCE_HEADS",
    "STATISTICS_RECIPE", "Validation", "clip_probabilities", "fit_head", "finished_head", "head_config",
    "model_inputs", "per_feature_standardisation", "predict_logits", "predict_probabilities", "soft_kl",
    "standardisation", "train_head", "training_span",
]
