"""The two protocols of ``blemore features`` and ``blemore heads``, side by side: the paper's and the toolkit's.

``--protocol paper`` reproduces the organisers' baselines point by point (arXiv 2601.13225, sections 4.5–4.7, and
their public baseline code; the facts are restated in the repository's reference/paper_protocol.md), so that a
run on the real data is comparable with Tables 2 and 3. ``--protocol toolkit`` (the default) keeps the same
experiment — frozen encoder, seven statistics, soft-label KL, actor-disjoint 5-fold CV, α/β post-processing — but
trains and selects differently, for the reasons given beside each field below and in docs/recipes.md ("How the
toolkit's protocol differs and why").

Everything either protocol decides is a field of one of the two frozen dataclasses here; the heads and the
feature extraction read them and nothing else, so the two protocols can only differ where this file says so.
"""

from __future__ import annotations

import dataclasses

from blemore import BlemoreError
from blemore_toolkit.evaluation.tuning import PAPER_GRID, TOOLKIT_GRID, ThresholdGrid

PROTOCOLS: tuple[str, ...] = ("toolkit", "paper")
METHODS: tuple[str, ...] = ("aggregation", "subsampling")


@dataclasses.dataclass(frozen=True)
class HeadProtocol:
    """How a head on precomputed features is trained, selected, tuned and refitted."""

    name: str
    #: ``adam``: torch Adam, weight decay as an L2 term added to the gradient (the paper);
    #: ``adamw``: decoupled weight decay (fused AdamW).
    optimizer: str
    lr: float
    weight_decay: float
    batch_size: int
    epochs: int
    #: Batch size and epochs of the subsampling method (every window a training example).
    subsample_batch_size: int
    subsample_epochs: int
    #: Hidden activation of the MLP heads (``relu`` or ``gelu``) and the dropout before the output layer.
    activation: str
    dropout: float
    #: ``pytorch``: every layer keeps torch's default initialisation; ``zero_linear``: a linear head starts at
    #: zero (uniform probabilities), MLPs keep torch's default.
    init: str
    #: ``per_feature``: (x − μ)/σ with μ, σ over the training rows (sklearn's StandardScaler, σ = 0 → 1);
    #: ``per_clip_then_per_feature``: each clip's vector first layer-normalised across its own features.
    standardisation: str
    #: ``best_composite``: every epoch is evaluated on the validation fold (α/β searched there) and the epoch with
    #: the highest composite score (mean of the two accuracies; ties: the earliest) is the fold's result;
    #: ``last``: fixed epochs, the last epoch is the fold's result.
    epoch_selection: str
    grid: ThresholdGrid
    #: Epochs of the test fit on all training clips (None: the CV's epochs).
    test_fit_epochs: int | None
    #: ``best_fold``: decode the test fit with the α/β of the fold with the highest composite score (ties: the
    #: lowest fold id); ``pooled_out_of_fold``: one search on the five folds' out-of-fold probabilities together.
    test_fit_thresholds: str
    #: Learn a wide first layer in the span of the training rows (exact for SGD, not for Adam/AdamW: an
    #: approximation that makes each step ~7× cheaper; see ``head_training.training_span``).
    training_span: bool
    #: ``float32`` or ``auto`` (bfloat16 matmuls where the CPU does them natively).
    precision: str

    def epochs_for(self, method: str) -> int:
        return self.subsample_epochs if method == "subsampling" else self.epochs

    def batch_size_for(self, method: str) -> int:
        return self.subsample_batch_size if method == "subsampling" else self.batch_size

    def as_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["grid"] = {"name": self.grid.name, "presence": list(self.grid.presence),
                        "salience": list(self.grid.salience), "tie_rule": self.grid.tie_rule}
        return data


PAPER_HEADS = HeadProtocol(
    name="paper", optimizer="adam", lr=5e-6, weight_decay=1e-3, batch_size=32, epochs=200,
    subsample_batch_size=512, subsample_epochs=300, activation="relu", dropout=0.0, init="pytorch",
    standardisation="per_feature", epoch_selection="best_composite", grid=PAPER_GRID, test_fit_epochs=100,
    test_fit_thresholds="best_fold", training_span=False, precision="float32",
)

TOOLKIT_HEADS = HeadProtocol(
    # Why it differs: a larger step for 10× fewer epochs keeps a 5-fold CV of an MLP-512 on 14,336 features near a
    # minute on two CPU cores (benchmarks/bench_heads.py); AdamW decouples the decay from the adaptive step;
    # GELU, dropout and the per-clip LayerNorm are the model's own projection, so the head is the model's module;
    # fixed epochs keep the validation fold out of model selection (picking the best of 200 epochs on the clips a
    # fold reports biases its figure upward); pooled α/β are one search on every training clip's out-of-fold
    # probabilities instead of the choice of one fold of ~490 clips.
    name="toolkit", optimizer="adamw", lr=1e-3, weight_decay=1e-2, batch_size=64, epochs=20,
    subsample_batch_size=512, subsample_epochs=20, activation="gelu", dropout=0.1, init="zero_linear",
    standardisation="per_clip_then_per_feature", epoch_selection="last", grid=TOOLKIT_GRID, test_fit_epochs=None,
    test_fit_thresholds="pooled_out_of_fold", training_span=True, precision="auto",
)

HEAD_PROTOCOLS: dict[str, HeadProtocol] = {"paper": PAPER_HEADS, "toolkit": TOOLKIT_HEADS}


@dataclasses.dataclass(frozen=True)
class FeatureProtocol:
    """Which frames and windows ``blemore features`` gives an encoder."""

    name: str
    #: Image (frame-level) encoders: ``every_frame``, or ``fps`` = ``frames_per_second`` frames a second, at most
    #: ``max_frames`` (evenly spread over longer clips).
    image_sampling: str
    frames_per_second: float | None
    max_frames: int | None
    #: Video (clip-level) encoders: windows of ``window`` frames (None: the encoder's ``num_frames``) taken every
    #: ``frame_stride`` frames; windows follow
    #: each other without overlap; ``last_window`` = ``zero_pad`` pads the last, incomplete window with black
    #: (all-zero) frames, ``end_aligned`` ends the last window on the clip's last frame instead.
    window: int | None
    frame_stride: int
    last_window: str
    #: Frames of a converted ImageBind (``blemore convert imagebind``): ``organisers_video`` = the organisers' video
    #: transform (bilinear short-side resize without antialiasing, CLIP mean/std, centre crop; see
    #: ``imagebind_frames.py``), ``processor`` = the folder's image processor (ImageBind's own image transform).
    imagebind_frames: str
    #: The CLIP checkpoint the recipes use for the "CLIP" row.
    clip_encoder: str
    #: Pixels a converted VideoMAEv2 encoder (``blemore convert videomaev2``) sees: ``processor``: RGB through the
    #: folder's video processor (resize, centre crop, ImageNet mean/std); ``bgr_unnormalised``: the organisers'
    #: input (VideoMAEv2_features.py): channels in BGR order as OpenCV delivers them, scaled to [0, 1], resized
    #: bilinearly to the model's square input size with no crop and no mean/std normalisation.
    videomaev2_pixels: str = "processor"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


PAPER_FEATURES = FeatureProtocol(
    imagebind_frames="organisers_video",  # ImageBind_data.py's transform, quirks included
    # window None: the encoder's own clip length, 16 frames for VideoMAEv2 and Video Swin as in the paper
    name="paper", image_sampling="every_frame", frames_per_second=None, max_frames=None, window=None, frame_stride=1,
    last_window="zero_pad", clip_encoder="openai/clip-vit-base-patch32", videomaev2_pixels="bgr_unnormalised",
)

TOOLKIT_FEATURES = FeatureProtocol(
    # ImageBind's frames through its own image transform (imagebind/data.py): antialiased bicubic resizing.
    imagebind_frames="processor",
    # 4 frames/s (≤ 64) costs a fraction of every frame for statistics over a few seconds of acting; a stride of 4
    # lets a 16-frame window see 64 frames (~2.5 s) of motion; an end-aligned last window holds real frames only.
    name="toolkit", image_sampling="fps", frames_per_second=4.0, max_frames=64, window=None, frame_stride=4,
    # RGB and the processor's normalisation: the input the encoder was trained on.
    last_window="end_aligned", clip_encoder="openai/clip-vit-large-patch14", videomaev2_pixels="processor",
)

FEATURE_PROTOCOLS: dict[str, FeatureProtocol] = {"paper": PAPER_FEATURES, "toolkit": TOOLKIT_FEATURES}


def _named(name, kind: type, by_name: dict):
    """A protocol of ``kind`` given by name or as itself; ``BlemoreError`` for anything else."""
    if isinstance(name, kind):
        return name
    if name not in by_name:
        raise BlemoreError(f"--protocol {name!r}: expected one of {', '.join(PROTOCOLS)}")
    return by_name[name]


def head_protocol(name: str | HeadProtocol) -> HeadProtocol:
    return _named(name, HeadProtocol, HEAD_PROTOCOLS)


def feature_protocol(name: str | FeatureProtocol) -> FeatureProtocol:
    return _named(name, FeatureProtocol, FEATURE_PROTOCOLS)


def describe_head_protocols() -> str:
    """A side-by-side text table of the two head protocols (``blemore heads --help`` shows it)."""
    rows = [("optimiser", lambda p: f"{'Adam (L2 decay)' if p.optimizer == 'adam' else 'AdamW'}"),
            ("lr / weight decay", lambda p: f"{p.lr:g} / {p.weight_decay:g}"),
            ("batch / epochs", lambda p: f"{p.batch_size} / {p.epochs}"),
            ("subsampling batch / epochs", lambda p: f"{p.subsample_batch_size} / {p.subsample_epochs}"),
            ("activation / dropout", lambda p: f"{p.activation.upper()} / {p.dropout:g}"),
            ("init", lambda p: p.init),
            ("standardisation", lambda p: p.standardisation),
            ("fold result", lambda p: "best epoch (composite)" if p.epoch_selection == "best_composite"
             else "last epoch"),
            ("α/β grid", lambda p: f"{p.grid.name} ({len(p.grid.presence)}×{len(p.grid.salience)}, "
             f"ties: {'lowest α, β' if p.grid.tie_rule == 'first' else 'nearest (0.15, 0.2)'})"),
            ("test fit", lambda p: f"{p.test_fit_epochs or p.epochs} epochs, "
             f"{'best fold α/β' if p.test_fit_thresholds == 'best_fold' else 'pooled out-of-fold α/β'}"),
            ("span shortcut / precision", lambda p: f"{'yes' if p.training_span else 'no'} / {p.precision}")]
    width = max(len(label) for label, _ in rows)
    lines = [f"{'':<{width}}  {'paper':<34}  toolkit"]
    lines += [f"{label:<{width}}  {f(PAPER_HEADS):<34}  {f(TOOLKIT_HEADS)}" for label, f in rows]
    return "\n".join(lines)


__all__ = [
    "FEATURE_PROTOCOLS", "FeatureProtocol", "HEAD_PROTOCOLS", "HeadProtocol", "METHODS", "PAPER_FEATURES",
    "PAPER_HEADS", "PROTOCOLS", "TOOLKIT_FEATURES", "TOOLKIT_HEADS", "describe_head_protocols", "feature_protocol",
    "head_protocol",
]
