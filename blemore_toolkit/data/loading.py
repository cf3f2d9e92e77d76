"""Reading a prepared folder: a split through `datasets.load_dataset`, or its label columns without the media."""

from __future__ import annotations

import os
from pathlib import Path

from blemore import EMOTIONS, BlemoreError

#: Columns read back (without media) to compute the card's statistics.
_STATISTICS_COLUMNS = ["clip_id", "actor_id", "split", "fold", "emotions", "salience", "duration_s", "fps",
                       "width", "height"]


def read_label_table(dataset_dir: str | os.PathLike):
    """The prepared folder's non-media columns as a pandas DataFrame (emotions as codes), one row per clip."""
    import pyarrow.parquet as pq

    files = sorted((Path(dataset_dir) / "data").glob("*.parquet"))
    if not files:
        raise BlemoreError(f"{dataset_dir}: no data/*.parquet files (is it a folder written by `blemore prepare`?)")
    import pandas as pd

    table = pd.concat([pq.read_table(f, columns=_STATISTICS_COLUMNS).to_pandas() for f in files], ignore_index=True)
    table["emotions"] = table["emotions"].map(lambda ids: tuple(EMOTIONS[i] for i in ids))
    table["salience"] = table["salience"].map(tuple)
    return table


def load_split(dataset_dir: str, config_name: str, split: str):
    import datasets

    path = Path(dataset_dir)
    if not (path / "README.md").is_file() or not (path / "data").is_dir():
        raise BlemoreError(f"{path}: not a prepared dataset folder (run `blemore prepare RAW {path}` first)")
    loaded = datasets.load_dataset(str(path), config_name, split=split)
    return loaded
