"""The clips of a prepared dataset folder, and the check that a features config was made from exactly them.

A features config is a folder of files (``features/<name>/``) that can be copied from one dataset folder into
another; read there, it would train and predict on the other dataset's clips and labels. ``blemore features``
therefore records the clips it embedded (their count and a digest of clip, split, fold and outcome) in the config's
``provenance.json``, and everything that reads features (``heads``, ``predict``, ``report --features``) checks the
config's rows against the dataset's own ``data/`` first: one line names the first clip that differs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from blemore import BlemoreError

#: clip id → (split, fold, outcome); fold and outcome -1 where unknown (test clips).
ClipLabels = dict[str, tuple[str, int, int]]


def _read_label_table(dataset_dir: str | os.PathLike):
    """The clip_id, split, fold and outcome columns of a prepared dataset's ``data/*.parquet`` (a pyarrow table)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted((Path(dataset_dir) / "data").glob("*.parquet"))
    if not files:
        raise BlemoreError(f"{dataset_dir}: no data/*.parquet files (give the folder written by `blemore prepare`)")
    try:
        return pa.concat_tables([pq.read_table(f, columns=["clip_id", "split", "fold", "outcome"]) for f in files])
    except (pa.ArrowException, OSError) as error:
        raise BlemoreError(f"{dataset_dir}: cannot read the clips' split, fold and outcome from data/*.parquet "
                           f"({' '.join(str(error).split())[:200]})") from None


def read_dataset_labels(dataset_dir: str | os.PathLike) -> ClipLabels:
    """clip → (split, fold, outcome) from a prepared dataset's ``data/`` (fold and outcome -1 where unknown)."""
    table = _read_label_table(dataset_dir)
    columns = (table[c].to_pylist() for c in ("clip_id", "split", "fold", "outcome"))
    return {clip: (split, -1 if fold is None else int(fold), -1 if outcome is None else int(outcome))
            for clip, split, fold, outcome in zip(*columns)}


class DatasetLabels(Mapping):
    """clip → (split, fold, outcome) like ``read_dataset_labels``, held as columns: the clip ids as one Arrow
    string array, split codes, folds and outcomes as numpy arrays (tens of bytes a clip instead of the hundreds a
    dict of tuples costs), looked up for many clips at once with ``rows``. Single lookups (``labels[clip]``) build
    the dict on first use."""

    def __init__(self, table):
        import pyarrow as pa
        import pyarrow.compute as pc

        self.clip_ids = pc.cast(table["clip_id"], pa.string()).combine_chunks()
        split = pc.dictionary_encode(pc.cast(table["split"], pa.string()).combine_chunks())
        self.split_names = [str(name) for name in split.dictionary.to_pylist()]
        self.split_codes = split.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        self.fold, self.outcome = (table[c].fill_null(-1).to_numpy().astype(np.int64) for c in ("fold", "outcome"))
        self._dict: ClipLabels | None = None

    def rows(self, clips: Sequence[str]) -> np.ndarray:
        """The row of each clip (-1 for a clip the dataset does not hold)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        found = pc.index_in(pa.array(clips, pa.string()), value_set=self.clip_ids)
        rows = found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        del found
        pa.default_memory_pool().release_unused()  # the join's hash table, kept by the allocator otherwise
        return rows

    def fold_outcome(self, clips: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(fold, outcome) of each clip, -1 where unknown or where the dataset does not hold the clip."""
        rows = self.rows(clips)
        held = rows >= 0
        return np.where(held, self.fold[rows], -1), np.where(held, self.outcome[rows], -1)

    def in_split(self, clips: Sequence[str], split: str) -> np.ndarray:
        """True for each clip the dataset holds in ``split``."""
        if split not in self.split_names:
            return np.zeros(len(clips), dtype=bool)
        rows = self.rows(clips)
        return (rows >= 0) & (self.split_codes[rows] == self.split_names.index(split))

    def _as_dict(self) -> ClipLabels:
        if self._dict is None:
            splits = [None if c < 0 else self.split_names[c] for c in self.split_codes.tolist()]
            self._dict = dict(zip(self.clip_ids.to_pylist(), zip(splits, self.fold.tolist(), self.outcome.tolist())))
        return self._dict

    def __getitem__(self, clip: str) -> tuple[str, int, int]:
        return self._as_dict()[clip]

    def __iter__(self):
        return iter(self.clip_ids.to_pylist())

    def __len__(self) -> int:
        return len(self.clip_ids)


def read_dataset_label_table(dataset_dir: str | os.PathLike) -> DatasetLabels:
    """``read_dataset_labels`` as columns (``DatasetLabels``): for a million clips and more."""
    import pyarrow as pa

    labels = DatasetLabels(_read_label_table(dataset_dir))
    pa.default_memory_pool().release_unused()  # the parquet reader's buffers, kept by the allocator otherwise
    return labels


def clips_record(labels: ClipLabels) -> dict:
    """What a features config's provenance records of the clips it was made from: their count and a digest."""
    digest = hashlib.sha256()
    for clip in sorted(labels):
        split, fold, outcome = labels[clip]
        digest.update(f"{clip}\t{split}\t{fold}\t{outcome}\n".encode())
    return {"count": len(labels), "sha256": digest.hexdigest()}


def check_feature_clips(dataset_dir: str | os.PathLike, name: str, clip_ids: Sequence[str], split: np.ndarray,
                        fold: np.ndarray, outcome: np.ndarray, recorded: dict | None = None,
                        labels: ClipLabels | None = None) -> None:
    """``BlemoreError`` naming the first clip where the features config ``name`` and the dataset disagree.

    ``clip_ids``/``split``/``fold``/``outcome`` are the config's rows (fold and outcome -1 where unknown);
    ``recorded`` is the ``clips`` entry of its provenance (configs made before it existed have none); ``labels``
    the dataset's (``read_dataset_labels``), read here when not given. A folder without ``data/*.parquet``
    (features alone) has nothing to check against and passes.
    """
    dataset_dir = Path(dataset_dir)
    if labels is None:
        if not any((dataset_dir / "data").glob("*.parquet")):
            return
        labels = read_dataset_labels(dataset_dir)
    where = f"features config {name!r} in {dataset_dir}"
    fix = "it was made from another dataset or an older copy of this one; extract it again with `blemore features`"
    for index, clip in enumerate(clip_ids):
        known = labels.get(clip)
        if known is None:
            raise BlemoreError(f"{where}: clip {clip} is not in the dataset ({fix})")
        mine = (str(split[index]), int(fold[index]), int(outcome[index]))
        if mine != known:
            field = next(f for f, a, b in zip(("split", "fold", "outcome"), mine, known) if a != b)
            value = dict(zip(("split", "fold", "outcome"), mine))[field]
            expected = dict(zip(("split", "fold", "outcome"), known))[field]
            raise BlemoreError(f"{where}: clip {clip} has {field} {value} there but {expected} in the dataset ({fix})")
    present = set(clip_ids)
    if len(present) != len(clip_ids):
        seen: set[str] = set()
        twice = next(clip for clip in clip_ids if clip in seen or seen.add(clip))
        raise BlemoreError(f"{where}: clip {twice} has two rows ({fix})")
    if len(clip_ids) != len(labels):
        absent = next(clip for clip in labels if clip not in present)
        raise BlemoreError(f"{where}: clip {absent} of the dataset has no features ({len(clip_ids)} of "
                           f"{len(labels)} clips; {fix})")
    if recorded and recorded.get("sha256") not in (None, clips_record(labels)["sha256"]):
        raise BlemoreError(f"{where}: its provenance.json records {recorded.get('count')} clips other than the "
                           f"dataset's ({fix})")


__all__ = ["ClipLabels", "DatasetLabels", "check_feature_clips", "clips_record", "read_dataset_label_table",
           "read_dataset_labels"]
