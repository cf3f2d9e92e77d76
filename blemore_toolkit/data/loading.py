"""Reading a prepared folder: a split through `datasets.load_dataset`, or its label columns without the media."""

from __future__ import annotations

import os
import re
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


def card_header(dataset_dir: str | os.PathLike) -> dict:
    """The YAML header of a prepared folder's README.md (configs, dataset_info); ``BlemoreError`` naming the file."""
    import yaml

    readme = Path(dataset_dir) / "README.md"
    try:
        text = readme.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise BlemoreError(f"{readme}: cannot read the dataset card ({error})") from None
    if not text.startswith("---\n") or text.count("---\n") < 2:
        raise BlemoreError(f"{readme}: no YAML header; run `blemore prepare RAW OUT` again")
    try:
        header = yaml.safe_load(text.split("---\n", 2)[1]) or {}
    except yaml.YAMLError as error:
        raise BlemoreError(f"{readme}: the YAML header does not parse ({' '.join(str(error).split())})") from None
    return header if isinstance(header, dict) else {}


def card_splits(dataset_dir: str | os.PathLike) -> dict[str, list[str]]:
    """``{config name: [split names]}`` as the folder's card declares them."""
    return {config["config_name"]: [entry["split"] for entry in config.get("data_files", [])]
            for config in card_header(dataset_dir).get("configs", []) if "config_name" in config}


#: Shard file names written by prepare (and features): ``fold0-00001-of-00003.parquet``.
_SHARD_NAME = re.compile(r"^(?P<part>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.parquet$")


def check_against_card(dataset_dir: str | os.PathLike) -> None:
    """Check that every split's files are the ones the card describes; ``BlemoreError`` naming a missing or changed
    shard. (``load_dataset`` would otherwise fail with a split-size mismatch that names no file, or load less.)

    Cheap: file names and sizes only, and a shard's parquet footer where the sizes disagree. The card gives sizes
    per split, not per shard, so a changed shard is narrowed down to the shards of the splits that disagree and of
    no split that agrees (with the fold configs, the shards of one fold).
    """
    folder = Path(dataset_dir)
    header = card_header(folder)
    infos = {info.get("config_name"): info for info in header.get("dataset_info", []) if isinstance(info, dict)}
    agreeing: set[Path] = set()
    disagreeing: list[tuple[str, list[Path], int, int]] = []
    for config in header.get("configs", []):
        sizes = {split.get("name"): split for split in infos.get(config.get("config_name"), {}).get("splits", [])}
        for entry in config.get("data_files", []):
            expected = sizes.get(entry.get("split"))
            patterns = entry.get("path", [])
            patterns = [patterns] if isinstance(patterns, str) else patterns
            where = f"{folder}: the {config.get('config_name')} config's {entry.get('split')} split"
            unmatched = [pattern for pattern in patterns if not any(folder.glob(pattern))]
            if unmatched:
                raise BlemoreError(f"{where}: no shard matches {unmatched[0]} (the card lists its files); the folder "
                                   "is incomplete: prepare it again or copy the missing shards back")
            files = sorted({path for pattern in patterns for path in folder.glob(pattern)})
            missing = _missing_shards(files)
            if missing:
                raise BlemoreError(f"{where}: shard {missing[0]} is missing ({len(missing)} of the split's "
                                   f"{len(missing) + len(files)} shards); prepare the folder again or copy it back")
            if expected is None:
                continue
            found = sum(path.stat().st_size for path in files)
            if found == expected.get("num_bytes"):
                agreeing.update(files)
            else:
                disagreeing.append((where, files, found, expected.get("num_bytes")))
    if disagreeing:
        where, files, found, expected = min(disagreeing, key=lambda item: len(item[1]))
        suspects = [path for path in files if path not in agreeing] or files
        raise BlemoreError(f"{where}: {_changed_shard(suspects)} since the card was written (the split's shards "
                           f"hold {found:,} bytes, the card says {expected:,}); prepare the folder again")


def _missing_shards(files: list[Path]) -> list[str]:
    """Shards absent from a ``-NNNNN-of-MMMMM`` series (their names), e.g. ``data/fold0-00001-of-00003.parquet``."""
    series: dict[tuple[Path, str, int], set[int]] = {}
    for path in files:
        match = _SHARD_NAME.match(path.name)
        if match:
            series.setdefault((path.parent, match["part"], int(match["count"])), set()).add(int(match["index"]))
    return [str(parent.name + "/" + f"{part}-{index:05d}-of-{count:05d}.parquet")
            for (parent, part, count), present in sorted(series.items()) for index in range(count)
            if index not in present]


def _changed_shard(files: list[Path]) -> str:
    """Which shard differs: the first that is not a readable parquet file, else all of the split's, by name."""
    import pyarrow.parquet as pq

    for path in files:
        try:
            pq.read_metadata(path)
        except (OSError, ValueError) as error:  # pyarrow: ArrowInvalid (a ValueError) or OSError for a damaged footer
            return f"shard {path.parent.name}/{path.name} is damaged ({' '.join(str(error).split())[:120]})"
    names = ", ".join(f"{p.parent.name}/{p.name}" for p in files[:4]) + (" ..." if len(files) > 4 else "")
    return f"a shard was changed or replaced ({names})"


def load_split(dataset_dir: str, config_name: str, split: str, only_this_split: bool = False):
    """One split of a prepared folder through ``datasets.load_dataset``, after checking the folder against its card:
    a config or split the folder does not have, or a shard missing or changed, is one line naming it.

    ``datasets`` converts what it loads into a copy in its cache (``HF_DATASETS_CACHE``), by default every split of
    the config. With ``only_this_split`` (prediction, which reads one split once) only this split's shards are read
    and copied; ``cache_copy`` says where the copy is and how big.
    """
    import datasets

    path = Path(dataset_dir)
    if not (path / "README.md").is_file() or not (path / "data").is_dir():
        raise BlemoreError(f"{path}: not a prepared dataset folder (run `blemore prepare RAW {path}` first)")
    splits = card_splits(path)
    if config_name not in splits:
        raise BlemoreError(f"{path}: no dataset config {config_name!r} (the card lists: {', '.join(splits)})")
    if split not in splits[config_name]:
        raise BlemoreError(f"{path}: the {config_name} config has no {split!r} split (it has: "
                           f"{', '.join(splits[config_name])})")
    check_against_card(path)
    if not only_this_split:
        return datasets.load_dataset(str(path), config_name, split=split)
    config = next(c for c in card_header(path)["configs"] if c.get("config_name") == config_name)
    patterns = next(e for e in config.get("data_files", []) if e.get("split") == split).get("path", [])
    patterns = [patterns] if isinstance(patterns, str) else patterns
    files = sorted({str(file) for pattern in patterns for file in path.glob(pattern)})
    # the parquet files carry the dataset's features (Video, Audio, ClassLabel) in their schema metadata
    return datasets.load_dataset("parquet", data_files={split: files}, split=split)


def cache_copy(split) -> tuple[str, int] | None:
    """Where ``datasets`` keeps the copy of a loaded split (its cache folder) and its size in bytes; ``None`` when
    the split is not backed by cache files (in memory)."""
    files = [entry["filename"] for entry in getattr(split, "cache_files", []) or []]
    if not files:
        return None
    return os.path.dirname(files[0]), sum(os.path.getsize(name) for name in files if os.path.exists(name))
