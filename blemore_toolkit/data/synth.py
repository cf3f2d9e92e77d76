"""``blemore synth RAW``: a synthetic BLEMORE download whose pictures and sounds carry the labels.

The real videos cannot ship with the toolkit, yet every part downstream (prepare, loading, training, scoring)
needs clips that look like the authors' release and whose labels are *learnable*, so that a correct pipeline
reaches high accuracy and a label bug (say, swapped saliences) shows up as low accuracy. This module writes
such a download: the real layout and names, H.264 + AAC ``.mov`` clips, metadata, an anonymised test split and,
outside the download, the answer key for it.

The parts: ``synth_signal.py`` says what each emotion looks and sounds like (and reads it back,
``signal_features``), ``synth_frames.py`` renders the pictures, ``synth_audio.py`` the sound, and
``synth_encoding.py`` encodes clips with ffmpeg; this module plans the clips and writes the folder.

Layout and timing: durations are drawn per clip (log-uniform in 1-8 s: mostly short takes, a few long ones) at
25 or 30 fps, sound at 16 kHz (what every model here reads; ``--audio-rate 48000`` gives the release's rate).
Clips are encoded by the ffmpeg command line with x264's fastest preset, a couple of dozen small clips per ffmpeg
process (its start-up costs more than encoding one small clip), ``workers`` processes at a time: synthesis is a
stand-in for a download, so encoding speed matters more than file size.

Determinism: a clip's content depends only on the run seed and its real-style name, and it is encoded with
single-threaded x264 and bit-exact muxing without metadata, so the same seed gives byte-identical files whatever
the number of workers or the batching. ``synthetic.json`` is written last and ``synthetic.incomplete`` removed
last: a download without the one or with the other is incomplete.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import dataclasses
import io
import itertools
import json
import math
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import blemore
from blemore import BlemoreError
from blemore_toolkit.data.atomic import write_text_atomically
from blemore_toolkit.data.synth_audio import DEFAULT_AUDIO_RATE
from blemore_toolkit.data.synth_encoding import ClipJob, _ffmpeg, write_clips
from blemore_toolkit.data.synth_frames import DEFAULT_SIZE
from blemore_toolkit.data.synth_signal import (
    EMOTION_FUNDAMENTALS_HZ,
    EMOTION_HUES,
    EMOTION_PATTERNS,
    NEUTRAL_HUM_HZ,
    ActorStyle,
    _derive_seed,
    _frame_count,
    actor_style_for,
)

FULL_SIZE = (64, 48)
DEFAULT_DURATIONS = (1.0, 8.0)
FRAME_RATES = (25, 30)
#: Sample rates synth writes: from 8 kHz (below it the highest tone, hap's 3rd harmonic near 3.8 kHz, has no room
#: under the Nyquist frequency, and the sound carries no label) to 96 kHz (AAC's highest).
AUDIO_RATES = (8_000, 96_000)
DEFAULT_WORKERS = 2
#: Clips per ffmpeg process, and the frame area up to which batching pays (above it, one clip per process).
BATCH_SIZE = 24
BATCH_PIXELS = 24 * 128 * 96


# ---------------------------------------------------------------------------------------------------------------
# The whole download
# ---------------------------------------------------------------------------------------------------------------

METADATA_COLUMNS = (
    "filename", "video_id", "gender", "mix", "emotion_1", "emotion_2", "emotion_1_salience", "emotion_2_salience",
    "version", "intensity_level", "situation", "fold",
)
ANSWER_KEY_COLUMNS = METADATA_COLUMNS + ("source_name",)
MARKER = "synthetic.json"
#: Written first and removed last, so that an interrupted run is recognisable (and may be overwritten).
IN_PROGRESS = "synthetic.incomplete"


@dataclasses.dataclass(frozen=True)
class _ClipTask:
    """One clip to write: its real-style name, where it goes, and everything that shapes its content."""

    name: str
    file_stem: str
    split: str
    fold: int | None
    gender: str
    fps: int
    duration_s: float
    seed: int
    intensity: float | None
    style: ActorStyle

    @property
    def label(self) -> blemore.ClipLabel:
        return blemore.parse_clip_name(self.name)


@dataclasses.dataclass
class SynthSummary:
    """What ``synthesize`` wrote."""

    raw_dir: Path
    answer_key: Path
    train_clips: int
    test_clips: int
    folds: dict[int, list[str]]
    test_actors: list[str]
    seconds: float

    @property
    def train_actors(self) -> list[str]:
        return sorted(a for actors in self.folds.values() for a in actors)


def answer_key_path(raw_dir: str | os.PathLike) -> Path:
    """Where the answer key of a synthetic download goes by default: ``<RAW>_test_answer_key.csv`` beside RAW."""
    raw = Path(os.path.abspath(raw_dir))
    return raw.with_name(f"{raw.name}_test_answer_key.csv")


def _name(actor: str, emotions: Sequence[str], salience: Sequence[int], level: int | None, version: int) -> str:
    if len(emotions) == 2:
        return f"{actor}_mix_{emotions[0]}_{emotions[1]}_{salience[0]}_{salience[1]}_ver{version}"
    if emotions[0] == "neu":
        return f"{actor}_neu_sit{level}_ver{version}"
    return f"{actor}_{emotions[0]}_int{level}_ver{version}"


def _actor_clip_names(actor: str, index: int, rng: np.random.Generator) -> list[str]:
    """One actor's takes: all 30 blends, every emotion once (intensities rotate so that each actor shows all four),
    neutral once, one more single and one more neutral at other levels, and one ``ver2`` retake: 39 clips."""
    names = [_name(actor, pair, levels, None, 1) for pair in blemore.BLEND_PAIRS for levels in blemore.SALIENCE_LEVELS]
    for i, emotion in enumerate(blemore.BLENDABLE_EMOTIONS):
        names.append(_name(actor, (emotion,), (100,), (index + i) % 4 + 1, 1))
    names.append(_name(actor, ("neu",), (100,), index % 4 + 1, 1))
    extra = int(rng.integers(len(blemore.BLENDABLE_EMOTIONS)))
    names.append(_name(actor, (blemore.BLENDABLE_EMOTIONS[extra],), (100,), (index + extra + 2) % 4 + 1, 1))
    names.append(_name(actor, ("neu",), (100,), (index + 2) % 4 + 1, 1))
    retake = names[int(rng.integers(len(names)))]
    names.append(retake[: -len("ver1")] + "ver2")
    return names


def _default_plan(seed: int, actors_per_fold: int, test_actors: int) -> list[tuple[str, str, int | None]]:
    """(clip name, split, fold) for a few made-up actors per fold plus the test actors."""
    rng = np.random.default_rng(_derive_seed(seed, "actors"))
    count = actors_per_fold * blemore.NUM_FOLDS + test_actors
    actors = [f"A{n}" for n in rng.choice(np.arange(10, 10 + max(990, 4 * count)), size=count, replace=False)]
    plan = []
    for index, actor in enumerate(actors):
        train = index < actors_per_fold * blemore.NUM_FOLDS
        split, fold = ("train", index // actors_per_fold) if train else ("test", None)
        names = _actor_clip_names(actor, index, np.random.default_rng(_derive_seed(seed, "takes", actor)))
        plan += [(name, split, fold) for name in names]
    return plan


def _full_plan() -> list[tuple[str, str, int | None]]:
    """(clip name, split, fold) for the 3,050 clips of the shipped manifest."""
    return [(entry.clip_id, entry.split, entry.fold) for entry in blemore.load_manifest().values()]


def _tasks(plan, seed: int, durations: tuple[float, float]) -> list[_ClipTask]:
    test_names = sorted(name for name, split, _ in plan if split == "test")
    order = np.random.default_rng(_derive_seed(seed, "test-order")).permutation(len(test_names))
    digits = max(4, len(str(len(test_names))))
    anonymised = {test_names[i]: f"test_{rank + 1:0{digits}d}" for rank, i in enumerate(order)}
    styles: dict[str, ActorStyle] = {}
    genders: dict[str, str] = {}
    tasks = []
    for name, split, fold in plan:
        label = blemore.parse_clip_name(name)
        actor = label.actor_id
        if actor not in styles:
            styles[actor] = actor_style_for(actor, seed)
            genders[actor] = "FM"[_derive_seed(seed, "gender", actor) % 2]
        clip_seed = _derive_seed(seed, "clip", name)
        rng = np.random.default_rng(clip_seed)
        fps = int(rng.choice(FRAME_RATES))
        # log-uniform: mostly short takes, a few long ones (mean 3.4 s for 1-8 s)
        duration = _frame_count(fps, math.exp(rng.uniform(*np.log(durations)))) / fps
        intensity = label.intensity
        if label.is_blend:
            intensity = round(float(rng.uniform(1.5, 3.5)), 3)
        stem = anonymised.get(name, name) if split == "test" else name
        tasks.append(_ClipTask(name, stem, split, fold, genders[actor], fps, duration, clip_seed, intensity,
                               styles[actor]))
    return tasks


def _write_batch(
    tasks: Sequence[_ClipTask], raw_dir: Path, width: int, height: int, audio_rate: int, cancel: threading.Event
) -> int:
    jobs = []
    for task in tasks:
        label = task.label
        jobs.append(ClipJob(raw_dir / task.split / f"{task.file_stem}.mov", label.emotions, label.salience, width,
                            height, task.fps, task.duration_s, task.seed, task.intensity, True, task.style,
                            audio_rate))
    write_clips(jobs, cancel=cancel)
    return len(jobs)


def _batches(tasks: Sequence[_ClipTask], width: int, height: int) -> list[list[_ClipTask]]:
    """Groups of clips for one ffmpeg process each: several small clips, or a single large one."""
    size = max(1, min(BATCH_SIZE, (BATCH_PIXELS // (width * height))))
    return [list(tasks[i : i + size]) for i in range(0, len(tasks), size)]


def _metadata_row(task: _ClipTask, filename: str, fold: int | None) -> dict:
    label = task.label
    blend = label.is_blend
    return {
        "filename": filename,
        "video_id": label.actor_id,
        "gender": task.gender,
        "mix": int(blend),
        "emotion_1": label.emotions[0],
        "emotion_2": label.emotions[1] if blend else "",
        "emotion_1_salience": label.salience[0] if blend else "",
        "emotion_2_salience": label.salience[1] if blend else "",
        "version": label.version,
        "intensity_level": label.intensity if label.intensity is not None else "",
        "situation": label.situation if label.situation is not None else "",
        "fold": fold if fold is not None else "",
    }


def _write_csv(path: Path, columns: Sequence[str], rows: list[dict]) -> None:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda row: row["filename"]))
    write_text_atomically(path, text.getvalue())


def _write_json(path: Path, data: dict) -> None:
    write_text_atomically(path, json.dumps(data, indent=2) + "\n")


def _submission_template(test_stems: Sequence[str], seed: int) -> dict:
    """Placeholder predictions for every test clip, like the organisers' template (random, not the truth)."""
    rng = np.random.default_rng(_derive_seed(seed, "template"))
    picks = rng.integers(len(blemore.OUTCOMES), size=len(test_stems))
    return {"predictions": {f"{stem}.mov": blemore.OUTCOMES[int(k)].as_prediction()
                            for stem, k in zip(sorted(test_stems), picks)}}


#: What synth writes in RAW (besides the clips in train/ and test/): anything else there is someone else's.
_SYNTH_ENTRIES = {"train", "test", "train_metadata.csv", "submission_template.json", MARKER, IN_PROGRESS}
_IN_PROGRESS_TEXT = "blemore synth is writing this folder; it is not complete\n"
#: The files synth writes in train/ and test/: clips, and the hidden part of one being encoded.
_SYNTH_CLIP = re.compile(r"[A-Za-z0-9_]+\.mov|\.[A-Za-z0-9_]+\.mov\.part")


def _written_by_synth(raw_dir: Path) -> str | None:
    """``None`` when ``raw_dir`` is a (complete or interrupted) synthetic download holding only what synth writes;
    otherwise why it is not one."""
    marker, in_progress = raw_dir / MARKER, raw_dir / IN_PROGRESS
    ours = False
    if marker.is_file() and not marker.is_symlink():
        try:
            ours = json.loads(marker.read_text(encoding="utf-8")).get("generator") == "blemore synth"
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            ours = False
    if not ours and in_progress.is_file() and not in_progress.is_symlink():
        with contextlib.suppress(OSError, UnicodeDecodeError):
            ours = in_progress.read_text(encoding="utf-8") == _IN_PROGRESS_TEXT
    if not ours:
        return f"it has no {MARKER} written by blemore synth"
    for entry in sorted(raw_dir.iterdir()):
        if entry.name not in _SYNTH_ENTRIES:
            return f"it holds {entry.name}, which synth did not write"
        if entry.is_symlink() or (entry.name in ("train", "test")) != entry.is_dir():
            return f"its {entry.name} is not what synth writes (a link, or a folder where a file belongs)"
    for split in ("train", "test"):
        for entry in sorted((raw_dir / split).iterdir()) if (raw_dir / split).is_dir() else []:
            if entry.is_symlink() or not entry.is_file() or not _SYNTH_CLIP.fullmatch(entry.name):
                return f"it holds {split}/{entry.name}, which synth did not write"
    return None


def _prepare_output_dir(raw_dir: Path, overwrite: bool) -> None:
    if raw_dir.exists() and not raw_dir.is_dir():
        raise BlemoreError(f"{raw_dir} exists and is not a folder")
    if raw_dir.is_dir() and any(raw_dir.iterdir()):
        if not overwrite:
            raise BlemoreError(f"{raw_dir} is not empty; pass --overwrite (overwrite=True) to replace a previous "
                               "synthetic download")
        if raw_dir.is_symlink():
            raise BlemoreError(f"{raw_dir}: is a symlink; --overwrite replaces only a folder blemore synth wrote, "
                               "named as itself (give the folder the link points to, or another name)")
        why = _written_by_synth(raw_dir)
        if why:
            raise BlemoreError(f"{raw_dir} is not empty and was not written by blemore synth ({why}); refusing to "
                               "overwrite it")
        (raw_dir / MARKER).unlink(missing_ok=True)  # from here on it no longer looks complete
        shutil.rmtree(raw_dir)
    try:
        raw_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BlemoreError(f"{error.filename or raw_dir}: cannot write here ({error.strerror})") from None


def _check_answer_key_path(key_path: Path) -> None:
    """A file at the answer key's path is replaced only when it is an answer key synth wrote (its header)."""
    if key_path.is_symlink() or (key_path.exists() and not key_path.is_file()):
        raise BlemoreError(f"{key_path}: is a link or a folder, not an answer key of blemore synth; give "
                           "--answer-key another path")
    if key_path.is_file():
        with open(key_path, "rb") as f:
            header = f.readline().decode("utf-8", errors="replace").strip()
        if header != ",".join(ANSWER_KEY_COLUMNS):
            raise BlemoreError(f"{key_path}: exists and is not an answer key of blemore synth; give --answer-key "
                               "another path (or move that file)")


def synthesize(
    out_dir: str | os.PathLike,
    *,
    actors_per_fold: int = 2,
    test_actors: int = 2,
    seed: int = 0,
    width: int | None = None,
    height: int | None = None,
    full: bool = False,
    answer_key: str | os.PathLike | None = None,
    num_workers: int | None = None,
    durations: tuple[float, float] = DEFAULT_DURATIONS,
    audio_rate: int = DEFAULT_AUDIO_RATE,
    overwrite: bool = False,
    progress: bool = True,
) -> SynthSummary:
    """Write a synthetic BLEMORE download to ``out_dir`` and its test answer key beside it.

    Default: ``actors_per_fold`` made-up actors in each of the five folds and ``test_actors`` test actors, 39
    clips each (all 36 outcomes), at 128x96. ``full=True``: the 3,050 names, splits and folds of the shipped
    manifest at 64x48 (``actors_per_fold``/``test_actors`` are ignored). Test clips are anonymised
    (``test_0001`` ...) in a seeded order; the answer key (``answer_key``, default ``<out_dir>_test_answer_key.csv``)
    maps them back with the organisers' columns plus ``source_name``. ``durations`` bounds the per-clip duration
    in seconds (drawn log-uniformly, seeded); ``num_workers`` ffmpeg processes (default 2) encode at a time
    without changing any byte. ``synthetic.json`` is written last; a folder without it is incomplete.
    ``overwrite=True`` replaces a previous (or interrupted) synthetic download, never any other non-empty folder.
    """
    started = time.perf_counter()
    raw_dir = Path(out_dir)
    if not full and (actors_per_fold < 1 or test_actors < 0):
        raise BlemoreError(f"need at least one actor per fold and no negative test actors, got actors_per_fold="
                           f"{actors_per_fold}, test_actors={test_actors}")
    default_width, default_height = FULL_SIZE if full else DEFAULT_SIZE
    width, height = width or default_width, height or default_height
    if width % 2 or height % 2 or width < 16 or height < 16:
        raise BlemoreError(f"clip size {width}x{height}: width and height must be even and at least 16")
    low, high = (float(d) for d in durations)
    if not 0 < low <= high:
        raise BlemoreError(f"durations {low}..{high} s: need 0 < min <= max")
    if not AUDIO_RATES[0] <= audio_rate <= AUDIO_RATES[1]:
        raise BlemoreError(f"--audio-rate {audio_rate}: give a sample rate from {AUDIO_RATES[0]} to {AUDIO_RATES[1]} "
                           "Hz (below 8000 the emotions' tones do not fit, and prepare would find the clips silent)")
    workers = DEFAULT_WORKERS if num_workers is None else int(num_workers)
    if workers < 1:
        raise BlemoreError(f"--workers must be at least 1, got {workers}")
    _ffmpeg()
    key_path = Path(answer_key) if answer_key is not None else answer_key_path(raw_dir)
    if key_path.resolve().is_relative_to(raw_dir.resolve()):
        raise BlemoreError(f"answer key {key_path} would be inside the download {raw_dir}: put it outside, as the "
                           "organisers keep theirs")

    plan = _full_plan() if full else _default_plan(seed, actors_per_fold, test_actors)
    tasks = _tasks(plan, seed, (low, high))
    _check_answer_key_path(key_path)
    _prepare_output_dir(raw_dir, overwrite)
    write_text_atomically(raw_dir / IN_PROGRESS, _IN_PROGRESS_TEXT)
    for split in blemore.SPLITS:
        (raw_dir / split).mkdir(exist_ok=True)

    _run_tasks(tasks, raw_dir, width, height, audio_rate, workers, progress)

    train = [t for t in tasks if t.split == "train"]
    test = [t for t in tasks if t.split == "test"]
    _write_csv(raw_dir / "train_metadata.csv", METADATA_COLUMNS, [_metadata_row(t, t.name, t.fold) for t in train])
    key_path.parent.mkdir(parents=True, exist_ok=True)
    _write_csv(key_path, ANSWER_KEY_COLUMNS,
               [{**_metadata_row(t, t.file_stem, None), "source_name": t.name} for t in test])
    _write_json(raw_dir / "submission_template.json", _submission_template([t.file_stem for t in test], seed))

    folds: dict[int, list[str]] = {k: [] for k in range(blemore.NUM_FOLDS)}
    for t in train:
        actor = t.label.actor_id
        if actor not in folds[t.fold]:
            folds[t.fold].append(actor)
    folds = {k: sorted(v) for k, v in folds.items()}
    test_actor_ids = sorted({t.label.actor_id for t in test})
    _write_json(raw_dir / MARKER, {
        "generator": "blemore synth",
        "format": 1,
        "seed": seed,
        "full": full,
        "options": {"width": width, "height": height, "durations_s": [low, high], "audio_rate": audio_rate,
                    **({} if full else {"actors_per_fold": actors_per_fold, "test_actors": test_actors})},
        "train_clips": len(train),
        "test_clips": len(test),
        "folds": {str(k): v for k, v in folds.items()},
        "test_actors": test_actor_ids,
        "answer_key": key_path.name,
        "signal": {"hues_deg": EMOTION_HUES, "fundamentals_hz": EMOTION_FUNDAMENTALS_HZ,
                   "patterns": EMOTION_PATTERNS, "neutral_hum_hz": NEUTRAL_HUM_HZ},
    })
    (raw_dir / IN_PROGRESS).unlink()
    return SynthSummary(raw_dir, key_path, len(train), len(test), folds, test_actor_ids,
                        time.perf_counter() - started)


def _run_tasks(tasks, raw_dir: Path, width: int, height: int, audio_rate: int, workers: int, progress: bool) -> None:
    """Write the clips, ``workers`` ffmpeg batches at a time.

    Threads, not processes: the encoding happens in the ffmpeg processes and numpy releases the GIL on large
    arrays, so threads keep the cores as busy as a process pool would, without pickling, without a re-imported
    ``__main__`` (which breaks ``python -`` and some notebooks) and with a prompt stop on Ctrl-C or an error.
    """
    from tqdm.auto import tqdm

    batches = iter(_batches(tasks, width, height))
    cancel = threading.Event()
    bar = tqdm(total=len(tasks), desc="blemore synth", unit="clip", disable=not progress, file=sys.stderr)
    with bar, concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="synth") as pool:
        # One batch per worker in flight, no backlog: on Ctrl-C or an error nothing queued keeps running.
        running = {pool.submit(_write_batch, batch, raw_dir, width, height, audio_rate, cancel)
                   for batch in itertools.islice(batches, workers)}
        try:
            while running:
                done, running = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    bar.update(future.result())
                    running |= {pool.submit(_write_batch, batch, raw_dir, width, height, audio_rate, cancel)
                                for batch in itertools.islice(batches, 1)}
        except BaseException:
            cancel.set()  # the other batches stop within a frame and remove their partial files
            concurrent.futures.wait(running)
            raise


__all__ = ["ANSWER_KEY_COLUMNS", "METADATA_COLUMNS", "SynthSummary", "answer_key_path", "synthesize"]
