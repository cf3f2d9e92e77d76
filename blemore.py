"""BLEMORE: blended emotion expressions with relative salience (arXiv 2601.13225).

This module is the dataset's one source of truth:

* the label schema (emotion codes, blend pairs, salience levels, the 36 outcomes) and the clip-name grammar;
* reading a download: clips at any depth, the organisers' metadata CSVs, the shipped manifest, clip probing;
* the ``datasets`` features and configs (default + one per validation fold), and ``Blemore``, a
  ``datasets.GeneratorBasedBuilder`` that reads the authors' download (or ``blemore synth``).

Turning a download into a portable, Hub-native folder is ``blemore_toolkit.data.prepare``; the command line is
``blemore_toolkit.cli`` (``python -m blemore`` hands over to it).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import importlib
import importlib.util
import io
import itertools
import os
import re
import struct
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

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


def walk_download(raw_dir: str | os.PathLike) -> Iterable[tuple[Path, list[str]]]:
    """``(folder, file names)`` of every folder below ``raw_dir``, sorted, skipping hidden entries and macOS archive
    debris. Symlinked folders are followed (a download assembled from several disks is common), each real folder at
    most once, so a link back up the tree is no loop."""
    root = Path(raw_dir)
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        info = os.stat(dirpath)
        if (info.st_dev, info.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((info.st_dev, info.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        yield Path(dirpath), sorted(name for name in filenames if not name.startswith("."))


def find_clip_files(raw_dir: str | os.PathLike) -> list[Path]:
    """Every .mov/.mp4 below ``raw_dir``, at any depth (symlinked folders followed), skipping hidden files and macOS
    archive debris."""
    return [folder / name for folder, names in walk_download(raw_dir) for name in names
            if os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS]


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


#: Encodings a spreadsheet may save a CSV in, tried in this order (Latin-1 reads any bytes, so it comes last).
_CSV_ENCODINGS = ("utf-8-sig", "utf-16", "cp1252", "latin-1")


def read_csv_rows(csv_path: Path) -> tuple[list[str], list[dict], str]:
    """A CSV as ``(column names, rows, how it was read)``, whatever the spreadsheet that saved it.

    UTF-8 (with or without BOM), UTF-16 (with BOM), Windows-1252 or Latin-1; comma, semicolon or tab separated;
    column names compared stripped and lower-cased (``Filename``, ``filename ``). ``how`` is empty for plain
    UTF-8 with commas, else says what was assumed.
    """
    data = csv_path.read_bytes()
    for encoding in _CSV_ENCODINGS:
        if encoding == "utf-16" and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
            continue
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    first_line = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first_line.count) if first_line else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [name.strip().lower() for name in next(reader, [])]
    rows = [dict(zip(header, row)) for row in reader if any(cell.strip() for cell in row)]
    how = [f"read as {encoding}"] if encoding not in ("utf-8-sig",) else []
    how += [f"{'tab' if delimiter == chr(9) else repr(delimiter)}-separated"] if delimiter != "," else []
    return header, rows, ", ".join(how)


def read_metadata(raw_dir: str | os.PathLike, notes: list[str] | None = None) -> dict[str, tuple[Path, dict]]:
    """Rows of every metadata CSV (a CSV with a ``filename`` column) below ``raw_dir``, keyed by clip id.

    ``notes`` (when given) collects what a user should know: a CSV skipped (and why), one read in another encoding
    or with another separator than UTF-8 with commas.
    """
    rows: dict[str, tuple[Path, dict]] = {}
    notes = [] if notes is None else notes
    for folder, names in walk_download(raw_dir):
        for csv_path in (folder / name for name in names if name.lower().endswith(".csv")):
            try:
                header, csv_rows, how = read_csv_rows(csv_path)
            except OSError as error:
                raise BlemoreError(f"{csv_path}: cannot read ({error.strerror})") from None
            except csv.Error as error:
                raise BlemoreError(f"{csv_path}: not a readable CSV ({error})") from None
            if "filename" not in header:
                notes.append(f"skipped {csv_path}: no 'filename' column (columns: {', '.join(header[:8]) or 'none'})")
                continue
            if how:
                notes.append(f"{csv_path}: {how}")
            for line_no, row in enumerate(csv_rows, start=2):
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
    if label.clip_id != clip_id:  # A102_ang_int1_ver1.mov.mp4: the name parsed only once a second suffix went
        raise BlemoreError(f"{path}: {path.name!r} is not a BLEMORE clip name (a clip name carries one .mov or "
                           f".mp4 suffix, e.g. {label.clip_id}{path.suffix})")
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
    metadata_notes: list[str] = []
    metadata = read_metadata(root, metadata_notes)
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
    notes = metadata_notes
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


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """``(type, payload start, box end)`` of each ISO/QuickTime box in ``data[start:end]``.

    Raises ``ValueError`` at a box that is malformed or runs past ``end`` (the last one of a file cut short)."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:  # a 64-bit size follows the type
            (size,), header = struct.unpack_from(">Q", data, pos + 8), 16
        elif size == 0:  # runs to the end of its parent
            size = end - pos
        if size < header or pos + size > end:
            raise ValueError(f"box {kind!r} at {pos} runs past {end}")
        yield kind, pos + header, pos + size
        pos += size


def _descend(data: bytes, span: tuple[int, int], *path: bytes) -> tuple[int, int]:
    """``(payload start, end)`` of the box reached from the box ``span`` through the first child of each type in
    ``path`` (e.g. ``b"mdia", b"minf"``); ``ValueError`` where one is missing."""
    for kind in path:
        span = next(((payload, end) for found, payload, end in _boxes(data, *span) if found == kind), None)
        if span is None:
            raise ValueError(f"no {kind!r} box")
    return span


def _track_media_end(data: bytes, stbl: tuple[int, int]) -> int:
    """Where the last sample of one track ends in the file, from its sample table (0 for a track without samples)."""
    tables = {kind: payload for kind, payload, _ in _boxes(data, *stbl)}
    if b"stsz" not in tables or b"stsc" not in tables or not {b"stco", b"co64"} & tables.keys():
        raise ValueError("sample table without stsz, stsc and stco/co64 (e.g. compact sizes)")
    uniform_size, num_samples = struct.unpack_from(">II", data, tables[b"stsz"] + 4)
    if uniform_size:
        def bytes_before(sample: int) -> int:  # the sizes of the track's samples before this one, summed
            return uniform_size * sample
    else:
        bytes_before = [0, *itertools.accumulate(struct.unpack_from(f">{num_samples}I", data,
                                                                    tables[b"stsz"] + 12))].__getitem__
    wide = b"co64" in tables
    offsets_at = tables[b"co64" if wide else b"stco"]
    (num_chunks,) = struct.unpack_from(">I", data, offsets_at + 4)
    offsets = struct.unpack_from(f">{num_chunks}{'Q' if wide else 'I'}", data, offsets_at + 8)
    (num_runs,) = struct.unpack_from(">I", data, tables[b"stsc"] + 4)
    runs = [struct.unpack_from(">II", data, tables[b"stsc"] + 8 + 12 * i) for i in range(num_runs)]
    end, sample = 0, 0
    # stsc: runs of chunks holding the same number of samples, each run given by its first chunk (1-based)
    for (first_chunk, per_chunk), (next_first, _) in zip(runs, [*runs[1:], (num_chunks + 1, 0)]):
        if not 1 <= first_chunk < next_first:
            raise ValueError("stsc runs out of order")
        for chunk in range(first_chunk - 1, min(next_first - 1, num_chunks)):
            if sample + per_chunk > num_samples:
                raise ValueError("the chunks hold more samples than stsz lists")
            end = max(end, offsets[chunk] + bytes_before(sample + per_chunk) - bytes_before(sample))
            sample += per_chunk
    return end


def _data_in_this_file(data: bytes, minf: tuple[int, int]) -> bool:
    """Whether a track's samples lie in this file (its data references are all flagged self-contained), not in
    another file that a QuickTime reference movie points to."""
    dref, dref_end = _descend(data, minf, b"dinf", b"dref")
    (count,) = struct.unpack_from(">I", data, dref + 4)
    entries = list(itertools.islice(_boxes(data, dref + 8, dref_end), count))
    return len(entries) == count and all(struct.unpack_from(">I", data, payload)[0] & 1 for _, payload, _ in entries)


def _trex_sample_sizes(data: bytes, moov: tuple[int, int]) -> dict[int, int]:
    """``{track id: default sample size}`` from the ``trex`` boxes of a fragmented file's ``moov/mvex``."""
    sizes = {}
    for kind, payload, end in _boxes(data, *moov):
        if kind == b"mvex":
            for child, start, _ in _boxes(data, payload, end):
                if child == b"trex":  # version/flags, track_ID, description index, duration, size, flags
                    track_id, _, _, size = struct.unpack_from(">IIII", data, start + 4)
                    sizes[track_id] = size
    return sizes


def _fragment_media_end(data: bytes, moof_start: int, moof: tuple[int, int], default_sizes: dict[int, int]) -> int:
    """Where the last sample that one movie fragment (``moof``) lists ends in the file, from its track runs: each
    ``trun`` gives its samples' sizes (or the ``tfhd``/``trex`` default) and where their data starts (a data offset
    from the fragment's base, or right after the previous run)."""
    end = 0
    previous_end = moof_start  # the base of a track fragment without one of its own (ISO 14496-12, 8.8.7)
    for kind, payload, traf_end in _boxes(data, *moof):
        if kind != b"traf":
            continue
        tfhd = next((start for child, start, _ in _boxes(data, payload, traf_end) if child == b"tfhd"), None)
        if tfhd is None:
            raise ValueError("a track fragment without tfhd")
        flags, track_id = struct.unpack_from(">II", data, tfhd)
        pos, base, default_size = tfhd + 8, None, default_sizes.get(track_id, 0)
        if flags & 0x01:  # base-data-offset
            (base,), pos = struct.unpack_from(">Q", data, pos), pos + 8
        pos += 4 * bool(flags & 0x02) + 4 * bool(flags & 0x08)  # sample description index, default duration
        if flags & 0x10:  # default-sample-size
            (default_size,) = struct.unpack_from(">I", data, pos)
        if base is None:
            base = moof_start if flags & 0x020000 else previous_end  # default-base-is-moof
        cursor = base
        for child, start, run_end in _boxes(data, payload, traf_end):
            if child != b"trun":
                continue
            run_flags, count = struct.unpack_from(">II", data, start)
            pos = start + 8
            if run_flags & 0x01:  # data-offset, signed, from the base
                (offset,), pos = struct.unpack_from(">i", data, pos), pos + 4
                cursor = base + offset
            pos += 4 * bool(run_flags & 0x04)  # first-sample-flags
            # per sample: duration, size, flags, composition offset, each present or not
            stride = 4 * sum(bool(run_flags & bit) for bit in (0x100, 0x200, 0x400, 0x800))
            if pos + stride * count > run_end:
                raise ValueError("a track run listing more samples than its box holds")
            if run_flags & 0x200:
                skip = 4 if run_flags & 0x100 else 0
                cursor += sum(struct.unpack_from(">I", data, pos + i * stride + skip)[0] for i in range(count))
            else:
                cursor += default_size * count
            end = max(end, cursor)
        previous_end = cursor
    return end


def _indexed_media_end(data: bytes) -> int | None:
    """Where the last media sample that an MP4/QuickTime index lists ends in the file: beyond ``len(data)`` when the
    file was cut short. The index is the ``moov`` sample tables and, in a fragmented file, each fragment's track runs
    (``moof/traf/trun``); a fragment whose own box the file cuts off counts up to where the box would end. ``None``
    when there is no such index to read (another container, an index that does not parse): the caller then checks
    by decoding instead."""
    moov, fragments, cut_box = None, [], None
    start = 0
    try:
        for kind, payload, end in _boxes(data, 0, len(data)):
            if kind == b"moof":
                fragments.append((start, (payload, end)))
            elif kind == b"moov":
                moov = (payload, end)
            start = end
    except (ValueError, struct.error):
        # the file ends inside a box (cut short): an index before the cut still says what is missing
        with contextlib.suppress(struct.error):
            size, kind = struct.unpack_from(">I4s", data, start)
            if size == 1:
                (size,) = struct.unpack_from(">Q", data, start + 8)
            cut_box = (kind, start + size)
    if moov is None:
        return None
    try:
        ends = []
        minfs = [_descend(data, (payload, end), b"mdia", b"minf")
                 for kind, payload, end in _boxes(data, *moov) if kind == b"trak"]
        ends += [_track_media_end(data, _descend(data, minf, b"stbl")) for minf in minfs
                 if _data_in_this_file(data, minf)]
        if fragments or (cut_box and cut_box[0] == b"moof"):
            if len(ends) != len(minfs):
                return None  # fragments of tracks whose data lies in other files: nothing to compare with
            default_sizes = _trex_sample_sizes(data, moov)
            ends += [_fragment_media_end(data, start, moof, default_sizes) for start, moof in fragments]
            if cut_box and cut_box[0] == b"moof":  # a fragment's index itself cut off: its data is missing too
                ends.append(cut_box[1])
        return max(ends, default=None)
    except (ValueError, struct.error):
        return None


#: The FLAC compression levels (soundfile's 0-1 scale) tried in turn for a clip's audio: libsndfile's default, then
#: level 0 (blocks of 1152 samples instead of 4096) and level 8. Every one is lossless; another level frames the
#: stream differently, which is what a stream FFmpeg refuses needs (see ``encode_flac``).
FLAC_LEVELS: tuple[float | None, ...] = (None, 0.0, 1.0)


def _flac_problem(flac: bytes, samples) -> str | None:
    """Why FFmpeg (torchcodec, the decoder ``datasets`` and the processors use) does not give ``samples`` back from
    ``flac``, or None when it does (to within 16-bit rounding, after the clipping to [-1, 1] the encoder does)."""
    import numpy as np
    from torchcodec.decoders import AudioDecoder

    try:
        decoded = AudioDecoder(flac).get_all_samples()
    except Exception as error:
        return f"FFmpeg refuses it: {_decoder_reason(error)}"
    data = decoded.data.numpy()
    if decoded.sample_rate != AUDIO_SAMPLING_RATE or data.shape != (1, len(samples)):
        return (f"FFmpeg decodes {data.shape[-1]} samples at {decoded.sample_rate} Hz of the {len(samples)} at "
                f"{AUDIO_SAMPLING_RATE} Hz stored")
    error = float(np.abs(data[0] - np.clip(samples, -1.0, 1.0)).max(initial=0.0))
    if not error <= 2 / 32768:
        return f"FFmpeg decodes other samples (off by up to {error:.6f})"
    return None


def encode_flac(samples, clip_id: str) -> bytes:
    """``samples`` (float32, 16 kHz mono) as 16-bit FLAC that FFmpeg decodes back to them, checked by decoding.

    libFLAC writes valid streams that FFmpeg's FLAC parser still refuses now and then: when the last frame ends in a
    run of one bits (a tail of digital silence, e.g. an AAC track's decoded end padding, codes each residual as a
    single 1 bit), its last bytes can read ``FF F8``, and with the frame's CRC-16 and the zero bytes the parser pads
    the end of the stream with, they form a frame header whose CRC-8 holds. The parser cuts the last frame there and
    the decoder fails on it ("invalid residual"), so ``datasets`` and the processors cannot read the clip's audio.
    Another compression level frames the stream differently; after the last one, a one-line error names the clip.
    """
    import soundfile

    problem = None
    for level in FLAC_LEVELS:
        buffer = io.BytesIO()
        soundfile.write(buffer, samples, AUDIO_SAMPLING_RATE, format="FLAC", subtype="PCM_16",
                        compression_level=level)
        flac = buffer.getvalue()
        problem = _flac_problem(flac, samples)
        if problem is None:
            return flac
    raise BlemoreError(f"{clip_id}: its audio, stored as 16 kHz FLAC, does not decode ({problem}); tried FLAC "
                       f"compression levels {', '.join('default' if x is None else str(x) for x in FLAC_LEVELS)}")


def read_clip_media(clip: RawClip) -> dict:
    """Read a clip once: its bytes, video properties and 16 kHz mono audio (FLAC). Raises BlemoreError if broken."""
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
    duration = float(meta.duration_seconds or 0.0)
    if duration <= 0 or not meta.num_frames:
        raise BlemoreError(f"{clip.clip_id}: {clip.path} has no video frames")
    # A clip cut short behind an index written up front (faststart) still reports every frame. Where the index can
    # be read, every sample it lists must lie inside the file (a cut of even a few bytes shows); elsewhere the last
    # frame must decode (a seek, then up to a whole group of pictures: most of the cost of reading a clip).
    end = float(meta.end_stream_seconds or duration)
    media_end = _indexed_media_end(data)
    if media_end is not None and media_end > len(data):
        raise BlemoreError(f"{clip.clip_id}: {clip.path} looks truncated (its last frames are missing: the file "
                           f"ends {media_end - len(data)} bytes before the media its index lists)")
    if media_end is None:
        last_at = max(float(meta.begin_stream_seconds or 0.0), end - 0.5 / float(meta.average_fps or 25.0))
        try:
            video.get_frame_played_at(last_at)
        except Exception as error:
            raise BlemoreError(f"{clip.clip_id}: {clip.path} looks truncated (its last frame, at {last_at:.2f} s, "
                               f"does not decode: {_decoder_reason(error)})") from None
    try:
        audio_decoder = AudioDecoder(data, sample_rate=AUDIO_SAMPLING_RATE, num_channels=1)
    except ValueError:
        raise BlemoreError(f"{clip.clip_id}: {clip.path} has no audio track") from None
    except Exception as error:
        raise BlemoreError(f"{clip.clip_id}: unreadable audio in {clip.path} ({_decoder_reason(error)})") from None
    try:
        decoded = audio_decoder.get_all_samples()
        samples = decoded.data[0].numpy()
    except Exception as error:
        reason = _decoder_reason(error)
        raise BlemoreError(f"{clip.clip_id}: audio of {clip.path} does not decode ({reason})") from None

    # Where the audio ends, not how long it is: a track that starts late but runs to the end is complete.
    audio_end = float(decoded.pts_seconds) + len(samples) / AUDIO_SAMPLING_RATE
    if audio_end + _TRUNCATION_TOLERANCE_S < end:
        raise BlemoreError(f"{clip.clip_id}: {clip.path} looks truncated (its audio ends at {audio_end:.2f} s "
                           f"of {end:.2f} s)")
    return {
        "video": {"bytes": data, "path": clip.path.name},
        "audio": {"bytes": encode_flac(samples, clip.clip_id), "path": f"{clip.clip_id}.flac"},
        "duration_s": duration,
        # frames / duration: the average rate, also for a variable-frame-rate clip, whose header gives a nominal
        # rate (e.g. 30) that can be far from what it plays (e.g. 40 frames in 1.93 s: 20.7)
        "fps": int(meta.num_frames) / duration,
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
    import datasets

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


#: ``datasets`` costs about a second to import (pandas, pyarrow, huggingface_hub), and scoring, validation and
#: ``blemore --help`` never build a dataset; so the builder classes are made on first use (``blemore.Blemore``),
#: or at import when ``datasets`` is already loaded (``load_dataset`` scans the module's namespace for them).
_BUILDER_NAMES = ("BlemoreBuilderConfig", "Blemore")


def _define_builder() -> None:
    import datasets

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
                    f"BLEMORE is distributed by its authors: download it (videos and metadata CSVs) and pass the "
                    f"folder as data_dir=...; {raw_dir!r} is not a folder. For a synthetic stand-in run "
                    f"`blemore synth RAW`.")
            clips = scan_download(raw_dir).clips
            return [
                datasets.SplitGenerator(name=split, gen_kwargs={"clips": [c for c in clips if clip_part(c) in parts]})
                for split, parts in config_splits(self.config.name).items()
            ]

        def _generate_examples(self, clips):
            for clip in clips:
                yield clip.clip_id, clip_example(clip)

    # Module-level names, so pickling (multiprocessing, fingerprints) finds the classes as blemore.<name>.
    for cls in (BlemoreBuilderConfig, Blemore):
        cls.__qualname__ = cls.__name__
        globals()[cls.__name__] = cls


def __getattr__(name: str):
    if name in _BUILDER_NAMES:
        _define_builder()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_BUILDER_NAMES})


def main(argv: Sequence[str] | None = None) -> int:
    """The ``blemore`` command line (``python -m blemore`` too); it lives in ``blemore_toolkit.cli``."""
    from blemore_toolkit.cli import main as cli_main

    return cli_main(argv)


if "datasets" in sys.modules:
    _define_builder()

if __name__ == "__main__":
    sys.exit(main())
