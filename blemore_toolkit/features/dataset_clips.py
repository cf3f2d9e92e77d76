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
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from blemore import BlemoreError

#: clip id → (split, fold, outcome); fold and outcome -1 where unknown (test clips).
ClipLabels = dict[str, tuple[str, int, int]]


def read_dataset_labels(dataset_dir: str | os.PathLike) -> ClipLabels:
    """clip → (split, fold, outcome) from a prepared dataset's ``data/`` (fold and outcome -1 where unknown)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted((Path(dataset_dir) / "data").glob("*.parquet"))
    if not files:
        raise BlemoreError(f"{dataset_dir}: no data/*.parquet files (give the folder written by `blemore prepare`)")
    try:
        table = pa.concat_tables([pq.read_table(f, columns=["clip_id", "split", "fold", "outcome"]) for f in files])
    except (pa.ArrowException, OSError) as error:
        raise BlemoreError(f"{dataset_dir}: cannot read the clips' split, fold and outcome from data/*.parquet "
                           f"({' '.join(str(error).split())[:200]})") from None
    columns = (table[c].to_pylist() for c in ("clip_id", "split", "fold", "outcome"))
    return {clip: (split, -1 if fold is None else int(fold), -1 if outcome is None else int(outcome))
            for clip, split, fold, outcome in zip(*columns)}


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


__all__ = ["ClipLabels", "check_feature_clips", "clips_record", "read_dataset_labels"]
