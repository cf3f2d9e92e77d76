"""The dataset card: `dataset_card.md` completed with configs, features, split sizes and statistics from the data."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from blemore import (
    _CITATION,
    BLEND_PAIRS,
    EMOTION_NAMES,
    EMOTIONS,
    SALIENCE_LEVELS,
    SPLITS,
    BlemoreError,
    DownloadScan,
    config_names,
    config_splits,
    dataset_features,
    is_test_clip,
)
from blemore_toolkit.data.atomic import write_text_atomically
from blemore_toolkit.data.loading import read_label_table

#: The template: the repository's top-level `dataset_card.md`, shipped in the package as `data/dataset_card.md` (a link
#: to it in the repository, a copy in a wheel), so an installed toolkit prepares datasets without a checkout.
DATASET_CARD_TEMPLATE = Path(__file__).resolve().parent / "dataset_card.md"
# ---------------------------------------------------------------------------------------------------------------
# The dataset card: YAML header (configs, features) + `dataset_card.md` with statistics computed from the data
# ---------------------------------------------------------------------------------------------------------------



def dataset_statistics(table) -> dict:
    """Counts the card reports: clips per split/fold/emotion/blend/salience, actors, durations, formats."""
    labelled = table[table["emotions"].map(len) > 0]
    singles = labelled[labelled["emotions"].map(len) == 1]
    blends = labelled[labelled["emotions"].map(len) == 2]
    train = table[table["split"] == "train"]
    return {
        "clips": len(table),
        "clips_per_split": table["split"].value_counts().to_dict(),
        "actors_per_split": {s: int(g["actor_id"].nunique()) for s, g in table.groupby("split")},
        "anonymised_test_clips": int(table["clip_id"].map(is_test_clip).sum()),
        "folds": {int(k): {"clips": len(g), "actors": int(g["actor_id"].nunique())}
                  for k, g in train.groupby("fold")},
        "single": {e: int((singles["emotions"] == (e,)).sum()) for e in EMOTIONS},
        "blend": {f"{a}+{b}": {f"{s1}/{s2}": int(((blends["emotions"] == (a, b))
                                                 & (blends["salience"] == (s1, s2))).sum())
                               for s1, s2 in SALIENCE_LEVELS} for a, b in BLEND_PAIRS},
        "num_single": len(singles),
        "num_blend": len(blends),
        "num_blend_equal": int((blends["salience"] == (50, 50)).sum()),
        "duration_s": {k: round(float(getattr(table["duration_s"], k)()), 2)
                       for k in ("min", "median", "mean", "max")},
        "fps": sorted({round(float(x), 2) for x in table["fps"]}),
        "resolutions": sorted({f"{w}x{h}" for w, h in zip(table["width"], table["height"])}),
    }


def _markdown_table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def _statistics_markdown(stats: dict) -> str:
    splits = _markdown_table(
        ["split", "clips", "actors"],
        [(s, stats["clips_per_split"].get(s, 0), stats["actors_per_split"].get(s, 0)) for s in SPLITS],
    )
    folds = _markdown_table(["fold", "clips", "actors"],
                            [(k, v["clips"], v["actors"]) for k, v in sorted(stats["folds"].items())])
    singles = _markdown_table(["emotion", "code", "clips"],
                              [(EMOTION_NAMES[e], e, n) for e, n in stats["single"].items()])
    blends = _markdown_table(
        ["pair"] + [f"{a}/{b}" for a, b in SALIENCE_LEVELS],
        [(pair, *counts.values()) for pair, counts in stats["blend"].items()],
    )
    d = stats["duration_s"]
    return "\n\n".join([
        f"{stats['clips']} clips: {stats['num_single']} single-emotion and {stats['num_blend']} blended "
        f"({stats['num_blend_equal']} at 50/50) among the labelled ones; {stats['anonymised_test_clips']} "
        "anonymised, unlabelled test clips.",
        "**Splits**\n\n" + splits,
        "**Validation folds** (actor-disjoint, inside train)\n\n" + folds,
        "**Single emotions**\n\n" + singles,
        "**Blends** (first/second emotion salience, percent)\n\n" + blends,
        f"**Media**: durations {d['min']}–{d['max']} s (median {d['median']} s); frame rates "
        f"{', '.join(map(str, stats['fps']))}; resolutions {', '.join(stats['resolutions'])}; audio 16 kHz mono.",
    ])


def _card_configs(parts: set[str]) -> list[dict]:
    configs = []
    for name in config_names():
        data_files = [
            {"split": split, "path": [f"data/{part}-*.parquet" for part in members if part in parts]}
            for split, members in config_splits(name).items()
        ]
        data_files = [entry for entry in data_files if entry["path"]]
        if name != "default" and not any(entry["split"] == "validation" for entry in data_files):
            continue  # a fold with no clips (a partial download) gets no config
        config = {"config_name": name, "data_files": data_files}
        configs.append({**config, "default": True} if name == "default" else config)
    return configs


def _size_category(count: int) -> str:
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if count < bound:
            return name
    return "100K<n<1M"


def config_info(dataset_dir: Path, config: dict, features: list) -> dict:
    """A config's ``dataset_info`` entry: its features, and the clips and bytes of each split's parquet files.

    ``config`` is its ``configs`` entry (``data_files`` patterns relative to ``dataset_dir``). Besides telling the
    Hub viewer how big each split is, the sizes make ``load_dataset``'s cache follow the folder's contents:
    ``datasets`` keys its cache of a local folder by its name and this header only, so without them a re-prepared
    folder, a re-extracted features config, or another folder of the same name would load the old cached data.
    Sizes are not a content hash: two versions with the same clips and the same byte counts (e.g. features of the
    same shape recomputed with other values) still share a cache entry.
    """
    import pyarrow.parquet as pq

    splits = []
    for entry in config["data_files"]:
        files = sorted({path for pattern in entry["path"] for path in dataset_dir.glob(pattern)})
        splits.append({"name": entry["split"], "num_bytes": sum(path.stat().st_size for path in files),
                       "num_examples": sum(pq.ParquetFile(path).metadata.num_rows for path in files)})
    total = sum(split["num_bytes"] for split in splits)
    return {"config_name": config["config_name"], "features": features, "splits": splits,
            "download_size": total, "dataset_size": total}


def split_card(text: str, where: str | os.PathLike) -> tuple[dict, str]:
    """A card's YAML header (as a dict) and its Markdown body; ``BlemoreError`` naming ``where`` without a header."""
    import yaml

    if not text.startswith("---\n") or text.count("---\n") < 2:
        raise BlemoreError(f"{where}: no YAML header; run `blemore prepare RAW OUT` again")
    _, header, body = text.split("---\n", 2)
    return yaml.safe_load(header) or {}, body


def join_card(metadata: dict, body: str) -> str:
    """The card text of a YAML header and a body (the inverse of ``split_card``)."""
    import yaml

    return "---\n" + yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True, width=1000) + "---\n" + body


def render_dataset_card(stats: dict, configs: list[dict], scan_notes: Sequence[str], synthetic: bool,
                        dataset_dir: Path | None = None, video: dict | None = None, features=None) -> str:
    """``dataset_card.md`` with its YAML header completed (configs, features, sizes) and the statistics filled in.

    With ``dataset_dir`` (the folder the configs' data files are in), each config's ``dataset_info`` also gives the
    clips and bytes of every split (``config_info``). ``video`` says how the videos were re-encoded by
    ``blemore prepare --video-size`` (``short_side``, ``originals``), ``features`` the folder's features when they
    are not the dataset's own (an ``original_video`` column).
    """
    metadata, body = split_card(DATASET_CARD_TEMPLATE.read_text(), DATASET_CARD_TEMPLATE)
    features = (dataset_features() if features is None else features)._to_yaml_list()
    metadata["size_categories"] = [_size_category(stats["clips"])]
    metadata["configs"] = configs
    metadata["dataset_info"] = [config_info(dataset_dir, c, features) if dataset_dir else
                                {"config_name": c["config_name"], "features": features} for c in configs]
    provenance = ("This folder was prepared from **synthetic** clips written by `blemore synth`: their picture and "
                  "sound encode the labels; they are not the BLEMORE recordings."
                  if synthetic else "This folder was prepared from the BLEMORE download.")
    if video:
        metadata["blemore_video"] = video
        scan_notes = [*scan_notes, f"videos re-encoded for training: short side {video['short_side']} px, aspect "
                      f"kept, H.264 CRF 18; originals {video['originals']}"]
    notes = "\n".join(f"- {markdown_text(note)}" for note in scan_notes) or "- none"
    body = (body.replace("{{provenance}}", provenance)
            .replace("{{statistics}}", _statistics_markdown(stats))
            .replace("{{prepare_notes}}", notes)
            .replace("{{citation}}", _CITATION.strip()))
    return join_card(metadata, body)


#: Characters that Markdown (or the HTML it may hold) gives a meaning: escaped in text that comes from the data.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")


def markdown_text(text: str) -> str:
    """``text`` (a file name, a CSV cell) as literal Markdown: HTML (``<img onerror=...>``) shows as text, and no
    link, image, emphasis or table syntax takes effect; one line."""
    text = " ".join(str(text).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def public_notes(notes: Sequence[str], root: Path) -> list[str]:
    """Prepare's notes as the card shows them: paths inside the download written relative to it (``RAW/...``), so
    that the published card records no local folder names."""
    prefixes = sorted({str(root), os.path.abspath(root), str(Path(root).resolve())}, key=len, reverse=True)
    public = []
    for note in notes:
        for prefix in prefixes:
            note = note.replace(prefix + os.sep, "RAW/").replace(prefix, "RAW")
        public.append(note)
    return public


def write_dataset_card(dataset_dir: Path, scan: DownloadScan, video: dict | None = None, features=None) -> None:
    table = read_label_table(dataset_dir)
    parts = {p.name.split("-", 1)[0] for p in (dataset_dir / "data").glob("*.parquet")}
    card = render_dataset_card(dataset_statistics(table), _card_configs(parts), public_notes(scan.notes, scan.root),
                               scan.synthetic, dataset_dir, video, features)
    write_text_atomically(dataset_dir / "README.md", card)  # a link at README.md is replaced, never written through


