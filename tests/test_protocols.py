"""``--protocol paper``: the organisers' protocol point by point, and the selection code both protocols share.

Everything here runs on small synthetic features (numbers made from the soft targets plus noise, stored exactly as
``blemore features`` stores them), so a correct head learns them and a fold or label bug shows up as a score.
The paper's α/β post-processing and grid search are restated below from reference/paper_protocol.md, in plain
Python and independently of the toolkit's vectorised search, and every α/β the toolkit saves is compared with it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import blemore
from blemore_toolkit.evaluation.tuning import PAPER_GRID, TOOLKIT_GRID, tune_thresholds
from blemore_toolkit.features import cross_validation, feature_table, head_training, heads
from blemore_toolkit.features.configs import PROVENANCE_FILE, ExtractionSettings, feature_columns
from blemore_toolkit.features.extraction import PADDING_FRAME, _frame_indices_image, _window_indices, aggregate
from blemore_toolkit.features.protocols import PAPER_FEATURES, PAPER_HEADS, feature_protocol
from blemore_toolkit.modeling.decoding_blemore import OUTCOMES

EMOTIONS = blemore.EMOTIONS
HIDDEN = 4
#: Fast overrides of the paper protocol for the tiny tables here (the protocol's own values are checked below).
QUICK = dict(lr=3e-3, epochs=6)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The heads here are tiny: one thread avoids the spin-waiting of two on a loaded two-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------------------
# The paper's post-processing and grid search, restated from reference/paper_protocol.md
# ---------------------------------------------------------------------------------------------------------------


def paper_decode(p: list[float], alpha: float, beta: float) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """One clip's (emotions, saliences) by the paper's rule, written from its description."""
    order = sorted(range(6), key=lambda i: (-p[i], i))  # top two; equal probabilities keep emotion order
    top, second = order[0], order[1]
    if p[top] < alpha:
        return (EMOTIONS[top],), (100,)
    kept = [i for i in (top, second) if p[i] >= alpha]
    if len(kept) == 1:
        return (EMOTIONS[kept[0]],), (100,)
    neutral = EMOTIONS.index("neu")
    if neutral in kept:
        other = top if second == neutral else second
        return ((EMOTIONS[neutral],), (100,)) if p[neutral] > p[other] else ((EMOTIONS[other],), (100,))
    if abs(p[top] - p[second]) <= beta:
        levels = {top: 50, second: 50}
    else:
        levels = {top: 70, second: 30}
    pair = sorted((top, second))
    return tuple(EMOTIONS[i] for i in pair), tuple(levels[i] for i in pair)


def paper_scores(probs: np.ndarray, truth: np.ndarray, alpha: float, beta: float) -> tuple[float, float]:
    presence, salience, blends = 0, 0, 0
    for p, outcome in zip(probs.tolist(), truth.tolist()):
        emotions, saliences = paper_decode(p, alpha, beta)
        true_emotions, true_saliences = OUTCOMES[outcome]
        presence += set(emotions) == set(true_emotions)
        if len(true_emotions) == 2:
            blends += 1
            salience += dict(zip(emotions, saliences)) == dict(zip(true_emotions, true_saliences))
    return presence / len(truth), (salience / blends if blends else 0.0)


def paper_search(probs: np.ndarray, truth: np.ndarray) -> tuple[float, float, float, float]:
    """α-major loop over linspace(0.05, 0.95, 20)², strictly better only: (α, β, acc_presence, acc_salience)."""
    grid = np.linspace(0.05, 0.95, 20)
    best = None
    for alpha in grid:
        for beta in grid:
            presence, salience = paper_scores(probs, truth, alpha, beta)
            if best is None or 0.5 * presence + 0.5 * salience > 0.5 * best[2] + 0.5 * best[3]:
                best = (float(alpha), float(beta), presence, salience)
    return best


def read_fold_csv(path: Path) -> tuple[list[str], np.ndarray]:
    lines = path.read_text().splitlines()
    assert lines[0] == "clip_id,ang,disg,fea,hap,sad,neu"
    rows = [line.split(",") for line in lines[1:]]
    return [r[0] for r in rows], np.array([[float(v) for v in r[1:]] for r in rows])


# ---------------------------------------------------------------------------------------------------------------
# Synthetic features stored as a features config
# ---------------------------------------------------------------------------------------------------------------


def synthetic_rows(clips_per_fold: int = 24, test_clips: int = 12, seed: int = 0) -> list[dict]:
    """Clips of every outcome; each window = a fixed map of the soft target + noise (3–5 windows a clip)."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((6, HIDDEN))
    rows = []
    for index in range(5 * clips_per_fold + test_clips):
        outcome = int(rng.integers(len(OUTCOMES)))
        emotions, salience = OUTCOMES[outcome]
        target = np.array(blemore.soft_target(emotions, salience), dtype=np.float32)
        windows = (target @ mixing + 0.15 * rng.standard_normal((int(rng.integers(3, 6)), HIDDEN))).astype(np.float32)
        test = index >= 5 * clips_per_fold
        rows.append({"clip_id": f"{'test' if test else 'clip'}_{index:04d}", "split": "test" if test else "train",
                     "fold": None if test else index % 5, "outcome": None if test else outcome,
                     "soft_target": None if test else target.tolist(), "presence": None,
                     "features": aggregate(windows), "sequence": windows, "num_windows": len(windows)})
    return rows


def write_features_config(dataset: Path, name: str, rows: list[dict], kind: str = "video") -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = dataset / "features" / name
    folder.mkdir(parents=True)
    features = feature_columns(HIDDEN)
    records = [features.encode_example(row) for row in rows]
    table = pa.Table.from_pylist(records, schema=features.arrow_schema)
    pq.write_table(table, folder / "train-00000-of-00001.parquet")
    provenance = {"config_name": name, "encoder": "synthetic", "kind": kind}
    (folder / PROVENANCE_FILE).write_text(json.dumps(provenance))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("protocols") / "blemore"
    write_features_config(folder, "synthetic", synthetic_rows())
    return folder


@pytest.fixture(scope="module")
def table(dataset):
    return feature_table.load_feature_table(dataset, ["synthetic"])


@pytest.fixture(scope="module")
def paper_run(dataset, tmp_path_factory):
    output = tmp_path_factory.mktemp("paper") / "head"
    settings = head_training.HeadSettings(head="mlp256", protocol="paper", **QUICK)
    report = heads.run_heads_pipeline(dataset, ["synthetic"], settings, output=output, progress=False)
    return output, report, settings


# ---------------------------------------------------------------------------------------------------------------
# The protocol's values
# ---------------------------------------------------------------------------------------------------------------


def test_the_paper_protocol_holds_the_published_settings():
    p = PAPER_HEADS
    assert (p.optimizer, p.lr, p.weight_decay, p.batch_size, p.epochs) == ("adam", 5e-6, 1e-3, 32, 200)
    assert (p.subsample_batch_size, p.subsample_epochs) == (512, 300)
    assert (p.activation, p.dropout, p.init, p.standardisation) == ("relu", 0.0, "pytorch", "per_feature")
    assert (p.epoch_selection, p.test_fit_epochs, p.test_fit_thresholds) == ("best_composite", 100, "best_fold")
    assert not p.training_span
    assert PAPER_GRID.presence == PAPER_GRID.salience == tuple(np.linspace(0.05, 0.95, 20).tolist())
    assert PAPER_GRID.tie_rule == "first" and max(PAPER_GRID.salience) > 0.5 >= max(TOOLKIT_GRID.salience)
    f = PAPER_FEATURES
    assert (f.image_sampling, f.frames_per_second, f.max_frames) == ("every_frame", None, None)
    assert (f.frame_stride, f.last_window, f.clip_encoder) == (1, "zero_pad", "openai/clip-vit-base-patch32")


def test_the_paper_head_is_adam_with_l2_decay_relu_and_default_init():
    import torch

    settings = head_training.HeadSettings(head="mlp256", protocol="paper")
    config = head_training.head_config(settings, {"x": 10})
    assert (config.projection_activation, config.feature_normalization, config.dropout) == ("relu", "affine", 0.0)
    optimizer = head_training._optimizer([torch.nn.Parameter(torch.ones(2))], settings.training)
    assert type(optimizer) is torch.optim.Adam and optimizer.defaults["weight_decay"] == 1e-3
    assert not optimizer.defaults.get("decoupled_weight_decay", False)
    torch.manual_seed(0)
    module, _ = head_training._paper_head_module(10, None, settings.training)
    assert module.weight.abs().sum() > 0  # torch's default init, not the toolkit's zero start
    toolkit, _ = head_training._paper_head_module(10, None, head_training.HeadSettings(head="linear").training)
    assert toolkit.weight.abs().sum() == 0


# ---------------------------------------------------------------------------------------------------------------
# α/β grids, tie rules and the vectorised search
# ---------------------------------------------------------------------------------------------------------------


def test_each_grid_breaks_a_hand_built_tie_its_own_way():
    # one anger clip at (0.5, 0.3, ...): every α above 0.3 decodes it right (a blend below), whatever β is
    probs = np.array([[0.5, 0.3, 0.2, 0.0, 0.0, 0.0]])
    truth = np.array([blemore.OUTCOME_NAMES.index("ang")])
    paper = tune_thresholds(probs, truth, grid=PAPER_GRID)
    first_alpha = next(a for a in PAPER_GRID.presence if a > 0.3)
    assert (paper.presence_threshold, paper.salience_threshold) == (first_alpha, PAPER_GRID.salience[0])
    assert paper_search(probs, truth)[:2] == (paper.presence_threshold, paper.salience_threshold)
    toolkit = tune_thresholds(probs, truth, grid=TOOLKIT_GRID)
    assert (toolkit.presence_threshold, toolkit.salience_threshold) == (0.31, 0.2)  # nearest (0.15, 0.2)


#: β values of the paper's grid used below; for each, p1 = 2β and p2 = β differ by exactly β in floating point.
EXACT_BETAS = PAPER_GRID.salience[2:6]


def test_the_vectorised_search_reads_a_difference_equal_to_beta_as_50_50():
    rows, truth = [], []
    for k, beta in enumerate(EXACT_BETAS):
        p1, p2 = 2 * beta, beta
        assert p1 - p2 == beta
        a, b = k % 5, (k + 1) % 5
        p = [(1 - p1 - p2) / 4] * 6  # below p2, so the pair (a, b) is the top two
        p[a], p[b] = p1, p2
        rows.append(p)
        pair = tuple(sorted((EMOTIONS[a], EMOTIONS[b]), key=EMOTIONS.index))
        truth.append(OUTCOMES.index((pair, (50, 50))))
    probs, truth = np.array(rows), np.array(truth)
    for k, beta in enumerate(EXACT_BETAS):  # at β = the k-th clip's difference, clips 0..k are 50/50, the rest 70/30
        _, salience = paper_scores(probs, truth, 0.05, beta)
        assert salience == pytest.approx((k + 1) / len(EXACT_BETAS))
        search = tune_thresholds(probs, truth, presence_grid=[0.05], salience_grid=[beta], grid=PAPER_GRID)
        assert search.acc_salience == pytest.approx(salience)
    expected = paper_search(probs, truth)
    search = tune_thresholds(probs, truth, grid=PAPER_GRID)
    assert (search.presence_threshold, search.salience_threshold) == expected[:2]


def test_the_vectorised_paper_search_matches_the_restated_one_on_random_probabilities():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.full(6, 0.6), size=80)
    truth = rng.integers(len(OUTCOMES), size=80)
    search = tune_thresholds(probs, truth, grid=PAPER_GRID)
    alpha, beta, presence, salience = paper_search(probs, truth)
    assert (search.presence_threshold, search.salience_threshold) == (alpha, beta)
    assert (search.acc_presence, search.acc_salience) == pytest.approx((presence, salience))


# ---------------------------------------------------------------------------------------------------------------
# Standardisation, epoch selection, the test fit
# ---------------------------------------------------------------------------------------------------------------


def test_the_paper_standardisation_is_per_feature_on_the_training_rows_only(table):
    import torch

    x = table.matrix()
    train = (table.split == "train") & (table.fold != 0)
    shifted = x.copy()
    shifted[~train] = shifted[~train] * 3 + 5  # other rows must not move the fitted statistics
    model = head_training.train_head(shifted[train], table.soft_target[train], table.feature_sizes,
                                     head_training.HeadSettings(head="linear", protocol="paper", epochs=0))
    norm = model.blemore.projections["synthetic"].norm
    with torch.no_grad():
        z = norm(torch.from_numpy(shifted)).double().numpy()
    mean, std = x[train].astype(np.float64).mean(0), x[train].astype(np.float64).std(0)
    np.testing.assert_allclose(z[train].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z[train].std(0), 1, atol=1e-4)
    np.testing.assert_allclose(z[~train], (shifted[~train] - mean) / std, rtol=1e-4, atol=1e-4)
    one_clip = z[np.flatnonzero(train)[0]]
    assert abs(one_clip.mean()) > 1e-3 or abs(one_clip.std() - 1) > 1e-3  # no per-clip normalisation


def test_the_paper_protocol_keeps_the_best_epoch_by_composite_score(table):
    """The fold's weights are those of its best epoch: the same as a run stopped there."""
    x, train = table.matrix(), (table.split == "train") & (table.fold >= 0) & (table.fold != 1)
    valid = (table.split == "train") & (table.fold == 1)
    rng = np.random.default_rng(0)
    validation = head_training.Validation(x[valid], np.arange(valid.sum()), rng.permutation(table.outcome[valid]),
                                          PAPER_GRID)  # shuffled truth: the best epoch is not simply the last
    settings = head_training.HeadSettings(head="mlp256", protocol="paper", lr=1e-2, epochs=8)
    fitted = head_training.fit_head(x[train], table.soft_target[train], table.feature_sizes, settings, seed=4,
                                    validation=validation)
    scores = fitted.epoch_scores
    assert len(scores) == 8 and fitted.best_epoch == int(np.argmax(scores)) + 1 < 8
    assert head_training._composite(fitted.search) == pytest.approx(scores[fitted.best_epoch - 1], abs=1e-9)
    stopped = head_training.train_head(x[train], table.soft_target[train], table.feature_sizes,
                                       head_training.HeadSettings(head="mlp256", protocol="paper", lr=1e-2,
                                                                  epochs=fitted.best_epoch), seed=4)
    for a, b in zip(fitted.model.state_dict().values(), stopped.state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy())


def test_paper_run_writes_fold_outputs_whose_alpha_beta_are_the_paper_search(paper_run, table):
    output, report, settings = paper_run
    results = json.loads((output / "cv" / "results.json").read_text())
    assert results["protocol"] == "paper" and results["hyperparameters"]["optimizer"] == "adam"
    assert results["hyperparameters"]["lr"] == QUICK["lr"] and results["epochs"] == QUICK["epochs"]
    labelled = (table.split == "train") & (table.fold >= 0)
    for fold in results["folds"]:
        clip_ids, probs = read_fold_csv(output / "cv" / f"fold{fold['fold']}" / "validation_probabilities.csv")
        expected_clips = [c for c, keep in zip(table.clip_ids, labelled & (table.fold == fold["fold"])) if keep]
        assert clip_ids == expected_clips
        truth = np.array([table.outcome[table.clip_ids.index(c)] for c in clip_ids])
        alpha, beta, presence, salience = paper_search(probs, truth)
        assert (fold["alpha"], fold["beta"]) == (alpha, beta)
        assert (fold["acc_presence"], fold["acc_salience"]) == pytest.approx((presence, salience))
        assert 1 <= fold["best_epoch"] <= QUICK["epochs"]
    assert np.mean([f["acc_presence"] for f in results["folds"]]) > 0.5  # it learns the synthetic labels


def test_paper_test_fit_is_100_epochs_on_all_clips_with_the_best_folds_alpha_beta(paper_run, table, dataset):
    output, report, settings = paper_run
    folds = []
    for path in sorted((output / "cv").glob("fold*/validation_probabilities.csv")):
        clip_ids, probs = read_fold_csv(path)
        truth = np.array([table.outcome[table.clip_ids.index(c)] for c in clip_ids])
        alpha, beta, presence, salience = paper_search(probs, truth)
        folds.append((0.5 * presence + 0.5 * salience, alpha, beta))
    best = max(folds, key=lambda f: f[0])  # max keeps the first (lowest fold) of equal scores
    config = json.loads((output / "config.json").read_text())
    assert (config["presence_threshold"], config["salience_threshold"]) == best[1:]
    assert json.loads((output / "cv" / "results.json").read_text())["test_fit"]["epochs"] == 100
    labelled = (table.split == "train") & (table.fold >= 0)
    refit = head_training.fit_head(table.matrix()[labelled], table.soft_target[labelled], table.feature_sizes,
                                   settings, seed=100, epochs=100).model
    from transformers import AutoModelForVideoClassification

    saved = AutoModelForVideoClassification.from_pretrained(output, trust_remote_code=True)
    assert refit.config.projection_activation == "relu"
    for name, value in refit.state_dict().items():  # 100 epochs (the protocol's test fit), every labelled clip
        np.testing.assert_array_equal(saved.state_dict()[name].numpy(), value.numpy(), err_msg=name)


def test_toolkit_test_fit_alpha_beta_are_the_pooled_search_of_the_saved_probabilities(dataset, table, tmp_path):
    settings = head_training.HeadSettings(head="linear", epochs=30, lr=1e-2, precision="float32")
    heads.run_heads_pipeline(dataset, ["synthetic"], settings, output=tmp_path, progress=False)
    probs, truth = [], []
    for path in sorted((tmp_path / "cv").glob("fold*/validation_probabilities.csv")):
        clip_ids, fold_probs = read_fold_csv(path)
        probs.append(fold_probs)
        truth += [table.outcome[table.clip_ids.index(c)] for c in clip_ids]
    search = tune_thresholds(np.concatenate(probs), np.array(truth), grid=TOOLKIT_GRID)
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["presence_threshold"], config["salience_threshold"]) == (search.presence_threshold,
                                                                           search.salience_threshold)


# ---------------------------------------------------------------------------------------------------------------
# Cross-validation never trains a fold's head on the fold's own clips
# ---------------------------------------------------------------------------------------------------------------


def test_each_fold_trains_on_exactly_the_other_folds(table):
    settings = head_training.HeadSettings(head="linear", epochs=2, precision="float32")
    cv = cross_validation.cross_validate(table, settings)
    labelled = (table.split == "train") & (table.fold >= 0)
    for fold, rows in cv.training_clips.items():
        assert set(rows.tolist()) == set(np.flatnonzero(labelled & (table.fold != fold)).tolist())


def test_cross_validation_on_shuffled_labels_scores_near_chance(table):
    """A head that saw a fold's own (shuffled) labels would memorise them; one that did not cannot beat chance."""
    settings = head_training.HeadSettings(head="mlp256", epochs=150, batch_size=512, lr=1e-2, dropout=0.0,
                                          precision="float32")
    real = cross_validation.cross_validate(table, settings).summary()
    rng = np.random.default_rng(1)
    labelled = np.flatnonzero((table.split == "train") & (table.fold >= 0))
    permuted = labelled.copy()
    rng.shuffle(permuted)
    shuffled = table.rows(np.ones(len(table.clip_ids), bool))
    shuffled.outcome[labelled], shuffled.soft_target[labelled] = table.outcome[permuted], table.soft_target[permuted]
    control = cross_validation.cross_validate(shuffled, settings).summary()
    assert real["acc_presence"]["mean"] > 0.6
    assert control["acc_presence"]["mean"] < 0.3 and control["acc_salience"]["mean"] < 0.25


# ---------------------------------------------------------------------------------------------------------------
# Subsampling
# ---------------------------------------------------------------------------------------------------------------


def test_subsampling_averages_window_logits_before_the_softmax():
    logits = np.array([[4.0, 0, 0, 0, 0, 0], [0, 2.0, 0, 0, 0, 0], [0, 0, 1.0, 0, 0, 0]])
    probs = head_training.clip_probabilities(logits, np.array([0, 0, 1]), 2)
    mean = np.array([2.0, 1.0, 0, 0, 0, 0])
    np.testing.assert_allclose(probs[0], np.exp(mean) / np.exp(mean).sum())
    mean_of_softmax = (np.exp(logits[0]) / np.exp(logits[0]).sum() + np.exp(logits[1]) / np.exp(logits[1]).sum()) / 2
    assert not np.allclose(probs[0], mean_of_softmax)


def test_subsampling_trains_on_every_window_with_the_clips_target(dataset, table, tmp_path):
    import torch

    design = feature_table.subsampling_design(dataset, table, ["synthetic"])
    rows = synthetic_rows()
    assert len(design.x) == sum(r["num_windows"] for r in rows)
    by_clip = {r["clip_id"]: r["sequence"] for r in rows}
    for i in (0, 7, len(table.clip_ids) - 1):
        np.testing.assert_array_equal(design.x[design.clip == i], by_clip[table.clip_ids[i]])
    settings = head_training.HeadSettings(head="mlp256", protocol="paper", method="subsampling", lr=1e-2, epochs=40)
    assert (settings.training.epochs_for("subsampling"), settings.training.batch_size_for("subsampling")) == (40, 512)
    assert head_training.HeadSettings(protocol="paper", method="subsampling").training.epochs_for("subsampling") == 300
    report = heads.run_heads_pipeline(dataset, ["synthetic"], settings, output=tmp_path, progress=False,
                                      submission=tmp_path / "submission.json")
    assert np.mean([f["acc_presence"] for f in report["cv_folds"]]) > 0.5
    # standardisation fitted on the training windows (every labelled clip's windows for the test fit)
    labelled = (table.split == "train") & (table.fold >= 0)
    windows = design.x[design.rows_of(labelled)].astype(np.float64)
    from transformers import AutoModelForVideoClassification

    model = AutoModelForVideoClassification.from_pretrained(tmp_path, trust_remote_code=True)
    norm = model.blemore.projections["synthetic"].norm
    np.testing.assert_allclose(norm.weight.detach().numpy(), 1 / windows.std(0), rtol=1e-5)
    # the submission: each test clip from its windows' mean logits
    test = np.flatnonzero(table.split == "test")[0]
    with torch.no_grad():
        logits = model(features=torch.from_numpy(design.x[design.clip == test])).logits.double().numpy()
    from blemore_toolkit.modeling.decoding_blemore import decode

    config = json.loads((tmp_path / "config.json").read_text())
    expected = decode(head_training.clip_probabilities(logits, np.zeros(len(logits), int), 1), "thresholds",
                      presence_threshold=config["presence_threshold"],
                      salience_threshold=config["salience_threshold"])[0]
    submitted = json.loads((tmp_path / "submission.json").read_text())["predictions"][table.clip_ids[test] + ".mov"]
    assert submitted == expected
    # `blemore predict`'s path on the saved model averages the windows the same way
    from blemore_toolkit.training.predict import predict_features

    assert config["feature_method"] == "subsampling"
    result, _ = predict_features(model, str(dataset), "default", "test")
    assert result["clip_ids"][0] == table.clip_ids[test]
    averaged = head_training.clip_probabilities(logits, np.zeros(len(logits), int), 1)[0]
    np.testing.assert_allclose(result["probabilities"][0], averaged, atol=1e-9)


def test_subsampling_needs_a_clip_encoders_windows(tmp_path):
    write_features_config(tmp_path, "frames", synthetic_rows(4, 2), kind="image")
    table = feature_table.load_feature_table(tmp_path, ["frames"])
    with pytest.raises(blemore.BlemoreError, match="clip \\(video\\) encoder"):
        feature_table.subsampling_design(tmp_path, table, ["frames"])


# ---------------------------------------------------------------------------------------------------------------
# Feature sampling: every frame, consecutive zero-padded windows
# ---------------------------------------------------------------------------------------------------------------


def test_paper_sampling_takes_every_frame_of_an_image_encoder():
    settings = ExtractionSettings(encoder="x", kind="image", frames_per_second=None, max_frames=None)
    assert _frame_indices_image(77, 25.0, settings) == list(range(77))
    toolkit = ExtractionSettings(encoder="x", kind="image")
    assert len(_frame_indices_image(77, 25.0, toolkit)) == 12  # 4 frames/s over 3.08 s


def test_paper_windows_are_consecutive_non_overlapping_and_the_last_is_zero_padded():
    protocol = feature_protocol("paper")
    settings = ExtractionSettings(encoder="x", kind="video", window=16, frame_stride=protocol.frame_stride,
                                  last_window=protocol.last_window)
    windows = _window_indices(40, settings)
    assert windows[0] == list(range(16)) and windows[1] == list(range(16, 32))
    assert windows[2] == list(range(32, 40)) + [PADDING_FRAME] * 8
    assert len(_window_indices(32, settings)) == 2  # no padding window when the frames divide evenly
    toolkit = ExtractionSettings(encoder="x", kind="video", window=16, frame_stride=4)
    assert _window_indices(80, toolkit)[-1] == list(range(16, 80, 4))  # end-aligned, every 4th frame


def test_a_zero_padded_window_decodes_to_black_frames(tmp_path):
    """decode_clip on a real clip: whole windows of consecutive frames, then black padding frames."""
    from torchcodec.decoders import VideoDecoder

    from blemore_toolkit.data.synth_encoding import write_clip
    from blemore_toolkit.features.extraction import decode_clip

    path = tmp_path / "A1_ang_int1_ver1.mov"
    write_clip(path, ["ang"], [100], width=32, height=32, fps=25, duration_s=1.0, with_audio=False)
    data = path.read_bytes()
    frames = VideoDecoder(data, dimension_order="NHWC", seek_mode="exact").get_frames_at(indices=list(range(25)))
    settings = ExtractionSettings(encoder="x", kind="video", window=16, frame_stride=1, last_window="zero_pad")
    units = decode_clip({"clip_id": "A1_ang_int1_ver1", "video": {"bytes": data}}, settings)["units"]
    assert [len(w) for w in units] == [16, 16]
    np.testing.assert_array_equal(np.stack(units[1][:9]), frames.data.numpy()[16:25])
    assert all(not frame.any() for frame in units[1][9:]) and all(f.shape == units[0][0].shape for f in units[1])


# ---------------------------------------------------------------------------------------------------------------
# docs/recipes.md quotes Tables 2 and 3 exactly and completely
# ---------------------------------------------------------------------------------------------------------------


def test_the_recipes_quote_every_published_row_exactly():
    import csv

    root = Path(__file__).resolve().parents[1]
    published = list(csv.DictReader((root / "blemore_toolkit" / "reference" / "paper_results.csv").open()))
    text = (root / "docs" / "recipes.md").read_text()
    quoted = {}
    table = None
    for line in text.splitlines():
        if line.startswith("#"):
            table = line.split()[2] if line.startswith("### Table ") else None
        elif table and line.startswith("| ") and not line.startswith("| Row"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            quoted[(table, cells[0])] = (cells[1], cells[2], cells[3])
    assert len(quoted) == len(published)
    def figure(row, key):
        return f"{row[key]} ± {row[key + '_std']}" if row[key + "_std"] else row[key]

    for row in published:
        presence, salience, command = quoted[(row["table"], f"{row['encoder']}, {row['method']}")]
        assert (presence, salience) == (figure(row, "acc_presence"), figure(row, "acc_salience")), row
        if row["method"] != "majority":
            assert "--protocol paper" in command and "--head mlp512" in command
            assert ("--method subsampling" in command) == (row["method"] == "subsampling")
