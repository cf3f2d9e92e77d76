"""``blemore ensemble RUN_DIR... --dataset DATASET``: late fusion of several heads' or models' probabilities.

A late fusion of twelve encoders' heads placed in the FG 2026 challenge's top ten (test 0.391 presence / 0.168
salience). This command fuses any runs that left out-of-fold probabilities behind:

* a ``blemore heads`` output folder (``oof_probabilities.csv``, ``test_probabilities.csv``);
* a ``blemore train`` run folder (``fold*/validation_probabilities.csv``; test probabilities from
  ``blemore predict OUTPUT/final/model DATASET --output-dir OUTPUT/test``, read from ``test/probabilities.csv``).

The fused probabilities are a weighted average of the members' emotion probabilities, ``p = Σ_m w_m p_m`` with
``w_m ≥ 0`` and ``Σ w_m = 1``, the weights minimising the soft-label cross-entropy (the KL objective the heads are
trained with) on the pooled out-of-fold predictions (exponentiated-gradient descent on the simplex; the objective
is convex in ``w``, so the optimum is unique up to ties). Then:

* **reported figure, nested**: for each fold k, the weights are fitted on the other four folds' clips, the decoder's
  parameters are tuned on those clips' fused probabilities, and fold k is decoded with both; the five folds pooled
  give the ensemble's score without any of its clips having tuned anything that scores them. Each member is put
  through the same nested decoding (weights fixed to that member), so the figures compare like with like;
* **decoding**: α/β thresholds or expected-score decoding, whichever has the better nested score
  (``evaluation.decoder_choice``), both reported;
* **test submission**: weights and the chosen decoder's parameters fitted on all out-of-fold clips, applied to the
  weighted average of the members' test probabilities.

Folds and true outcomes come from DATASET (its ``data/`` parquet files), so every member is checked against the same
labels and clips.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

import blemore
from blemore import BlemoreError
from blemore_toolkit.data.atomic import write_text_atomically
from blemore_toolkit.evaluation.decoder_choice import choose_decoder, nested_decoding_fixed
from blemore_toolkit.evaluation.probabilities import read_probabilities
from blemore_toolkit.evaluation.scoring import json_text
from blemore_toolkit.features.dataset_clips import DatasetLabels, read_dataset_label_table, read_dataset_labels
from blemore_toolkit.features.heads import OOF_PROBABILITIES_FILE, TEST_PROBABILITIES_FILE

TARGETS = np.array([blemore.soft_target(o.emotions, o.salience) for o in blemore.OUTCOMES])
ENSEMBLE_REPORT = "ensemble.json"


class _ClipKeys:
    """The clip ids of one file as one Arrow string array (about 20 bytes a clip, where a list of Python strings
    costs about 80); the clip → row dict is built only if a single clip is looked up by name."""

    def __init__(self, clip_ids: Sequence[str]):
        import pyarrow as pa

        self._arrow = pa.array(clip_ids, pa.string())
        self._index: dict[str, int] | None = None

    @property
    def clip_ids(self) -> list[str]:
        return self._arrow.to_pylist()

    def __len__(self) -> int:
        return len(self._arrow)

    @property
    def index(self) -> dict[str, int]:
        if self._index is None:
            self._index = dict(zip(self.clip_ids, range(len(self))))
        return self._index

    def rows(self, clips: Sequence[str]) -> np.ndarray:
        """The row of each of ``clips`` (KeyError naming the first it lacks), found by Arrow's hash join: no Python
        dict of a million clips."""
        import pyarrow as pa
        import pyarrow.compute as pc

        found = pc.index_in(pa.array(clips, pa.string()), value_set=self._arrow)
        if found.null_count:
            raise KeyError(clips[int(np.argmax(found.is_null().to_numpy(zero_copy_only=False)))])
        rows = found.to_numpy(zero_copy_only=False).astype(np.int64)
        del found
        pa.default_memory_pool().release_unused()  # the join's hash table, kept by the allocator otherwise
        return rows


class ClipRows(Mapping):
    """Rows of one array by clip (the clip ids beside the array): what a ``dict`` of per-clip arrays would hold,
    without an array object per clip or, unless a single clip is looked up by name, a dict of the clips (a million
    clips cost tens, not hundreds, of MB)."""

    def __init__(self, clip_ids: Sequence[str], values: np.ndarray, keys: _ClipKeys | None = None):
        """``keys``: those of another ``ClipRows`` over the same clips, shared instead of rebuilt."""
        self.values = values
        self.keys_ = _ClipKeys(clip_ids) if keys is None else keys

    def __getitem__(self, clip: str):
        return self.values[self.keys_.index[clip]]

    def __iter__(self):
        return iter(self.keys_.clip_ids)

    def __len__(self) -> int:
        return len(self.keys_)

    def take(self, clips: Sequence[str]) -> np.ndarray:
        """The rows of ``clips``, in that order, as one array."""
        return self.values[self.keys_.rows(clips)]


@dataclasses.dataclass
class Member:
    """One run's out-of-fold and (optional) test probabilities, keyed by clip."""

    name: str
    oof: Mapping[str, np.ndarray]
    test: Mapping[str, np.ndarray] | None
    oof_truth: Mapping[str, int]


def _take(rows: Mapping[str, np.ndarray], clips: Sequence[str]) -> np.ndarray:
    if isinstance(rows, ClipRows):
        return rows.take(clips)
    return np.stack([rows[c] for c in clips])


def _read_parts(paths: Sequence[Path]) -> tuple[ClipRows, Mapping[str, int]]:
    """Probabilities files (``read_probabilities`` refuses anything but finite, normalised rows), one set of rows;
    a clip in two of them is refused."""
    ids: list[str] = []
    values, truths = [], []
    for path in paths:
        clip_ids, probabilities, truth = read_probabilities(path)
        if ids:
            seen = set(ids)
            twice = next((clip for clip in clip_ids if clip in seen), None)
            if twice is not None:
                raise BlemoreError(f"{path}: clip {twice} is also in another fold's validation file")
        ids += clip_ids
        values.append(probabilities)
        truths.append(truth)
    rows = ClipRows(ids, np.concatenate(values))
    if any(t is None for t in truths):
        return rows, {}
    return rows, ClipRows(ids, np.concatenate(truths), keys=rows.keys_)


def load_member(run_dir: str | os.PathLike) -> Member:
    """The probabilities a ``blemore heads`` or ``blemore train`` run left behind (see the module docstring)."""
    run_dir = Path(run_dir)
    if (run_dir / OOF_PROBABILITIES_FILE).is_file():
        oof, truth = _read_parts([run_dir / OOF_PROBABILITIES_FILE])
    else:
        fold_files = sorted(run_dir.glob("fold*/validation_probabilities.csv"))
        if not fold_files:
            raise BlemoreError(f"{run_dir}: no {OOF_PROBABILITIES_FILE} (a `blemore heads` output folder) and no "
                               "fold*/validation_probabilities.csv (a `blemore train --fold all` run)")
        oof, truth = _read_parts(fold_files)
    test = None
    for candidate in (run_dir / TEST_PROBABILITIES_FILE, run_dir / "test" / "probabilities.csv"):
        if candidate.is_file():
            test = _read_parts([candidate])[0]
            break
    return Member(str(run_dir), oof, test, truth)


def _fold_outcome(labels: Mapping[str, tuple[str, int, int]], clips: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(fold, outcome) of each clip as int64 arrays, -1 where unknown or not in ``labels``."""
    if isinstance(labels, DatasetLabels):
        return labels.fold_outcome(clips)
    rows = [labels.get(clip, ("", -1, -1)) for clip in clips]
    return (np.array([row[1] for row in rows], dtype=np.int64).reshape(-1),
            np.array([row[2] for row in rows], dtype=np.int64).reshape(-1))


def _truth(oof_truth: Mapping[str, int], clips: Sequence[str]) -> np.ndarray:
    """A member's own outcome of each clip (-1 where its files carry none)."""
    if isinstance(oof_truth, ClipRows):
        return oof_truth.take(clips).astype(np.int64)
    return np.array([int(oof_truth.get(clip, -1)) for clip in clips], dtype=np.int64).reshape(-1)


def fit_weights(member_probabilities: np.ndarray, targets: np.ndarray, steps: int = 2000,
                step_size: float = 1.0, tolerance: float = 1e-12) -> np.ndarray:
    """Simplex weights minimising the soft-label cross-entropy of ``Σ_m w_m p_m``.

    ``member_probabilities``: (members, clips, 6); ``targets``: (clips, 6). Exponentiated gradient (mirror descent
    on the simplex) keeps the weights non-negative and summing to 1 at every step; it stops after ``steps`` steps
    or once no weight moves by more than ``tolerance``. A soft target holds at most two emotions, so only those two
    columns of each clip enter the cross-entropy: the descent works on (members, clips, 2), a third of the data.
    """
    count, clips = member_probabilities.shape[:2]
    weights = np.full(count, 1.0 / count)
    if count == 1 or clips == 0:
        return weights
    columns = np.argsort(-targets, axis=1, kind="stable")[:, :2]  # the (at most two) emotions of each target
    target = np.take_along_axis(targets, columns, axis=1).reshape(-1)  # (clips * 2,)
    probabilities = np.clip(np.take_along_axis(member_probabilities, columns[None], axis=2), 1e-9, None)
    probabilities = probabilities.reshape(count, -1)  # (members, clips * 2)
    for _ in range(steps):
        gradient = -(probabilities @ (target / (weights @ probabilities))) / clips
        updated = weights * np.exp(-step_size * (gradient - gradient.min()))
        updated /= updated.sum()
        converged = np.abs(updated - weights).max() <= tolerance
        weights = updated
        if converged:
            break
    return weights


def fuse(weights: np.ndarray, member_probabilities: np.ndarray) -> np.ndarray:
    return np.einsum("m,mne->ne", weights, member_probabilities)


@dataclasses.dataclass
class EnsembleResult:
    report: dict
    weights: np.ndarray
    decoding: dict
    test_clip_ids: list[str] | None
    test_probabilities: np.ndarray | None


def ensemble(members: Sequence[Member], labels: dict[str, tuple[str, int, int]]) -> EnsembleResult:
    """Weights, nested figures, decoder choice and the fused test probabilities of these members."""
    if not members:
        raise BlemoreError("blemore ensemble needs at least one run folder")
    names = [m.name for m in members]
    clips = sorted(members[0].oof)
    for member in members:
        if member is not members[0] and sorted(member.oof) != clips:  # (no sets of a million clips unless needed)
            extra = set(member.oof) ^ set(clips)
            raise BlemoreError(f"{member.name}: out-of-fold clips differ from {names[0]}'s (e.g. {sorted(extra)[0]}); "
                               "fuse runs made on the same dataset and folds")
    folds, outcomes = _fold_outcome(labels, clips)
    unlabelled = (folds < 0) | (outcomes < 0)
    for member in members:
        truth = _truth(member.oof_truth, clips)
        wrong = unlabelled | ((truth >= 0) & (truth != outcomes))
        if wrong.any():
            first = int(np.argmax(wrong))
            clip = clips[first]
            if unlabelled[first]:
                raise BlemoreError(f"{member.name}: clip {clip} has no labelled training row in the dataset")
            there, here = (blemore.OUTCOME_NAMES[int(o)] for o in (truth[first], outcomes[first]))
            raise BlemoreError(f"{member.name}: clip {clip} is labelled {there} there but {here} in the dataset")
    stacked = np.stack([_take(m.oof, clips) for m in members])  # (members, clips, 6)
    targets = TARGETS[outcomes]
    fold_ids = sorted(set(folds.tolist()))
    if len(fold_ids) < 2:
        raise BlemoreError(f"nested cross-validation of the weights needs at least two folds, found {fold_ids}")

    fold_weights = {k: fit_weights(stacked[:, folds != k], targets[folds != k]) for k in fold_ids}
    decoding = choose_decoder(lambda k: fuse(fold_weights[k], stacked), fuse(fit_weights(stacked, targets), stacked),
                              outcomes, folds)
    weights = fit_weights(stacked, targets)
    members_nested = {}
    for index, name in enumerate(names):
        nested = nested_decoding_fixed(decoding["chosen"], stacked[index], outcomes, folds)
        members_nested[name] = nested.pooled
    chosen_nested = decoding["nested"][decoding["chosen"]]
    report = {
        "members": names,
        "weights": dict(zip(names, weights.tolist())),
        "fold_weights": {str(k): dict(zip(names, w.tolist())) for k, w in fold_weights.items()},
        "n_clips": len(clips),
        "decoder": decoding["chosen"],
        "decoding_parameters": decoding["parameters"],
        "decoder_choice": decoding,
        "nested": {"folds": chosen_nested["folds"], "pooled": chosen_nested["pooled"]},
        "members_nested": members_nested,
        "rule": "weighted average of the members' emotion probabilities, weights non-negative summing to 1 fitted "
                "by soft-label cross-entropy on the pooled out-of-fold probabilities; reported figures nested (weights"
                " and decoder parameters tuned without the fold they score)",
    }
    test_ids = test_probabilities = None
    if all(m.test is not None for m in members):
        test_ids = sorted(members[0].test)
        for member in members[1:]:
            extra = set(member.test) ^ set(test_ids)
            if extra:
                raise BlemoreError(f"{member.name}: test clips differ from {names[0]}'s (e.g. {sorted(extra)[0]})")
        test_probabilities = fuse(weights, np.stack([_take(m.test, test_ids) for m in members]))
    return EnsembleResult(report, weights, decoding["parameters"], test_ids, test_probabilities)


def format_report(report: dict) -> str:
    lines = [f"{'member':<40} {'weight':>7} {'presence':>9} {'salience':>9} {'score':>7}  (nested, "
             f"{report['decoder']} decoding)"]
    for name in report["members"]:
        figures = report["members_nested"][name]
        lines.append(f"{Path(name).name[-40:]:<40} {report['weights'][name]:>7.3f} {figures['acc_presence']:>9.4f} "
                     f"{figures['acc_salience']:>9.4f} {figures['score']:>7.4f}")
    pooled = report["nested"]["pooled"]
    lines.append(f"{'ensemble':<40} {'':>7} {pooled['acc_presence']:>9.4f} {pooled['acc_salience']:>9.4f} "
                 f"{pooled['score']:>7.4f}")
    for name, nested in report["decoder_choice"]["nested"].items():
        lines.append(f"decoder {name}: nested score {nested['pooled']['score']:.4f}"
                     + ("  ← chosen" if name == report["decoder"] else ""))
    lines.append(f"test parameters: {report['decoding_parameters']}")
    return "\n".join(lines)


def run_ensemble(run_dirs: Sequence[str | os.PathLike], dataset_dir: str | os.PathLike, *,
                 output: str | os.PathLike | None = None, submission: str | os.PathLike | None = None) -> dict:
    """Fuse the runs, print the table, write the report (and the submission). Returns the report."""
    members = [load_member(run_dir) for run_dir in run_dirs]
    labels = read_dataset_label_table(dataset_dir)
    result = ensemble(members, labels)
    report = result.report
    print(format_report(report))
    if submission is not None:
        if result.test_probabilities is None:
            missing = [m.name for m in members if m.test is None]
            raise BlemoreError(f"{missing[0]}: no test probabilities ({TEST_PROBABILITIES_FILE}, or test/"
                               "probabilities.csv from `blemore predict`) to fuse for a submission")
        unknown = ~labels.in_split(result.test_clip_ids, "test")
        if unknown.any():
            raise BlemoreError(f"{result.test_clip_ids[int(np.argmax(unknown))]}: not a test clip of {dataset_dir}")
        from blemore_toolkit.evaluation.decoder_choice import decode_in_chunks
        from blemore_toolkit.evaluation.submission import write_submission
        from blemore_toolkit.modeling.decoding_blemore import outcomes_to_predictions

        predictions = outcomes_to_predictions(decode_in_chunks(result.test_probabilities, **result.decoding))
        report["submission"] = str(write_submission(dict(zip(result.test_clip_ids, predictions)), submission))
    if output is not None:
        from blemore_toolkit.evaluation.probabilities import write_probabilities

        output = Path(output)
        output.mkdir(parents=True, exist_ok=True)
        if result.test_probabilities is not None:
            report["test_probabilities"] = str(write_probabilities(output / TEST_PROBABILITIES_FILE,
                                                                   result.test_clip_ids, result.test_probabilities))
        write_text_atomically(output / ENSEMBLE_REPORT, json_text(report))
    return report


__all__ = ["ClipRows", "EnsembleResult", "Member", "ensemble", "fit_weights", "format_report", "fuse", "load_member",
           "read_dataset_label_table", "read_dataset_labels", "run_ensemble"]
