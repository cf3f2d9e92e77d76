"""BLEMORE: blended emotion expressions with relative salience (arXiv 2601.13225).

This module is the dataset's one source of truth:

* the label schema (emotion codes, blend pairs, salience levels, the 36 outcomes) and the clip-name grammar;
* ``BlemoreBuilder``, a ``datasets.GeneratorBasedBuilder`` that reads the authors' download (or ``blemore synth``);
* ``prepare_dataset``, which turns a download into a portable, Hub-native folder that ``load_dataset`` reads offline;
* ``main``, the ``blemore`` command line, a thin layer over the plain functions here and in ``blemore_toolkit``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib
import importlib.util
import itertools
import math
import os
import re
import shutil
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import datasets

_CITATION = """\
@misc{lachmann2026blemore,
  title         = {Not all Blends are Equal: The {BLEMORE} Dataset of Blended Emotion Expressions with Relative
                   Salience Annotations},
  author        = {Lachmann and others},
  year          = {2026},
  eprint        = {2601.13225},
  archivePrefix = {arXiv},
}
"""

_DESCRIPTION = """\
BLEMORE holds 3,050 acted video clips with audio from 58 actors: six single emotions (anger, disgust, fear,
happiness, sadness at four intensities; neutral in four situations) and the ten pairs of the five non-neutral
emotions blended at 50/50, 70/30 and 30/70 relative salience. The task is to tell which emotions are present in
a clip and, for blends, which one dominates.
"""

_HOMEPAGE = "https://arxiv.org/abs/2601.13225"

_LICENSE = "other"

# ---------------------------------------------------------------------------------------------------------------
# Label schema
# ---------------------------------------------------------------------------------------------------------------

#: The official short codes, in the order used by every vector (presence, soft target, logits).
EMOTIONS: tuple[str, ...] = ("ang", "disg", "fea", "hap", "sad", "neu")
EMOTION_NAMES: dict[str, str] = {
    "ang": "anger",
    "disg": "disgust",
    "fea": "fear",
    "hap": "happiness",
    "sad": "sadness",
    "neu": "neutral",
}
#: Neutral never occurs in a blend.
BLENDABLE_EMOTIONS: tuple[str, ...] = EMOTIONS[:5]
#: The ten pairs, each in the order the clip names use (alphabetical).
BLEND_PAIRS: tuple[tuple[str, str], ...] = tuple(itertools.combinations(BLENDABLE_EMOTIONS, 2))
#: Saliences of (first, second) emotion of a pair, in percent.
SALIENCE_LEVELS: tuple[tuple[int, int], ...] = ((50, 50), (70, 30), (30, 70))
INTENSITY_LEVELS: tuple[int, ...] = (1, 2, 3, 4)
SITUATIONS: tuple[int, ...] = (1, 2, 3, 4)
SPLITS: tuple[str, ...] = ("train", "test")
NUM_FOLDS = 5
VIDEO_EXTENSIONS: tuple[str, ...] = (".mov", ".mp4")
AUDIO_SAMPLING_RATE = 16_000


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One of the 36 mutually exclusive answers: a single emotion, or a pair with its saliences (percent)."""

    emotions: tuple[str, ...]
    salience: tuple[int, ...]

    @property
    def name(self) -> str:
        """``ang`` for a single emotion, ``mix_ang_hap_70_30`` for a blend (the clip-name spelling)."""
        if len(self.emotions) == 1:
            return self.emotions[0]
        return "mix_{}_{}_{}_{}".format(*self.emotions, *self.salience)

    @property
    def is_blend(self) -> bool:
        return len(self.emotions) == 2

    def as_prediction(self) -> list[dict]:
        """The challenge's ``[{"emotion", "salience"}]`` form."""
        return [{"emotion": e, "salience": float(s)} for e, s in zip(self.emotions, self.salience)]


OUTCOMES: tuple[Outcome, ...] = tuple(Outcome((e,), (100,)) for e in EMOTIONS) + tuple(
    Outcome(pair, levels) for pair in BLEND_PAIRS for levels in SALIENCE_LEVELS
)
OUTCOME_NAMES: tuple[str, ...] = tuple(o.name for o in OUTCOMES)
#: The 16 presence outcomes: six single emotions and ten pairs.
PRESENCE_NAMES: tuple[str, ...] = EMOTIONS + tuple(f"{a}+{b}" for a, b in BLEND_PAIRS)


def canonical_label(emotions: Sequence[str], salience: Sequence[float]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Put a label in canonical order (pair order of the clip names) with integer percent saliences."""
    pairs = sorted(zip(emotions, salience), key=lambda item: EMOTIONS.index(item[0]))
    return tuple(e for e, _ in pairs), tuple(int(round(float(s))) for _, s in pairs)


def outcome_index(emotions: Sequence[str], salience: Sequence[float]) -> int:
    """Index into ``OUTCOMES`` of a label given in any order; raises ``ValueError`` for a label outside the 36."""
    key = Outcome(*canonical_label(emotions, salience))
    try:
        return OUTCOMES.index(key)
    except ValueError:
        raise ValueError(
            f"not one of the 36 BLEMORE outcomes: emotions={list(emotions)} salience={list(salience)}") from None


def presence_name(emotions: Sequence[str]) -> str:
    """One of the 16 presence outcomes: ``hap`` or ``ang+hap``."""
    return "+".join(sorted(emotions, key=EMOTIONS.index))


def presence_vector(emotions: Iterable[str]) -> list[float]:
    """Multi-hot over ``EMOTIONS``."""
    present = set(emotions)
    return [1.0 if e in present else 0.0 for e in EMOTIONS]


def soft_target(emotions: Sequence[str], salience: Sequence[float]) -> list[float]:
    """The paper's KL target over ``EMOTIONS``: saliences as proportions (a single emotion gets 1.0)."""
    target = [0.0] * len(EMOTIONS)
    for e, s in zip(emotions, salience):
        target[EMOTIONS.index(e)] = float(s) / 100.0
    return target


# ---------------------------------------------------------------------------------------------------------------
# Clip-name grammar: A102_ang_int1_ver1, A55_neu_sit2_ver1, A411_mix_ang_hap_30_70_ver1, test_0001
# ---------------------------------------------------------------------------------------------------------------

_CODES = "|".join(EMOTIONS)
_LABELLED_NAME = re.compile(
    rf"^(?P<actor>A\d+)_(?:"
    rf"(?P<single>{'|'.join(BLENDABLE_EMOTIONS)})_int(?P<intensity>\d+)"
    rf"|neu_sit(?P<situation>\d+)"
    rf"|mix_(?P<first>{_CODES})_(?P<second>{_CODES})_(?P<s1>\d+)_(?P<s2>\d+)"
    rf")_ver(?P<version>\d+)$"
)
_TEST_NAME = re.compile(r"^test_\d+$")


@dataclasses.dataclass(frozen=True)
class ClipLabel:
    """Everything a labelled clip name says."""

    clip_id: str
    actor_id: str
    emotions: tuple[str, ...]
    salience: tuple[int, ...]
    intensity: int | None
    situation: int | None
    version: int

    @property
    def is_blend(self) -> bool:
        return len(self.emotions) == 2

    @property
    def outcome(self) -> int:
        return outcome_index(self.emotions, self.salience)


def clip_id_from_path(path: str | os.PathLike) -> str:
    """``/x/A102_ang_int1_ver1.mov`` → ``A102_ang_int1_ver1``; also strips a ``.mov``/``.mp4`` suffix from a key."""
    name = os.path.basename(os.fspath(path))
    stem, ext = os.path.splitext(name)
    return stem if ext.lower() in VIDEO_EXTENSIONS else name


def is_test_clip(clip_id: str) -> bool:
    """True for the anonymised, unlabelled test names (``test_0001``)."""
    return bool(_TEST_NAME.match(clip_id))


def parse_clip_name(name: str) -> ClipLabel:
    """Parse a labelled BLEMORE clip name (with or without extension); ``ValueError`` names anything else."""
    clip_id = clip_id_from_path(name)
    match = _LABELLED_NAME.match(clip_id)
    if match is None:
        raise ValueError(f"{name!r} is not a BLEMORE clip name (expected e.g. A102_ang_int1_ver1, "
                         "A55_neu_sit2_ver1 or A411_mix_ang_hap_30_70_ver1)")
    g = match.groupdict()
    intensity = situation = None
    if g["single"]:
        emotions, salience = (g["single"],), (100,)
        intensity = int(g["intensity"])
        if intensity not in INTENSITY_LEVELS:
            raise ValueError(f"{name!r}: intensity int{intensity} is not one of int1-int4")
    elif g["situation"]:
        emotions, salience = ("neu",), (100,)
        situation = int(g["situation"])
        if situation not in SITUATIONS:
            raise ValueError(f"{name!r}: situation sit{situation} is not one of sit1-sit4")
    else:
        emotions, salience = (g["first"], g["second"]), (int(g["s1"]), int(g["s2"]))
        if emotions not in BLEND_PAIRS:
            raise ValueError(f"{name!r}: {emotions[0]}+{emotions[1]} is not one of the ten blend pairs "
                             "(neutral never blends; pairs are written in alphabetical order)")
        if salience not in SALIENCE_LEVELS:
            raise ValueError(f"{name!r}: salience {salience[0]}/{salience[1]} is not 50/50, 70/30 or 30/70")
    return ClipLabel(clip_id, g["actor"], emotions, salience, intensity, situation, int(g["version"]))


# ---------------------------------------------------------------------------------------------------------------
# Errors and shipped reference data
# ---------------------------------------------------------------------------------------------------------------


class BlemoreError(Exception):
    """A problem with the user's input, reported as one line (naming the file or clip) without a traceback."""


def reference_path(name: str) -> Path:
    """A file shipped in ``blemore_toolkit/reference`` (the clip manifest, the challenge's submission template)."""
    package = importlib.util.find_spec("blemore_toolkit")
    return Path(package.origin).parent / "reference" / name


@dataclasses.dataclass(frozen=True)
class ManifestEntry:
    clip_id: str
    split: str
    fold: int | None


def load_manifest(path: str | os.PathLike | None = None) -> dict[str, ManifestEntry]:
    """The 3,050 real clip names with their split and fold, keyed by clip id."""
    path = Path(path) if path is not None else reference_path("blemore_manifest.csv")
    with open(path, newline="") as f:
        return {
            row["filename"]: ManifestEntry(row["filename"], row["split"], int(row["fold"]) if row["fold"] else None)
            for row in csv.DictReader(f)
        }


# ---------------------------------------------------------------------------------------------------------------
# Reading a download: clips anywhere below the folder, the organisers' metadata CSVs where present
# ---------------------------------------------------------------------------------------------------------------

#: Written by `blemore synth` into the download it makes; a download without it is treated as the real dataset.
SYNTHETIC_MARKER = "synthetic.json"
#: The organisers' metadata columns that carry labels.
METADATA_LABEL_COLUMNS = ("emotion_1", "emotion_2", "emotion_1_salience", "emotion_2_salience")
NUM_REAL_TEST_CLIPS = 594


@dataclasses.dataclass(frozen=True)
class RawClip:
    """A clip of the download with everything known about it before its media is read."""

    clip_id: str
    path: Path
    split: str
    fold: int | None
    actor_id: str | None
    emotions: tuple[str, ...]
    salience: tuple[int, ...]
    intensity: int | None = None
    situation: int | None = None
    version: int | None = None

    @property
    def is_labelled(self) -> bool:
        return bool(self.emotions)


@dataclasses.dataclass
class DownloadScan:
    """The clips of a download, and what was noticed while reading it (missing or unexpected clips)."""

    root: Path
    clips: list[RawClip]
    synthetic: bool
    notes: list[str]


def find_clip_files(raw_dir: str | os.PathLike) -> list[Path]:
    """Every .mov/.mp4 below ``raw_dir``, at any depth, skipping hidden files and macOS archive debris."""
    root = Path(raw_dir)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for name in sorted(filenames):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS:
                found.append(Path(dirpath) / name)
    return found


def metadata_cell(row: dict, column: str) -> str | None:
    """A CSV cell as text, ``None`` when empty or a spreadsheet's spelling of missing (``nan``, ``None``)."""
    value = (row.get(column) or "").strip()
    return None if value.lower() in ("", "nan", "none", "null") else value


def _int_cell(row: dict, column: str, where: str) -> int | None:
    value = metadata_cell(row, column)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise BlemoreError(f"{where}: column {column!r} holds {value!r}, not a number") from None
    if not number.is_integer():
        raise BlemoreError(f"{where}: column {column!r} holds {value!r}, not a whole number")
    return int(number)


def read_metadata(raw_dir: str | os.PathLike) -> dict[str, tuple[Path, dict]]:
    """Rows of every metadata CSV (a CSV with a ``filename`` column) below ``raw_dir``, keyed by clip id."""
    rows: dict[str, tuple[Path, dict]] = {}
    for csv_path in sorted(Path(raw_dir).rglob("*.csv")):
        if any(part.startswith(".") or part == "__MACOSX" for part in csv_path.relative_to(raw_dir).parts):
            continue
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if "filename" not in (reader.fieldnames or []):
                continue
            for line_no, row in enumerate(reader, start=2):
                if not metadata_cell(row, "filename"):
                    raise BlemoreError(f"{csv_path}:{line_no}: empty filename")
                clip_id = clip_id_from_path(row["filename"].strip())
                if clip_id in rows and _comparable(rows[clip_id][1]) != _comparable(row):
                    raise BlemoreError(f"{clip_id}: listed differently in {rows[clip_id][0]} and {csv_path}")
                rows.setdefault(clip_id, (csv_path, row))
    return rows


def _comparable(row: dict) -> dict:
    return {k: metadata_cell(row, k) for k in row if k != "filename"}


def _label_from_metadata(clip_id: str, csv_path: Path, row: dict) -> tuple[tuple[str, ...], tuple[int, ...]] | None:
    """``(emotions, salience)`` from an organisers' row, ``None`` when the row carries no label."""
    where = f"{clip_id} ({csv_path.name})"
    first, second = metadata_cell(row, "emotion_1"), metadata_cell(row, "emotion_2")
    if first is None:
        return None
    for code in (first, second):
        if code is not None and code not in EMOTIONS:
            raise BlemoreError(f"{where}: unknown emotion code {code!r} (expected one of {', '.join(EMOTIONS)})")
    mix = _int_cell(row, "mix", where)
    if second is None:
        if mix == 1:
            raise BlemoreError(f"{where}: mix is 1 but emotion_2 is empty")
        return (first,), (100,)
    if mix == 0:
        raise BlemoreError(f"{where}: mix is 0 but emotion_2 is {second!r}")
    s1, s2 = _int_cell(row, "emotion_1_salience", where), _int_cell(row, "emotion_2_salience", where)
    if s1 is None or s2 is None:
        raise BlemoreError(f"{where}: a blend without both saliences")
    emotions, salience = canonical_label((first, second), (s1, s2))
    if Outcome(emotions, salience) not in OUTCOMES:
        raise BlemoreError(f"{where}: {first}/{second} at {s1}/{s2} is not one of the 36 BLEMORE outcomes")
    return emotions, salience


def _clip_from_name_and_metadata(
    clip_id: str, path: Path, meta: tuple[Path, dict] | None, manifest: dict[str, ManifestEntry]
) -> RawClip:
    meta_label = _label_from_metadata(clip_id, *meta) if meta else None
    meta_fold = _int_cell(meta[1], "fold", f"{clip_id} ({meta[0].name})") if meta else None
    if meta_fold is not None and not 0 <= meta_fold < NUM_FOLDS:
        raise BlemoreError(f"{clip_id} ({meta[0].name}): fold {meta_fold} is not one of 0-{NUM_FOLDS - 1}")
    if is_test_clip(clip_id):
        emotions, salience = meta_label or ((), ())
        actor = metadata_cell(meta[1], "video_id") if meta else None
        return RawClip(clip_id, path, "test", None, actor, emotions, salience)

    try:
        label = parse_clip_name(clip_id)
    except ValueError as error:
        raise BlemoreError(f"{path}: {error}") from None
    if meta_label is not None and meta_label != canonical_label(label.emotions, label.salience):
        raise BlemoreError(f"{clip_id}: {meta[0].name} labels it {_describe(*meta_label)} but its name says "
                           f"{_describe(label.emotions, label.salience)}")
    if meta:
        where = f"{clip_id} ({meta[0].name})"
        for column, from_name in (("video_id", label.actor_id), ("version", label.version),
                                  ("intensity_level", label.intensity), ("situation", label.situation)):
            value = metadata_cell(meta[1], column) if column == "video_id" else _int_cell(meta[1], column, where)
            if value is not None and value != from_name:
                raise BlemoreError(f"{where}: {column} is {value} but the clip name says {from_name}")

    listed = manifest.get(clip_id)
    split = listed.split if listed else "train"
    fold = meta_fold if meta_fold is not None else (listed.fold if listed else None)
    if split == "train" and fold is None:
        raise BlemoreError(f"{clip_id}: no fold for this training clip (it is neither in a metadata CSV with a "
                           "fold column nor in the BLEMORE manifest)")
    return RawClip(clip_id, path, split, fold if split == "train" else None, label.actor_id, label.emotions,
                   label.salience, label.intensity, label.situation, label.version)


def _describe(emotions: Sequence[str], salience: Sequence[int]) -> str:
    return "/".join(emotions) + ("" if len(emotions) == 1 else " at " + "/".join(map(str, salience)))


def scan_download(raw_dir: str | os.PathLike, manifest: dict[str, ManifestEntry] | None = None) -> DownloadScan:
    """Find and label every clip of a download; check folds are actor-disjoint; compare with the manifest."""
    root = Path(raw_dir)
    if not root.is_dir():
        raise BlemoreError(f"{root}: no such folder (expected the BLEMORE download or `blemore synth` output)")
    manifest = load_manifest() if manifest is None else manifest
    metadata = read_metadata(root)
    files = find_clip_files(root)
    if not files:
        raise BlemoreError(f"{root}: no .mov or .mp4 clips found below this folder")

    seen: dict[str, Path] = {}
    clips = []
    for path in files:
        clip_id = clip_id_from_path(path)
        if clip_id in seen:
            raise BlemoreError(f"{clip_id}: found twice, at {seen[clip_id]} and {path}")
        seen[clip_id] = path
        clips.append(_clip_from_name_and_metadata(clip_id, path, metadata.get(clip_id), manifest))
    clips.sort(key=lambda c: (c.split != "train", c.fold if c.fold is not None else -1, c.clip_id))

    actor_folds: dict[str, int] = {}
    for clip in clips:
        if clip.fold is not None and actor_folds.setdefault(clip.actor_id, clip.fold) != clip.fold:
            raise BlemoreError(f"{clip.clip_id}: actor {clip.actor_id} is in fold {clip.fold} and in fold "
                               f"{actor_folds[clip.actor_id]}; validation folds must be actor-disjoint")

    synthetic = (root / SYNTHETIC_MARKER).is_file()
    notes = []
    without_video = sorted(set(metadata) - set(seen))
    if without_video:
        notes.append(f"{len(without_video)} clips listed in the metadata have no video file: "
                     + ", ".join(without_video[:5]) + (" ..." if len(without_video) > 5 else ""))
    if not synthetic:
        notes.extend(_compare_with_manifest(clips, manifest))
    return DownloadScan(root, clips, synthetic, notes)


def _compare_with_manifest(clips: list[RawClip], manifest: dict[str, ManifestEntry]) -> list[str]:
    named = {c.clip_id for c in clips if not is_test_clip(c.clip_id)}
    anonymised = sum(1 for c in clips if is_test_clip(c.clip_id))
    expected_named = {k for k, entry in manifest.items() if entry.split == "train" or k in named}
    missing = sorted(expected_named - named)
    unexpected = sorted(named - set(manifest))
    notes = [f"compared with the BLEMORE manifest: {len(named & expected_named)} of {len(expected_named)} named "
             f"clips present, {anonymised} anonymised test clips ({NUM_REAL_TEST_CLIPS} in the release)"]
    if missing:
        notes.append(f"missing {len(missing)} clips of the manifest: " + ", ".join(missing[:5])
                     + (" ..." if len(missing) > 5 else ""))
    if unexpected:
        notes.append(f"{len(unexpected)} clips are not in the manifest: " + ", ".join(unexpected[:5])
                     + (" ..." if len(unexpected) > 5 else ""))
    return notes


# ---------------------------------------------------------------------------------------------------------------
# Reading a clip's media: probe the video, extract 16 kHz mono audio once
# ---------------------------------------------------------------------------------------------------------------

#: How much shorter than its container may a clip's audio be before the clip counts as truncated.
_TRUNCATION_TOLERANCE_S = 0.25


def _decoder_reason(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text.rsplit(", ", 1)[-1] if "SingleStreamDecoder" in text or "decodeAVFrame" in text else text


def read_clip_media(clip: RawClip) -> dict:
    """Read a clip once: its bytes, video properties and 16 kHz mono audio (FLAC). Raises BlemoreError if broken."""
    import io

    import soundfile
    from torchcodec.decoders import AudioDecoder, VideoDecoder

    try:
        data = clip.path.read_bytes()
    except OSError as error:
        raise BlemoreError(f"{clip.clip_id}: cannot read {clip.path}: {error.strerror}") from None
    if not data:
        raise BlemoreError(f"{clip.clip_id}: {clip.path} is empty (0 bytes)")
    try:
        video = VideoDecoder(data, seek_mode="approximate")
        meta = video.metadata
        video.get_frame_at(0)
    except Exception as error:  # torchcodec raises RuntimeError/ValueError with FFmpeg's reason
        raise BlemoreError(f"{clip.clip_id}: unreadable video in {clip.path} ({_decoder_reason(error)})") from None
    try:
        audio_decoder = AudioDecoder(data, sample_rate=AUDIO_SAMPLING_RATE, num_channels=1)
    except ValueError:
        raise BlemoreError(f"{clip.clip_id}: {clip.path} has no audio track") from None
    except Exception as error:
        raise BlemoreError(f"{clip.clip_id}: unreadable audio in {clip.path} ({_decoder_reason(error)})") from None
    try:
        samples = audio_decoder.get_all_samples().data[0].numpy()
    except Exception as error:
        reason = _decoder_reason(error)
        raise BlemoreError(f"{clip.clip_id}: audio of {clip.path} does not decode ({reason})") from None

    duration = float(meta.duration_seconds or 0.0)
    audio_duration = len(samples) / AUDIO_SAMPLING_RATE
    if duration <= 0 or not meta.num_frames:
        raise BlemoreError(f"{clip.clip_id}: {clip.path} has no video frames")
    if audio_duration + _TRUNCATION_TOLERANCE_S < duration:
        raise BlemoreError(f"{clip.clip_id}: {clip.path} looks truncated (its audio ends at {audio_duration:.2f} s "
                           f"of {duration:.2f} s)")
    flac = io.BytesIO()
    soundfile.write(flac, samples, AUDIO_SAMPLING_RATE, format="FLAC", subtype="PCM_16")
    return {
        "video": {"bytes": data, "path": clip.path.name},
        "audio": {"bytes": flac.getvalue(), "path": f"{clip.clip_id}.flac"},
        "duration_s": duration,
        "fps": float(meta.average_fps or 0.0),
        "width": int(meta.width),
        "height": int(meta.height),
        "num_frames": int(meta.num_frames),
    }


def clip_example(clip: RawClip, media: dict | None = None) -> dict:
    """One dataset row (before feature encoding): labels from the scan, media from the file.

    ``media`` is ``read_clip_media(clip)`` when the caller already has it (read by a worker process).
    """
    labelled = clip.is_labelled
    return {
        "clip_id": clip.clip_id,
        **(read_clip_media(clip) if media is None else media),
        "actor_id": clip.actor_id,
        "split": clip.split,
        "fold": clip.fold,
        "emotions": list(clip.emotions),
        "salience": list(clip.salience),
        "outcome": outcome_index(clip.emotions, clip.salience) if labelled else None,
        "presence": presence_vector(clip.emotions) if labelled else None,
        "soft_target": soft_target(clip.emotions, clip.salience) if labelled else None,
        "intensity": clip.intensity,
        "situation": clip.situation,
        "version": clip.version,
    }


# ---------------------------------------------------------------------------------------------------------------
# The `datasets` builder
# ---------------------------------------------------------------------------------------------------------------


def dataset_features():
    """The ``datasets.Features`` of a BLEMORE row (see the dataset card for each field)."""
    return datasets.Features({
        "clip_id": datasets.Value("string"),
        "video": datasets.Video(),
        "audio": datasets.Audio(sampling_rate=AUDIO_SAMPLING_RATE, num_channels=1),
        "actor_id": datasets.Value("string"),
        "split": datasets.Value("string"),
        "fold": datasets.Value("int8"),
        "emotions": datasets.List(datasets.ClassLabel(names=list(EMOTIONS))),
        "salience": datasets.List(datasets.Value("int32")),
        "outcome": datasets.ClassLabel(names=list(OUTCOME_NAMES)),
        "presence": datasets.List(datasets.Value("float32"), length=len(EMOTIONS)),
        "soft_target": datasets.List(datasets.Value("float32"), length=len(EMOTIONS)),
        "intensity": datasets.Value("int8"),
        "situation": datasets.Value("int8"),
        "version": datasets.Value("int8"),
        "duration_s": datasets.Value("float32"),
        "fps": datasets.Value("float32"),
        "width": datasets.Value("int32"),
        "height": datasets.Value("int32"),
        "num_frames": datasets.Value("int32"),
    })


def config_names() -> list[str]:
    return ["default"] + [f"fold{k}" for k in range(NUM_FOLDS)]


def config_splits(config_name: str) -> dict[str, list[str]]:
    """Which parts of the data (``fold0``..``fold4``, ``test``) make each split of a config."""
    folds = [f"fold{k}" for k in range(NUM_FOLDS)]
    if config_name == "default":
        return {"train": folds, "test": ["test"]}
    held_out = f"fold{int(config_name.removeprefix('fold'))}"
    return {"train": [f for f in folds if f != held_out], "validation": [held_out], "test": ["test"]}


def clip_part(clip: RawClip) -> str:
    """The part of the data a clip is stored in: its fold for training clips, ``test`` otherwise."""
    return "test" if clip.split == "test" else f"fold{clip.fold}"


class BlemoreBuilderConfig(datasets.BuilderConfig):
    """``default`` (train, test) or ``fold<k>`` (train on the other folds, validate on fold k, test)."""


class Blemore(datasets.GeneratorBasedBuilder):
    """Reads the authors' download (``data_dir``): clips at any depth, labels from metadata CSVs or names."""

    BUILDER_CONFIG_CLASS = BlemoreBuilderConfig
    BUILDER_CONFIGS = [BlemoreBuilderConfig(name=name) for name in config_names()]
    DEFAULT_CONFIG_NAME = "default"
    DEFAULT_WRITER_BATCH_SIZE = 16

    def _info(self):
        return datasets.DatasetInfo(description=_DESCRIPTION, features=dataset_features(), homepage=_HOMEPAGE,
                                    license=_LICENSE, citation=_CITATION)

    def _split_generators(self, dl_manager):
        raw_dir = self.config.data_dir or dl_manager.manual_dir
        if not raw_dir or not os.path.isdir(raw_dir):
            raise FileNotFoundError(
                f"BLEMORE is distributed by its authors: download it (videos and metadata CSVs) and pass the folder "
                f"as data_dir=...; {raw_dir!r} is not a folder. For a synthetic stand-in run `blemore synth RAW`.")
        clips = scan_download(raw_dir).clips
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"clips": [c for c in clips if clip_part(c) in parts]})
            for split, parts in config_splits(self.config.name).items()
        ]

    def _generate_examples(self, clips):
        for clip in clips:
            yield clip.clip_id, clip_example(clip)


# ---------------------------------------------------------------------------------------------------------------
# `blemore prepare RAW OUT`: a portable, Hub-native folder (parquet with embedded media + README.md dataset card)
# ---------------------------------------------------------------------------------------------------------------

#: Bumped when the prepared format changes, so that a resumed prepare never mixes shards of two formats.
PREPARED_FORMAT_VERSION = 1
DEFAULT_CLIPS_PER_SHARD = 64
#: Clips per parquet row group: what a writer holds in memory at once.
CLIPS_PER_ROW_GROUP = 8
DATASET_CARD_TEMPLATE = Path(__file__).resolve().parent / "dataset_card.md"
#: Below this many clips, one process reads them all (forking workers costs little, but not nothing).
_CLIPS_WORTH_WORKERS = 8
#: Clips read ahead per worker: keeps workers busy while the writer encodes, and bounds what is held in memory.
_READ_AHEAD_PER_WORKER = 3
#: What reading a clip needs, loaded before workers are forked so that they inherit it.
_WORKER_MODULES = ["torchcodec.decoders", "soundfile"]
#: Columns read back (without media) to compute the card's statistics.
_STATISTICS_COLUMNS = ["clip_id", "actor_id", "split", "fold", "emotions", "salience", "duration_s", "fps",
                       "width", "height"]


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    """One parquet file of the output: a run of clips of one part (``fold<k>`` or ``test``)."""

    name: str
    clips: tuple[RawClip, ...]

    def fingerprint(self) -> str:
        """Changes when any input of the shard changes (file, size, mtime, labels, format)."""
        import hashlib

        digest = hashlib.sha256(f"format={PREPARED_FORMAT_VERSION}".encode())
        for clip in self.clips:
            stat = clip.path.stat()
            digest.update(repr((dataclasses.astuple(clip), stat.st_size, stat.st_mtime_ns)).encode())
        return digest.hexdigest()


@dataclasses.dataclass
class PrepareResult:
    out_dir: Path
    num_clips: int
    shards_written: int
    shards_reused: int
    notes: list[str]


def plan_shards(clips: Sequence[RawClip], clips_per_shard: int = DEFAULT_CLIPS_PER_SHARD) -> list[ShardPlan]:
    parts: dict[str, list[RawClip]] = {}
    for clip in clips:
        parts.setdefault(clip_part(clip), []).append(clip)
    plans = []
    for part, members in parts.items():
        count = math.ceil(len(members) / clips_per_shard)
        for index in range(count):
            chunk = tuple(members[index * clips_per_shard:(index + 1) * clips_per_shard])
            plans.append(ShardPlan(f"{part}-{index:05d}-of-{count:05d}", chunk))
    return plans


def _worker_init() -> None:
    """Worker initialiser: single-threaded torch, and no worker left behind by a killed prepare.

    A thread waits on the pipe that prepare holds for each worker (``parent_process().sentinel``, readable once
    prepare is gone, however it died, even by SIGKILL) and ends the worker then.
    """
    import multiprocessing
    import multiprocessing.connection
    import threading

    if "torch" in sys.modules:  # as PyTorch's own data-loader workers do: no thread pools in a forked child
        sys.modules["torch"].set_num_threads(1)
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def exit_when_parent_dies() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=exit_when_parent_dies, name="blemore-parent-watch", daemon=True).start()


def _media_pool(num_workers: int):
    """Worker processes that start in milliseconds: on Linux they are forked from this process once it has loaded
    the decoders (a fresh interpreter would import torch and torchcodec again, ~4 s of CPU per worker, which
    outweighed the work on anything under a few hundred clips). The workers only decode the clips handed to them
    and touch nothing of this process's other threads; elsewhere (no safe fork) they are spawned."""
    import concurrent.futures
    import multiprocessing

    for name in _WORKER_MODULES:
        importlib.import_module(name)
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    return concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=context, initializer=_worker_init)


def read_clips_media(clips: Sequence[RawClip], num_workers: int = 1) -> Iterator[dict]:
    """``read_clip_media`` of each clip, in order: in worker processes when ``num_workers > 1``.

    Work is handed out clip by clip (so a few large shards still use every worker) with a bounded read-ahead,
    so memory holds only a few clips whatever the dataset size. The first broken clip's BlemoreError is raised.
    """
    if num_workers <= 1:
        for clip in clips:
            yield read_clip_media(clip)
        return
    import collections

    pending = iter(clips)
    with _media_pool(num_workers) as pool:
        window = collections.deque(pool.submit(read_clip_media, clip)
                                   for clip in itertools.islice(pending, num_workers * _READ_AHEAD_PER_WORKER))
        try:
            while window:
                media = window.popleft().result()
                for clip in itertools.islice(pending, 1):
                    window.append(pool.submit(read_clip_media, clip))
                yield media
        finally:
            for future in window:
                future.cancel()


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """Write a text file whole or not at all: a hidden ``.<name>.<pid>.partial`` sibling, then a rename.

    A reader never sees half a file, and an interrupted write leaves the previous version in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def write_shard(plan: ShardPlan, data_dir: Path, media: Iterator[dict] | None = None) -> int:
    """Write the shard's clips as one parquet file (atomically: a temporary file, then rename).

    ``media`` yields ``read_clip_media`` of the shard's clips in order (from workers); without it they are read here.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if media is None:
        media = read_clips_media(plan.clips)
    features = dataset_features()
    schema = features.arrow_schema
    final = data_dir / f"{plan.name}.parquet"
    partial = data_dir / f".{plan.name}.{os.getpid()}.partial"
    try:
        with pq.ParquetWriter(partial, schema) as writer:
            for start in range(0, len(plan.clips), CLIPS_PER_ROW_GROUP):
                rows = [features.encode_example(clip_example(clip, next(media)))
                        for clip in plan.clips[start:start + CLIPS_PER_ROW_GROUP]]
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
    return len(plan.clips)


def prepare_dataset(
    raw_dir: str | os.PathLike,
    out_dir: str | os.PathLike = "blemore",
    *,
    num_workers: int | None = None,
    clips_per_shard: int = DEFAULT_CLIPS_PER_SHARD,
    overwrite: bool = False,
    progress: bool = True,
) -> PrepareResult:
    """Turn a download into a Hub-native folder that ``datasets.load_dataset(out_dir)`` reads offline.

    The work happens in a hidden sibling folder (``.<name>.incomplete``) that becomes ``out_dir`` only once
    complete, so an interrupted run never leaves a folder that loads; rerunning reuses the finished shards.
    """
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise BlemoreError(f"{out} already exists; pass --overwrite to replace it")
    scan = scan_download(raw_dir)
    plans = plan_shards(scan.clips, clips_per_shard)

    staging = out.parent / f".{out.name}.incomplete"
    data_dir, done_dir = staging / "data", staging / ".done"
    data_dir.mkdir(parents=True, exist_ok=True)
    done_dir.mkdir(exist_ok=True)
    fingerprints = {plan.name: plan.fingerprint() for plan in plans}
    reusable = {
        name for name, fingerprint in fingerprints.items()
        if (data_dir / f"{name}.parquet").is_file() and (done_dir / name).is_file()
        and (done_dir / name).read_text() == fingerprint
    }
    for stale in list(data_dir.iterdir()) + list(done_dir.iterdir()):
        if stale.name.removesuffix(".parquet") not in reusable:
            stale.unlink()
    todo = [plan for plan in plans if plan.name not in reusable]

    from tqdm.auto import tqdm

    with tqdm(total=sum(len(p.clips) for p in plans), initial=sum(len(p.clips) for p in plans if p.name in reusable),
              unit="clip", desc="prepare", disable=not progress) as bar:
        for plan in _run_shards(todo, data_dir, num_workers):
            (done_dir / plan.name).write_text(fingerprints[plan.name])
            bar.update(len(plan.clips))

    write_dataset_card(staging, scan)
    shutil.rmtree(done_dir)
    if out.exists():
        trash = out.parent / f".{out.name}.replaced"
        shutil.rmtree(trash, ignore_errors=True)
        out.rename(trash)
        staging.rename(out)
        shutil.rmtree(trash)
    else:
        staging.rename(out)
    return PrepareResult(out, len(scan.clips), len(todo), len(reusable), scan.notes)


def _run_shards(plans: list[ShardPlan], data_dir: Path, num_workers: int | None) -> Iterator[ShardPlan]:
    """Write shards one after the other, the clips' media read by workers; yield each plan once its file is complete.

    Only this process writes into ``data_dir``: workers just read clips, so a killed prepare leaves at most one
    partial file (hidden, removed by the rerun).
    """
    num_clips = sum(len(p.clips) for p in plans)
    if num_workers is None:
        num_workers = (os.cpu_count() or 1) if num_clips >= _CLIPS_WORTH_WORKERS else 1
    media = read_clips_media([clip for plan in plans for clip in plan.clips], min(num_workers, num_clips))
    try:
        for plan in plans:
            write_shard(plan, data_dir, media)
            yield plan
    finally:
        media.close()


# ---------------------------------------------------------------------------------------------------------------
# The dataset card: YAML header (configs, features) + `dataset_card.md` with statistics computed from the data
# ---------------------------------------------------------------------------------------------------------------


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
                        dataset_dir: Path | None = None) -> str:
    """``dataset_card.md`` with its YAML header completed (configs, features, sizes) and the statistics filled in.

    With ``dataset_dir`` (the folder the configs' data files are in), each config's ``dataset_info`` also gives the
    clips and bytes of every split (``config_info``).
    """
    metadata, body = split_card(DATASET_CARD_TEMPLATE.read_text(), DATASET_CARD_TEMPLATE)
    features = dataset_features()._to_yaml_list()
    metadata["size_categories"] = [_size_category(stats["clips"])]
    metadata["configs"] = configs
    metadata["dataset_info"] = [config_info(dataset_dir, c, features) if dataset_dir else
                                {"config_name": c["config_name"], "features": features} for c in configs]
    provenance = ("This folder was prepared from **synthetic** clips written by `blemore synth`: their picture and "
                  "sound encode the labels; they are not the BLEMORE recordings."
                  if synthetic else "This folder was prepared from the BLEMORE download.")
    notes = "\n".join(f"- {note}" for note in scan_notes) or "- none"
    body = (body.replace("{{provenance}}", provenance)
            .replace("{{statistics}}", _statistics_markdown(stats))
            .replace("{{prepare_notes}}", notes)
            .replace("{{citation}}", _CITATION.strip()))
    return join_card(metadata, body)


def write_dataset_card(dataset_dir: Path, scan: DownloadScan) -> None:
    table = read_label_table(dataset_dir)
    parts = {p.name.split("-", 1)[0] for p in (dataset_dir / "data").glob("*.parquet")}
    card = render_dataset_card(dataset_statistics(table), _card_configs(parts), scan.notes, scan.synthetic,
                               dataset_dir)
    (dataset_dir / "README.md").write_text(card)


def add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("raw", help="the download folder (clips at any depth, metadata CSVs optional)")
    parser.add_argument("out", nargs="?", default="blemore",
                        help="output folder (default: ./blemore, which loads as load_dataset('blemore'))")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--clips-per-shard", type=int, default=DEFAULT_CLIPS_PER_SHARD)
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_prepare(args: argparse.Namespace) -> int:
    result = prepare_dataset(args.raw, args.out, num_workers=args.workers, clips_per_shard=args.clips_per_shard,
                             overwrite=args.overwrite, progress=not args.quiet)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"prepared {result.num_clips} clips into {result.out_dir} ({result.shards_written} shards written, "
          f"{result.shards_reused} reused); load it with datasets.load_dataset({str(result.out_dir)!r})")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# Command line: `blemore COMMAND ...`. Each command lives in a module that defines
# `add_<command>_arguments(parser)` and `run_<command>(args) -> int | None`; only the chosen module is imported.
# ---------------------------------------------------------------------------------------------------------------

COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("blemore_toolkit.synth", "write a synthetic BLEMORE download (clips, metadata, test answer key)"),
    "prepare": ("blemore", "turn a download into a Hub-native dataset folder that load_dataset reads"),
    "score": ("blemore_toolkit.scoring", "score a challenge submission against references"),
    "validate": ("blemore_toolkit.scoring", "check a submission against the test clips before upload"),
    "zip": ("blemore_toolkit.scoring", "write the challenge upload zip from a predictions JSON"),
    "baseline": ("blemore_toolkit.baselines", "the paper's trivial most-frequent baselines per fold and test"),
    "push": ("blemore_toolkit.hub", "push a prepared dataset folder to the Hub"),
    "train": ("blemore_toolkit.train", "fine-tune a video + audio model with the Trainer, one fold or all five"),
    "predict": ("blemore_toolkit.predict", "write a challenge submission (json + zip) and probabilities from a model"),
    "features": ("blemore_toolkit.features", "extract encoder features into a dataset config beside the clips"),
    "heads": ("blemore_toolkit.heads", "train the paper's heads on feature configs: 5-fold CV, α/β tuning, test fit"),
    "demo": ("blemore_toolkit.demo", "synthesise → prepare → train → predict → score, end to end"),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
        print("usage: blemore COMMAND [options]   (blemore COMMAND --help for a command's options)\n\ncommands:")
        print("\n".join(lines))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nblemore: error: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    module_name, help_ = COMMANDS[command]
    module = sys.modules[__name__] if module_name == "blemore" else importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"blemore {command}", description=help_)
    getattr(module, f"add_{command}_arguments")(parser)
    args = parser.parse_args(rest)
    try:
        return int(getattr(module, f"run_{command}")(args) or 0)
    except BlemoreError as error:
        print(f"blemore {command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"blemore {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
