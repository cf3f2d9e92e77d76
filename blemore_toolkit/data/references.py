"""Reference labels to score against, from whichever form a user has them in.

* a prepared dataset folder (``blemore prepare`` output): read with ``datasets.load_dataset``, only the label
  columns (the video and audio bytes are never decoded); ``emotions`` are ClassLabel ids, turned into codes
  through the dataset's own features;
* the organisers' metadata CSV (``filename, emotion_1, emotion_2, emotion_1_salience, emotion_2_salience, ...``),
  which is also the form of the answer key ``blemore synth`` writes for its test clips;
* any CSV with a ``filename`` column of real clip names (``A411_mix_ang_hap_30_70_ver1``): the labels are read from
  the names, as in the shipped manifest (``blemore.reference_path("blemore_manifest.csv")``).

Each clip keeps its split (``train``/``test``) and fold where the source says them, so a subset can be chosen:
``train``, ``test``, or ``fold0`` ... ``fold4`` (the validation clips of that fold).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import operator
import os
import re
from collections import Counter
from pathlib import Path

import blemore

#: Columns read from a prepared dataset folder (the rest, media included, is never loaded).
FOLDER_COLUMNS = ("clip_id", "emotions", "salience", "split", "fold", "actor_id", "intensity", "situation")
#: Optional CSV columns naming a clip's actor (``video_id`` is the organisers' metadata column for it): the mapping
#: that anonymised test names (``test_0001``) need for an actor bootstrap. Without one, the clip name says it.
ACTOR_COLUMNS = ("actor_id", "video_id", "actor")
_REQUIRED_FOLDER_COLUMNS = FOLDER_COLUMNS[:3]
_FOLD_SPLIT = re.compile(r"^fold(\d+)$")
_set_field = object.__setattr__


@dataclasses.dataclass(frozen=True, slots=True)
class ReferenceClip:
    """The truth for one clip: emotions in canonical order with their saliences in percent.

    Slotted (no per-instance ``__dict__``): an answer key of 1,000,000 clips holds one of these per clip, and a
    ``__dict__`` is about 270 bytes of each.
    """

    clip_id: str
    emotions: tuple[str, ...]
    salience: tuple[int, ...]
    split: str | None = None
    fold: int | None = None
    #: Who acted the clip (from a mapping column, the dataset's ``actor_id``, or the clip name); None if unknown.
    actor_id: str | None = None
    #: Intensity level 1–4 of a single non-neutral emotion, situation 1–4 of a neutral clip, where known.
    intensity: int | None = None
    situation: int | None = None
    #: ``pairs`` once worked out (shared by every clip of one label when the clean reader builds them).
    _pairs: tuple | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    @property
    def is_blend(self) -> bool:
        return len(self.emotions) == 2

    @property
    def pairs(self) -> tuple[tuple[str, int], ...]:
        """``((emotion, salience), ...)``, the form ``metrics.blemore.challenge`` scores."""
        pairs = self._pairs
        if pairs is None:
            pairs = tuple(zip(self.emotions, self.salience))
            _set_field(self, "_pairs", pairs)
        return pairs


@dataclasses.dataclass
class ReferenceSet:
    """Every labelled clip of a source, in source order, and how many rows per split carried no label."""

    source: str
    clips: dict[str, ReferenceClip]
    unlabelled: Counter

    def partitions(self) -> list[str]:
        """The subsets this source can offer: ``train``, ``test`` and the ``foldK`` present."""
        splits = {c.split for c in self.clips.values() if c.split}
        folds = sorted({c.fold for c in self.clips.values() if c.fold is not None})
        return [s for s in blemore.SPLITS if s in splits] + [f"fold{k}" for k in folds]

    def select(self, split: str | None) -> dict[str, ReferenceClip]:
        """The clips of one subset (``None``: all of them); ``BlemoreError`` when the subset is empty."""
        if split is None:
            chosen = dict(self.clips)
        elif (match := _FOLD_SPLIT.match(split)) is not None:
            fold = int(match.group(1))
            chosen = {k: c for k, c in self.clips.items() if c.fold == fold}
        elif split in blemore.SPLITS:
            chosen = {k: c for k, c in self.clips.items() if c.split == split}
        else:
            raise blemore.BlemoreError(f"--split {split!r}: expected train, test or fold0..fold{blemore.NUM_FOLDS - 1}"
                                       " (the validation clips of that fold)")
        if not chosen:
            offered = ", ".join(self.partitions()) or "none"
            reason = f"no labelled clip in split {split!r}" if split else "no labelled clip"
            if self.unlabelled.get(split):
                reason += (f" ({self.unlabelled[split]} unlabelled clips: the anonymised test clips carry no labels; "
                           "score against an answer key CSV instead)")
            raise blemore.BlemoreError(f"{self.source}: {reason}; splits with labels here: {offered}")
        return chosen


def load_references(source: str | os.PathLike, split: str | None = None) -> dict[str, ReferenceClip]:
    """The reference clips of ``source`` (folder or CSV, see the module docstring), optionally one split.

    A prepared folder holds several splits, so ``split=None`` means its ``test`` split there; for a CSV it
    means every row.
    """
    references = read_references(source)
    if split is None and Path(source).is_dir():
        split = "test"
    return references.select(split)


def read_references(source: str | os.PathLike) -> ReferenceSet:
    """Every labelled clip of a prepared dataset folder or a CSV (organisers' metadata, or clip names)."""
    path = Path(source)
    if path.is_dir():
        return _read_folder(path)
    if not path.is_file():
        raise blemore.BlemoreError(f"{path}: no such file or folder")
    if path.suffix.lower() != ".csv":
        raise blemore.BlemoreError(f"{path}: references are a prepared dataset folder or a CSV file "
                                   "(organisers' metadata, an answer key, or a filename column of clip names)")
    try:
        return _read_clean_csv(path) or _read_csv(path)
    except UnicodeDecodeError as error:
        raise blemore.BlemoreError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); save the CSV as "
                                   "UTF-8") from None


def _outcome_table() -> dict[tuple, tuple[tuple[str, ...], tuple[int, ...]]]:
    """``((emotion, salience), ...)`` in either order -> canonical ``(emotions, salience)``, for the 36 outcomes."""
    table = {}
    for outcome in blemore.OUTCOMES:
        pairs = tuple(zip(outcome.emotions, outcome.salience))
        table[pairs] = table[pairs[::-1]] = (outcome.emotions, outcome.salience)
    return table


_OUTCOME_TABLE = _outcome_table()


def _label(where: str, emotions: list, salience: list) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Canonical ``(emotions, salience)`` of a row, or ``BlemoreError`` when it is not one of the 36 outcomes."""
    known = _OUTCOME_TABLE.get(tuple(zip(emotions, salience))) if len(emotions) == len(salience) else None
    if known is not None:
        return known
    unknown = [e for e in emotions if e not in blemore.EMOTIONS]
    if unknown:
        raise blemore.BlemoreError(f"{where}: unknown emotion code {unknown[0]!r} (expected one of "
                                   f"{', '.join(blemore.EMOTIONS)})")
    try:
        blemore.outcome_index(emotions, salience)
    except (ValueError, TypeError) as error:
        raise blemore.BlemoreError(f"{where}: {error}") from None
    return blemore.canonical_label(emotions, salience)


def _add(clips: dict[str, ReferenceClip], clip: ReferenceClip, where: str) -> None:
    if clip.clip_id in clips:
        raise blemore.BlemoreError(f"{where}: clip {clip.clip_id} is listed twice")
    clips[clip.clip_id] = clip


# ---------------------------------------------------------------------------------------------------------------
# CSV files
# ---------------------------------------------------------------------------------------------------------------


def _number(row: dict, column: str, where: str) -> int | None:
    value = blemore.metadata_cell(row, column)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise blemore.BlemoreError(f"{where}: {column} is {value!r}, not a number") from None
    if not math.isfinite(number) or not number.is_integer():
        raise blemore.BlemoreError(f"{where}: {column} is {value!r}, not a whole number")
    return int(number)


def _row_split(row: dict, clip_id: str, fold: int | None) -> str | None:
    split = blemore.metadata_cell(row, "split")
    if split is not None:
        return split
    if fold is not None:
        return "train"
    return "test" if blemore.is_test_clip(clip_id) else None


def _metadata_label(row: dict, where: str) -> tuple[list, list] | None:
    first, second = blemore.metadata_cell(row, "emotion_1"), blemore.metadata_cell(row, "emotion_2")
    if first is None:
        return None
    if second is None:
        return [first], [100]
    s1, s2 = _number(row, "emotion_1_salience", where), _number(row, "emotion_2_salience", where)
    if s1 is None or s2 is None:
        raise blemore.BlemoreError(f"{where}: a blend ({first}+{second}) without both saliences")
    return [first, second], [s1, s2]


def _name_label(clip_id: str, where: str) -> tuple[list, list]:
    try:
        label = blemore.parse_clip_name(clip_id)
    except ValueError as error:
        if blemore.is_test_clip(clip_id):
            raise blemore.BlemoreError(
                f"{where}: {clip_id} is an anonymised test name that carries no label; give a CSV with the "
                "organisers' label columns (emotion_1, emotion_2, emotion_1_salience, emotion_2_salience), "
                "such as the answer key `blemore synth` writes"
            ) from None
        raise blemore.BlemoreError(f"{where}: {error}") from None
    return list(label.emotions), list(label.salience)


def _level(row: dict, column: str) -> int | None:
    """An intensity or situation cell as its number (``2``, ``2.0``, ``int2``, ``sit2``); None when absent or other
    (these columns only feed the error-analysis report, so an unusual spelling must not refuse the references)."""
    value = blemore.metadata_cell(row, column)
    match = re.fullmatch(r"(?:int|sit)?(\d+)(?:\.0*)?", value.strip().lower()) if value else None
    return int(match.group(1)) if match else None


def _parsed_name(clip_id: str) -> blemore.ClipLabel | None:
    """What a labelled clip name says; ``None`` for any other name (``test_0001``, a path to one)."""
    if not os.path.basename(clip_id).startswith("A"):
        # Every labelled name starts with its actor (A102_...). Answer keys name 100,000 anonymised clips, and for
        # them the failed parse (a regex and a formatted ValueError, ~4 µs a clip) was a fifth of reading the key.
        return None
    try:
        return blemore.parse_clip_name(clip_id)
    except ValueError:
        return None


def _read_csv(path: Path) -> ReferenceSet:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        try:
            return _read_csv_rows(path, reader)
        except csv.Error as error:  # a field over csv's 128 KiB limit, a NUL byte, ...
            raise blemore.BlemoreError(f"{path}:{reader.line_num}: not a readable CSV ({error})") from None


def _read_csv_rows(path: Path, reader: csv.DictReader) -> ReferenceSet:
    clips: dict[str, ReferenceClip] = {}
    unlabelled: Counter = Counter()
    columns = reader.fieldnames or []
    if "filename" not in columns:
        raise blemore.BlemoreError(f"{path}: a reference CSV needs a 'filename' column (found: "
                                   f"{', '.join(columns) or 'no header'})")
    from_metadata = "emotion_1" in columns
    for line, row in enumerate(reader, start=2):
        where = f"{path}:{line}"
        name = blemore.metadata_cell(row, "filename")
        if name is None:
            raise blemore.BlemoreError(f"{where}: empty filename")
        clip_id = blemore.clip_id_from_path(name)
        fold = _number(row, "fold", where)
        split = _row_split(row, clip_id, fold)
        label = _metadata_label(row, where) if from_metadata else _name_label(clip_id, where)
        if label is None:
            unlabelled[split] += 1
            continue
        emotions, salience = _label(f"{where} ({clip_id})", *label)
        _add(clips, ReferenceClip(clip_id, emotions, salience, split, fold, *_clip_details(row, clip_id)), where)
    return ReferenceSet(str(path), clips, unlabelled)


#: Columns that describe a clip beyond its label (for intervals and the report), read by ``_clip_details``.
_DETAIL_COLUMNS = (*ACTOR_COLUMNS, "intensity_level", "intensity", "situation")


def _clip_details(row: dict, clip_id: str) -> tuple[str | None, int | None, int | None]:
    """(actor, intensity, situation) of a clip: from its row's columns where they say, else from its name."""
    return _with_name_details(_row_details(row), _parsed_name(clip_id))


def _row_details(row: dict) -> tuple[str | None, int | None, int | None]:
    """(actor, intensity, situation) as a row's columns say them, ``None`` where they do not."""
    actor = next((a for a in (blemore.metadata_cell(row, c) for c in ACTOR_COLUMNS) if a), None)
    intensity = _level(row, "intensity_level") or _level(row, "intensity")
    return actor, intensity, _level(row, "situation")


def _with_name_details(details: tuple, named: blemore.ClipLabel | None) -> tuple[str | None, int | None, int | None]:
    """A row's (actor, intensity, situation), completed from what the clip's name says."""
    if named is None:
        return details
    actor, intensity, situation = details
    return (actor or named.actor_id, intensity if intensity is not None else named.intensity,
            situation if situation is not None else named.situation)


#: (actor, intensity, situation) of a row without any of their columns.
_NO_DETAILS = (None, None, None)
#: How a CSV cell spells "missing" (``blemore.metadata_cell``'s rule).
_EMPTY_CELLS = frozenset(("", "nan", "none", "null"))
#: The columns whose cells decide a row's label, fold and split (everything but the clip name).
_LABEL_COLUMNS = ("emotion_1", "emotion_2", "emotion_1_salience", "emotion_2_salience", "fold", "split")


def _cells(indices: list[int]):
    """A function giving the cells of a CSV row at ``indices``, always as a tuple (``itemgetter`` of one index
    gives the bare cell)."""
    if len(indices) == 1:
        index = indices[0]
        return lambda values: (values[index],)
    return operator.itemgetter(*indices) if indices else (lambda values: ())


_new_object = object.__new__
_SLOTS = tuple((name, getattr(ReferenceClip, name).__set__) for name in (
    "clip_id", "emotions", "salience", "split", "fold", "actor_id", "intensity", "situation", "_pairs"))


def _reference_clip(clip_id: str, emotions: tuple, salience: tuple, split: str | None, fold: int | None,
                    actor_id: str | None, intensity: int | None, situation: int | None,
                    pairs: tuple | None) -> ReferenceClip:
    """``ReferenceClip(...)``, with ``pairs`` already known, built for a fraction of the frozen ``__init__``'s cost.

    A frozen dataclass sets each field through ``object.__setattr__``; setting the slots directly makes the same
    object (equal, same hash) faster, which counts over 100,000 clips. ``pairs`` is shared by every clip of this
    label. ``tests/test_fast_paths.py`` checks that it still matches the constructor field for field.
    """
    clip = _new_object(ReferenceClip)
    for (_, set_slot), value in zip(_SLOTS, (clip_id, emotions, salience, split, fold, actor_id, intensity,
                                             situation, pairs)):
        set_slot(clip, value)
    return clip


def _read_clean_csv(path: Path) -> ReferenceSet | None:
    """``_read_csv`` for a clean file, fast; ``None`` as soon as anything needs ``_read_csv``'s diagnosis.

    An answer key of 100,000 clips holds a few dozen distinct label rows, so each distinct combination of label
    cells (and of detail cells: actor, intensity, situation) is worked out once by ``_read_csv``'s own functions
    and reused. Anything unusual (not UTF-8, a short or blank row, a repeated header, a bad cell, a clip listed
    twice) returns ``None`` and ``_read_csv`` reads the file again, so errors and their messages stay its own.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        return _read_clean_rows(path, text)
    except csv.Error:  # _read_csv says where
        return None


def _read_clean_rows(path: Path, text: str) -> ReferenceSet | None:
    rows = csv.reader(io.StringIO(text, newline=""))
    columns = next(rows, None)
    if not columns or "filename" not in columns or len(set(columns)) != len(columns):
        return None
    width, name_at = len(columns), columns.index("filename")
    details = [c for c in _DETAIL_COLUMNS if c in columns]
    detail_cells = _cells([columns.index(c) for c in details])
    present = [c for c in _LABEL_COLUMNS if c in columns]
    label_cells = _cells([columns.index(c) for c in present])
    from_metadata = "emotion_1" in columns
    known: dict = {}  # label cells -> (emotions, salience, pairs, fold, split cell), or None when not clean
    known_details: dict = {}  # detail cells -> (actor, intensity, situation) as the row says them
    clips: dict[str, ReferenceClip] = {}
    unlabelled: Counter = Counter()
    is_test_clip, empty = blemore.is_test_clip, _EMPTY_CELLS
    for values in rows:
        if len(values) != width:
            return None
        name = values[name_at].strip()
        if name.lower() in empty:
            return None
        clip_id = name if "." not in name and "/" not in name else blemore.clip_id_from_path(name)
        cells = label_cells(values)
        found = known.get(cells, known)
        if found is known:
            found = known[cells] = _clean_label(dict(zip(present, cells)), from_metadata)
        if found is None or clip_id in clips:
            return None
        emotions, salience, pairs, fold, split = found
        if split is None:
            split = "train" if fold is not None else ("test" if is_test_clip(clip_id) else None)
        if not from_metadata:
            try:
                emotions, salience = _label(clip_id, *_name_label(clip_id, clip_id))
            except blemore.BlemoreError:
                return None
            pairs = None
        if emotions is None:
            unlabelled[split] += 1
            continue
        described = _NO_DETAILS
        if details:
            cells = detail_cells(values)
            described = known_details.get(cells)
            if described is None:
                described = known_details[cells] = _row_details(dict(zip(details, cells)))
        named = _parsed_name(clip_id) if clip_id.startswith("A") else None  # _parsed_name's test, as a base name
        if named is not None:
            described = _with_name_details(described, named)
        clips[clip_id] = _reference_clip(clip_id, emotions, salience, split, fold, *described, pairs)
    return ReferenceSet(str(path), clips, unlabelled)


def _clean_label(row: dict, from_metadata: bool) -> tuple | None:
    """``(emotions, salience, pairs, fold, split cell)`` of a row's label cells; ``None`` if not clean."""
    try:
        fold = _number(row, "fold", "")
        label = _metadata_label(row, "") if from_metadata else None
        emotions, salience = _label("", *label) if label is not None else (None, None)
    except blemore.BlemoreError:
        return None
    pairs = tuple(zip(emotions, salience)) if emotions is not None else None
    return emotions, salience, pairs, fold, blemore.metadata_cell(row, "split")


# ---------------------------------------------------------------------------------------------------------------
# Prepared dataset folders
# ---------------------------------------------------------------------------------------------------------------


def load_quietly(folder: Path, **kwargs):
    """``datasets.load_dataset`` without its progress bars: reading a few label columns is instant, and the bars
    would interleave with the command's own messages."""
    import datasets

    bars_were_on = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        return datasets.load_dataset(str(folder), **kwargs)
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()


def _emotion_names(feature) -> list[str] | None:
    """Names of the ClassLabel inside ``emotions`` (``None`` when the codes are stored as strings)."""
    import datasets

    inner = getattr(feature, "feature", None)
    if isinstance(inner, datasets.ClassLabel):
        return list(inner.names)
    return None


def _read_folder(folder: Path) -> ReferenceSet:
    import pyarrow.parquet as pq

    shards = sorted(folder.glob("data/*.parquet"))
    if not shards:
        raise blemore.BlemoreError(f"{folder}: no data/*.parquet (expected a folder written by `blemore prepare`; "
                                   "for a raw download, give its metadata CSV)")
    present = set(pq.read_schema(shards[0]).names)
    missing = [c for c in _REQUIRED_FOLDER_COLUMNS if c not in present]
    if missing:
        raise blemore.BlemoreError(f"{folder}: the dataset has no {', '.join(missing)} column")
    columns = [c for c in FOLDER_COLUMNS if c in present]
    if (folder / "README.md").is_file():  # a missing or changed shard named (load_dataset's size error names none)
        from blemore_toolkit.data.loading import check_against_card

        check_against_card(folder)
    try:
        splits = load_quietly(folder, columns=columns)
    except Exception as error:  # datasets raises many types; the user needs the folder and the reason
        raise blemore.BlemoreError(
            f"{folder}: cannot be loaded as a dataset ({type(error).__name__}: {error})"
        ) from None

    clips: dict[str, ReferenceClip] = {}
    unlabelled: Counter = Counter()
    for split_name, dataset in splits.items():
        names = _emotion_names(dataset.features["emotions"])
        for row in dataset:
            where = f"{folder} ({split_name} split, clip {row['clip_id']})"
            split = row.get("split") or split_name
            if not row["emotions"]:
                unlabelled[split] += 1
                continue
            emotions = [names[i] for i in row["emotions"]] if names is not None else list(row["emotions"])
            label = _label(where, emotions, list(row["salience"]))
            fold = row.get("fold")
            named = _parsed_name(row["clip_id"])
            _add(clips, ReferenceClip(
                row["clip_id"], *label, split, None if fold is None else int(fold),
                actor_id=row.get("actor_id") or (named.actor_id if named else None),
                intensity=row.get("intensity"), situation=row.get("situation"),
            ), where)
    return ReferenceSet(str(folder), clips, unlabelled)
