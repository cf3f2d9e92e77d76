"""The inputs of ``blemore heads``: feature configs read into one table, and the rows a head trains on.

``load_feature_table`` reads one or more feature configs of a prepared dataset (``blemore features``) and aligns
them by clip, with each clip's split, fold, outcome and soft target, checked against the dataset's own clips.
A ``Design`` is the rows a head trains and predicts on: one row per clip (``aggregation_design``) or one row per
stored window vector of a clip (``subsampling_design``, clip encoders only).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from blemore import BlemoreError
from blemore_toolkit.features.configs import FEATURES_DIR, PROVENANCE_FILE, feature_configs

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


__all__ = ["Design", "FeatureTable", "aggregation_design", "load_feature_table", "subsampling_design"]
