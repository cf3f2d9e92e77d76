"""`blemore prepare RAW OUT`: a download → a portable, Hub-native folder (parquet with embedded media, a card).

Shards are planned per fold and written by this process while forked workers decode the clips; the work happens in a
hidden staging folder that becomes OUT only once complete, and a rerun reuses the finished shards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import importlib.util
import itertools
import math
import os
import re
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from blemore import BlemoreError, RawClip, clip_example, clip_part, dataset_features, read_clip_media, scan_download
from blemore_toolkit.data.atomic import open_new_file, write_text_atomically
from blemore_toolkit.data.card import join_card, split_card, write_dataset_card

# ---------------------------------------------------------------------------------------------------------------
# `blemore prepare RAW OUT`: a portable, Hub-native folder (parquet with embedded media + README.md dataset card)
# ---------------------------------------------------------------------------------------------------------------

#: Bumped when the prepared format changes, so that a resumed prepare never mixes shards of two formats.
PREPARED_FORMAT_VERSION = 1
DEFAULT_CLIPS_PER_SHARD = 64
#: Clips per parquet row group: what a writer holds in memory at once.
CLIPS_PER_ROW_GROUP = 8
#: Below this many clips, one process reads them all (forking workers costs little, but not nothing).
_CLIPS_WORTH_WORKERS = 8
#: Clips read ahead per worker: keeps workers busy while the writer encodes, and bounds what is held in memory.
_READ_AHEAD_PER_WORKER = 3
#: What reading a clip needs: imported once by the worker server, before it forks the workers, so they inherit it.
#: Only libraries: the toolkit's own modules are imported by each worker (in milliseconds) from prepare's sys.path.
_WORKER_MODULES = ["torchcodec.decoders", "soundfile"]
#: The training copy (``--video-size``): H.264 at CRF 18 keeps faces intact at 256 px (visually lossless for
#: x264), "fast" keeps prepare's cost near that of decoding; a keyframe a second keeps random access cheap.
RESIZED_VIDEO_CODEC = ["-c:v", "libx264", "-preset", "fast", "-crf", "18", "-pix_fmt", "yuv420p", "-threads", "1"]


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
    """Worker initialiser: the decoders loaded, single-threaded torch, and no worker left behind by a killed prepare.

    A thread waits on the pipe that prepare holds for each worker (``parent_process().sentinel``, readable once
    prepare is gone, however it died, even by SIGKILL) and ends the worker then.
    """
    import multiprocessing
    import multiprocessing.connection
    import threading

    for name in _WORKER_MODULES:  # already there when the worker server preloaded them
        importlib.import_module(name)
    sys.modules["torch"].set_num_threads(1)  # as PyTorch's own data-loader workers do: one thread per worker
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def exit_when_parent_dies() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=exit_when_parent_dies, name="blemore-parent-watch", daemon=True).start()


def _media_context():
    """How workers start. On Linux, forked from a worker server (multiprocessing's forkserver) that imports the
    decoders once, so each worker starts in milliseconds (a fresh interpreter would import torch and torchcodec
    again, ~4 s of CPU per worker, which outweighed the work on anything under a few hundred clips). The server is
    a process of its own, so this one never imports torch (seconds of start-up and of exit) and imports what it
    needs meanwhile, on the other core. Elsewhere workers are spawned."""
    import multiprocessing

    if not sys.platform.startswith("linux"):
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # no effect once a server runs: it is reused as it is. worker_server last: it ends the server without teardown.
    context.set_forkserver_preload([*_WORKER_MODULES, "blemore_toolkit.data.worker_server"])
    return context


def start_worker_server() -> None:
    """Start the worker server now, without waiting for it: it imports the decoders while the caller goes on."""
    if _media_context().get_start_method() == "forkserver":
        import multiprocessing.forkserver

        multiprocessing.forkserver.ensure_running()


def _media_pool(num_workers: int):
    """Worker processes (see ``_media_context``) that only read the clips handed to them."""
    import concurrent.futures

    return concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=_media_context(), initializer=_worker_init)


def resize_video(path: Path, short_side: int, fps: float) -> tuple[bytes, int, int] | None:
    """The clip re-encoded with its short side at ``short_side`` pixels (aspect kept, even sizes), sound copied.

    Returns ``(.mov bytes, width, height)``, or ``None`` when the clip is not larger than that already.
    """
    import subprocess
    import tempfile

    from blemore_toolkit.data.synth_encoding import _ffmpeg

    with tempfile.TemporaryDirectory(prefix="blemore-resize-") as tmp:
        out = Path(tmp) / "clip.mov"  # mov, not mp4: it holds any sound the original has (PCM too)
        scale = f"scale='if(gt(iw,ih),-2,{short_side})':'if(gt(iw,ih),{short_side},-2)':flags=area"
        command = [_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", os.fspath(path),
                   "-map", "0:v:0", "-map", "0:a:0?", "-vf", scale, *RESIZED_VIDEO_CODEC,
                   "-g", str(max(1, round(fps))), "-c:a", "copy", "-movflags", "+faststart", os.fspath(out)]
        run = subprocess.run(command, capture_output=True, text=True)
        if run.returncode != 0:
            reason = (run.stderr.strip().splitlines() or [f"exit {run.returncode}"])[-1]
            raise BlemoreError(f"{path}: cannot re-encode to {short_side} px: {reason}")
        data = out.read_bytes()
    from torchcodec.decoders import VideoDecoder

    meta = VideoDecoder(data, seek_mode="approximate").metadata
    return data, int(meta.width), int(meta.height)


def read_resized_media(clip: RawClip, video_size: int, keep_original: bool) -> dict:
    """``read_clip_media`` with the video replaced by its ``video_size`` copy (the original kept beside it or not)."""
    media = read_clip_media(clip)
    if min(media["width"], media["height"]) <= video_size:
        resized = None  # already small enough: stored as it is
    else:
        resized = resize_video(clip.path, video_size, media["fps"])
    original = media["video"]
    if resized is not None:
        data, width, height = resized
        media.update(video={"bytes": data, "path": f"{clip.clip_id}.mov"}, width=width, height=height)
    if keep_original:
        media["original_video"] = original
    return media


def read_clips_media(clips: Sequence[RawClip], num_workers: int = 1, read=read_clip_media) -> Iterator[dict]:
    """``read(clip)`` (``read_clip_media``) of each clip, in order: in worker processes when ``num_workers > 1``.

    Work is handed out clip by clip (so a few large shards still use every worker) with a bounded read-ahead,
    so memory holds only a few clips whatever the dataset size. The first broken clip's BlemoreError is raised.
    The workers start on this call, not on the first ``next`` (calling ``start_worker_server`` earlier lets the
    decoders load meanwhile). ``close()`` stops them.
    """
    if num_workers <= 1:
        return (read(clip) for clip in clips)
    import collections

    pending = iter(clips)
    pool = _media_pool(num_workers)
    window = collections.deque(pool.submit(read, clip)
                               for clip in itertools.islice(pending, num_workers * _READ_AHEAD_PER_WORKER))

    def results() -> Iterator[dict]:
        with pool:
            try:
                while window:
                    media = window.popleft().result()
                    for clip in itertools.islice(pending, 1):
                        window.append(pool.submit(read, clip))
                    yield media
            finally:
                for future in window:
                    future.cancel()

    return _ClosingIterator(results(), pool)


class _ClosingIterator:
    """An iterator whose ``close()`` also shuts its worker pool down when iteration never started."""

    def __init__(self, results: Iterator[dict], pool) -> None:
        self._results, self._pool = results, pool

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        return next(self._results)

    def close(self) -> None:
        self._results.close()
        self._pool.shutdown(wait=True, cancel_futures=True)


def prepared_features(keep_original_video: bool = False):
    """The features of a prepared folder: the dataset's, plus ``original_video`` when the originals are kept."""
    features = dataset_features()
    if keep_original_video:
        import datasets

        features["original_video"] = datasets.Video()
    return features


def _row_encoder(features):
    """``features.encode_example``, except that the media columns (``{"bytes", "path"}`` from ``read_clip_media``)
    are stored as they are. ``datasets``' Audio encoder imports torch on every call (for arrays, which prepare never
    has), seconds that the worker server otherwise spares this process; and its Audio and Video encoders would store
    the path instead of the bytes if a file of the clip's name lay in the working directory.
    """
    import datasets

    media = [name for name, feature in features.items() if isinstance(feature, (datasets.Audio, datasets.Video))]
    others = datasets.Features({name: feature for name, feature in features.items() if name not in media})

    def encode(example: dict) -> dict:
        row = others.encode_example({name: value for name, value in example.items() if name not in media})
        row.update({name: {"bytes": example[name]["bytes"], "path": example[name]["path"]} for name in media})
        return row

    return encode


def write_shard(plan: ShardPlan, data_dir: Path, media: Iterator[dict] | None = None, features=None) -> int:
    """Write the shard's clips as one parquet file (atomically: a temporary file, then rename).

    ``media`` yields ``read_clip_media`` of the shard's clips in order (from workers); without it they are read here.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if media is None:
        media = read_clips_media(plan.clips)
    features = dataset_features() if features is None else features
    encode = _row_encoder(features)
    schema = features.arrow_schema
    final = data_dir / f"{plan.name}.parquet"
    partial = data_dir / f".{plan.name}.{os.getpid()}.partial"
    try:
        # a new file (O_EXCL | O_NOFOLLOW): a link planted at the partial name is removed, never written through
        with open_new_file(partial) as sink, pq.ParquetWriter(sink, schema) as writer:
            for start in range(0, len(plan.clips), CLIPS_PER_ROW_GROUP):
                rows = [encode(clip_example(clip, next(media)))
                        for clip in plan.clips[start:start + CLIPS_PER_ROW_GROUP]]
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
        os.replace(partial, final)
    except OSError as error:  # a full disk, a quota, a file size limit: pyarrow's own OSError says which
        reason = error.strerror or str(error).split(". Detail:")[0]
        raise BlemoreError(f"{final}: cannot write this shard ({reason}); nothing was written to OUT, and a rerun "
                           "reuses the shards already finished") from None
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
    video_size: int | None = None,
    keep_original_video: bool = False,
    drop_features: bool = False,
) -> PrepareResult:
    """Turn a download into a Hub-native folder that ``datasets.load_dataset(out_dir)`` reads offline.

    The work happens in a hidden sibling folder (``.<name>.incomplete``) that becomes ``out_dir`` only once
    complete, so an interrupted run never leaves a folder that loads; rerunning reuses the finished shards.
    Nothing outside OUT and its two hidden siblings (staging and lock) is ever written or deleted: an OUT that is,
    holds or lies inside RAW is refused before anything is touched.

    ``video_size`` (e.g. 256) stores a training copy of each video, re-encoded with its short side at that many
    pixels (decoding it costs a fraction of decoding 720p or 1080p); ``keep_original_video`` keeps the original
    file too, in an ``original_video`` column. Both are recorded in the card.

    ``overwrite`` replaces only a folder that prepare wrote (it carries prepare's marker, ``.blemore-prepared``, and
    nothing prepare did not write). The features configs stored in it (``blemore features``) are carried over when
    its clips are unchanged; otherwise they are deleted only with ``drop_features``, else the run is refused.
    """
    if video_size is not None and video_size < 16:
        raise BlemoreError(f"--video-size must be at least 16 pixels, got {video_size}")
    if keep_original_video and video_size is None:
        raise BlemoreError("--keep-original-video only makes sense with --video-size")
    out = Path(os.path.abspath(out_dir))  # `prepare . .`: a name to put the staging folder beside
    if clips_per_shard < 1:
        raise BlemoreError(f"--clips-per-shard {clips_per_shard}: a shard holds at least one clip")
    refuse_out_overlapping_raw(Path(raw_dir), out)
    refuse_long_name(out)
    with prepare_lock(out):
        return _prepare_locked(raw_dir, out, num_workers, clips_per_shard, overwrite, progress, video_size,
                               keep_original_video, drop_features)


#: The longest suffix prepare adds to OUT's name for a sibling (``.<OUT>.replaced-XXXXXXXX``).
_SIBLING_EXTRA = len(".") + len(".replaced-") + 8


def refuse_long_name(out: Path) -> None:
    """``BlemoreError`` when OUT's name leaves no room for the hidden siblings prepare makes beside it."""
    try:
        limit = os.pathconf(out.parent if out.parent.is_dir() else "/", "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    room = limit - _SIBLING_EXTRA
    if len(os.fsencode(out.name)) > room:
        raise BlemoreError(f"{out.name[:40]}...: the name of OUT is {len(os.fsencode(out.name))} bytes long; prepare "
                           f"stages it beside OUT as .<name>.incomplete, so give a name of at most {room} bytes")


def refuse_out_overlapping_raw(raw: Path, out: Path) -> None:
    """``BlemoreError`` when OUT is RAW, contains it or is inside it (symlinks resolved): replacing OUT, or
    staging next to it, would then delete or litter the user's download."""
    raw_real, out_real = raw.resolve(), out.resolve()
    if out.parent == out or not out.name:
        raise BlemoreError(f"{out}: not a folder prepare can write (give a new folder, e.g. ./blemore)")
    if out_real == raw_real:
        why = "is the download folder RAW itself"
    elif raw_real in out_real.parents:
        why = f"is inside the download folder RAW ({raw_real})"
    elif out_real in raw_real.parents:
        why = f"contains the download folder RAW ({raw_real})"
    else:
        return
    raise BlemoreError(f"{out}: OUT {why}; prepare writes and replaces OUT, so give a folder outside RAW "
                       "(e.g. a sibling: blemore prepare RAW blemore)")


@contextlib.contextmanager
def prepare_lock(out: Path) -> Iterator[None]:
    """Hold ``.<name>.lock`` beside OUT: a second prepare into the same OUT is told so instead of colliding.

    The lock file is opened without following a symlink planted at its name, and removed when done; a lock taken on
    a file that another prepare removed meanwhile is taken again on the new one.
    """
    import errno
    import fcntl

    path = out.parent / f".{out.name}.lock"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise BlemoreError(f"{out.parent}: is a file, not a folder to write OUT in") from None
    except OSError as error:
        raise BlemoreError(f"{error.filename or out.parent}: cannot write here ({error.strerror})") from None
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.EISDIR):
                what = "a symlink" if error.errno == errno.ELOOP else "a folder"
                raise BlemoreError(f"{path}: is {what}, not a lock file of blemore prepare; remove it") from None
            raise BlemoreError(f"{out.parent}: cannot write here ({error.strerror})") from None
        held = os.pread(fd, 64, 0)
        if held.strip() and not held.strip().isdigit():  # prepare's lock holds a pid or nothing: this is a user's
            os.close(fd)
            raise BlemoreError(f"{path}: a file prepare did not write (prepare keeps its lock there); move it and "
                               "run again")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise BlemoreError(f"{out}: another `blemore prepare` (pid {holder}) is writing it; wait for it to end "
                               "(or stop it) and run again") from None
        try:
            same_file = os.fstat(fd).st_ino == os.lstat(path).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


#: Inside a staging folder: says the toolkit made it (a folder without it is never emptied or reused).
_STAGING_MARKER = ".blemore-prepare-staging"
#: The staging folder's README until the real card replaces it: with it ``load_dataset`` finds no data there, so a
#: staging folder left by an interrupted prepare never loads as if it were a dataset.
_STAGING_README = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: "UNFINISHED-blemore-prepare--rerun-it-to-finish/*.parquet"
---
An unfinished `blemore prepare`: rerun the same command to finish it (the shards written so far are reused).
"""


def make_staging(staging: Path) -> None:
    """Create the staging folder, or check that an existing one is a plain folder this toolkit made for this user.

    A new one is made with ``mkdir`` (which never follows a symlink at its name) and mode 0700, so nobody else can
    plant files or links inside it; an existing path that is a symlink, not a folder, someone else's, writable by
    others, or lacks the toolkit's marker is refused rather than emptied.
    """
    import stat

    try:
        staging.mkdir(mode=0o700)
        write_text_atomically(staging / _STAGING_MARKER, f"format={PREPARED_FORMAT_VERSION}\n")
    except FileExistsError:
        info = staging.lstat()
        problem = (
            "is a symlink" if stat.S_ISLNK(info.st_mode) else "is not a folder" if not stat.S_ISDIR(info.st_mode)
            else "belongs to another user" if info.st_uid != os.getuid()
            else "is writable by other users" if info.st_mode & 0o022
            else "was not made by blemore prepare" if not (staging / _STAGING_MARKER).is_file() else None
        )
        if problem:
            raise BlemoreError(f"{staging}: {problem}; prepare stages OUT there and will not reuse or empty it; "
                               "remove it and run again") from None
    except OSError as error:  # read-only, no space, quota
        raise BlemoreError(f"{staging.parent}: cannot write here ({error.strerror})") from None
    for sub in ("data", ".done"):
        path = staging / sub
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            raise BlemoreError(f"{path}: not a plain folder; remove {staging} and run again")
        path.mkdir(exist_ok=True)
    try:  # replaces whatever is at README.md (a link included, never followed)
        write_text_atomically(staging / "README.md", _STAGING_README)
    except OSError as error:
        raise BlemoreError(f"{staging / 'README.md'}: cannot write ({error.strerror}); remove {staging} and run "
                           "again") from None


def _clear_stale(folder: Path, keep: set[str]) -> None:
    """Remove what a previous run left in a staging subfolder, except the reusable shards (links are unlinked, never
    followed)."""
    for stale in folder.iterdir():
        if stale.name.removesuffix(".parquet") in keep:
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale)
        else:
            stale.unlink()


#: In a prepared folder: says prepare wrote it (what --overwrite may replace), with the fingerprints of its shards.
PREPARED_MARKER = ".blemore-prepared"
_MARKER_GENERATOR = "blemore prepare"
#: What prepare (and ``blemore features``) write in OUT: anything else in it is someone else's and is never deleted.
_OUT_ENTRIES = {"README.md", "data", "features", PREPARED_MARKER, _STAGING_MARKER}
FEATURES_DIR = "features"
#: The files prepare writes in OUT/data: shards, and the hidden partial file of one being written.
_OUT_DATA_FILE = re.compile(r"[a-z0-9]+-\d{5}-of-\d{5}\.parquet|\.[a-z0-9]+-\d{5}-of-\d{5}\.\d+\.partial")


@dataclasses.dataclass
class _Replaced:
    """What is known about the OUT that ``--overwrite`` replaces: its shards' fingerprints and features configs."""

    fingerprints: dict[str, str]
    feature_configs: list[str]


def _read_marker(out: Path) -> dict | None:
    """The content of OUT's prepare marker, or ``None`` when there is no plain-file marker of prepare there."""
    import json

    marker = out / PREPARED_MARKER
    if marker.is_symlink() or not marker.is_file():
        return None
    try:
        content = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return content if isinstance(content, dict) and content.get("generator") == _MARKER_GENERATOR else None


def _check_replaceable(out: Path) -> _Replaced:
    """With --overwrite, OUT is deleted: only when it is empty, or a folder prepare marked as its own that holds
    nothing prepare did not write. Returns what the replaced folder held (shard fingerprints, features configs)."""
    if out.is_symlink() or not out.is_dir():
        what = "a symlink" if out.is_symlink() else "not a folder"
        raise BlemoreError(f"{out}: exists and is {what}; --overwrite replaces only a folder prepare wrote")
    entries = sorted(path.name for path in out.iterdir())
    if not entries:
        return _Replaced({}, [])
    marker = _read_marker(out)
    if marker is None:
        if (out / "README.md").is_file() and (out / "data").is_dir():
            raise BlemoreError(f"{out}: has no {PREPARED_MARKER} marker (a folder prepared by an older version, or "
                               "not by `blemore prepare`); --overwrite replaces only folders prepare marked: if it is "
                               f"a dataset you no longer need, remove it yourself (rm -r {out}) and run again")
        raise BlemoreError(f"{out}: exists and is not a prepared dataset folder (no README.md, data/ and "
                           f"{PREPARED_MARKER}); --overwrite replaces only a folder written by `blemore prepare`")
    foreign = [name for name in entries if name not in _OUT_ENTRIES]
    foreign += [f"{sub}/ (not a plain folder)" for sub in ("data", FEATURES_DIR)
                if (out / sub).is_symlink() or ((out / sub).exists() and not (out / sub).is_dir())]
    if not foreign and (out / "data").is_dir():
        foreign = [f"data/{path.name}" for path in sorted((out / "data").iterdir())
                   if path.is_symlink() or not path.is_file() or not _OUT_DATA_FILE.fullmatch(path.name)]
    if foreign:
        raise BlemoreError(f"{out}: holds {', '.join(foreign[:3])}, which prepare did not write; --overwrite would "
                           "delete it: move it out of the folder (or remove the folder yourself) and run again")
    features = out / FEATURES_DIR
    configs = sorted(path.name for path in features.iterdir()) if features.is_dir() else []
    fingerprints = marker.get("shards")
    return _Replaced(fingerprints if isinstance(fingerprints, dict) else {}, configs)


def _carry_features(replaced: _Replaced | None, fingerprints: dict[str, str], drop_features: bool,
                    out: Path) -> bool:
    """Whether the replaced folder's features configs move into the new one (its clips unchanged); ``BlemoreError``
    when they would be lost and ``drop_features`` does not say so."""
    if replaced is None or not replaced.feature_configs:
        return False
    if replaced.fingerprints == fingerprints:
        return True
    if drop_features:
        return False
    names = ", ".join(replaced.feature_configs[:5]) + (" ..." if len(replaced.feature_configs) > 5 else "")
    raise BlemoreError(f"{out}: holds features configs ({names}) computed from clips that changed (or from other "
                       "prepare settings); --overwrite would delete them: pass --drop-features to delete them too, "
                       f"or move {out / FEATURES_DIR} elsewhere first")


def _merge_feature_configs(staging: Path, out: Path, configs: list[str]) -> None:
    """Add the features configs of the replaced card (``configs`` and ``dataset_info`` entries) to the new card."""
    new_readme, old_readme = staging / "README.md", out / "README.md"
    metadata, body = split_card(new_readme.read_text(encoding="utf-8"), new_readme)
    try:
        old, _ = split_card(old_readme.read_text(encoding="utf-8"), old_readme)
    except (OSError, UnicodeDecodeError, BlemoreError):
        old = {}
    names = set(configs)
    metadata["configs"] += [c for c in old.get("configs") or [] if isinstance(c, dict) and c.get("config_name")
                            in names]
    metadata["dataset_info"] += [i for i in old.get("dataset_info") or [] if isinstance(i, dict)
                                 and i.get("config_name") in names]
    write_text_atomically(new_readme, join_card(metadata, body))


def _replace_out(staging: Path, out: Path, carry_features: bool) -> None:
    """Swap the finished staging folder in for OUT. The old OUT goes into a hidden folder made here for it
    (``.<OUT>.replaced-XXXXXXXX``, a new name: nothing of the user's is ever reused or deleted), then is removed."""
    import tempfile

    trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.replaced-", dir=out.parent))
    old = trash / "old"
    out.rename(old)
    if carry_features and (old / FEATURES_DIR).is_dir():
        (old / FEATURES_DIR).rename(staging / FEATURES_DIR)
    staging.rename(out)
    shutil.rmtree(trash)


def _prepare_locked(raw_dir, out: Path, num_workers, clips_per_shard, overwrite, progress, video_size,
                    keep_original_video, drop_features=False) -> PrepareResult:
    import json

    replaced = None
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise BlemoreError(f"{out} already exists; pass --overwrite to replace it")
        replaced = _check_replaceable(out)
    scan = scan_download(raw_dir)
    plans = plan_shards(scan.clips, clips_per_shard)
    video = {"short_side": video_size, "originals": "kept in original_video" if keep_original_video else
             "dropped"} if video_size else None
    fingerprints = {plan.name: plan.fingerprint() + (f" video={video}" if video else "") for plan in plans}
    carry = _carry_features(replaced, fingerprints, drop_features, out)
    notes = list(scan.notes)
    if replaced is not None and replaced.feature_configs:
        names = ", ".join(replaced.feature_configs)
        notes.append(f"features configs kept from the replaced {out.name} (its clips are unchanged): {names}" if carry
                     else f"features configs of the replaced {out.name} deleted (--drop-features): {names}")

    staging = out.parent / f".{out.name}.incomplete"
    data_dir, done_dir = staging / "data", staging / ".done"
    make_staging(staging)
    reusable = {
        name for name, fingerprint in fingerprints.items()
        if (data_dir / f"{name}.parquet").is_file() and (done_dir / name).is_file()
        and not (done_dir / name).is_symlink() and (done_dir / name).read_text() == fingerprint
    }
    _clear_stale(data_dir, reusable)
    _clear_stale(done_dir, reusable)
    todo = [plan for plan in plans if plan.name not in reusable]

    from tqdm.auto import tqdm

    with tqdm(total=sum(len(p.clips) for p in plans), initial=sum(len(p.clips) for p in plans if p.name in reusable),
              unit="clip", desc="prepare", disable=not progress) as bar:
        for plan in _run_shards(todo, data_dir, num_workers, video_size, keep_original_video):
            try:
                write_text_atomically(done_dir / plan.name, fingerprints[plan.name])
            except OSError as error:
                raise BlemoreError(f"{done_dir / plan.name}: cannot write ({error.strerror}); {out} was not "
                                   "written, rerun to finish") from None
            bar.update(len(plan.clips))

    try:
        write_dataset_card(staging, scan, video=video, features=prepared_features(keep_original_video))
        if carry:
            _merge_feature_configs(staging, out, replaced.feature_configs)
        write_text_atomically(staging / PREPARED_MARKER, json.dumps(
            {"generator": _MARKER_GENERATOR, "format": PREPARED_FORMAT_VERSION, "shards": fingerprints}, indent=1))
    except OSError as error:
        raise BlemoreError(f"{staging / 'README.md'}: cannot write the dataset card ({error.strerror or error}); "
                           f"{out} was not written, rerun to finish") from None
    shutil.rmtree(done_dir)
    if out.exists():
        _replace_out(staging, out, carry)
    else:
        staging.rename(out)
    (out / _STAGING_MARKER).unlink()
    out.chmod(0o777 & ~_umask())  # staged private (0700); the result gets the permissions of any new folder
    return PrepareResult(out, len(scan.clips), len(todo), len(reusable), notes)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _run_shards(plans: list[ShardPlan], data_dir: Path, num_workers: int | None, video_size: int | None = None,
                keep_original_video: bool = False) -> Iterator[ShardPlan]:
    """Write shards one after the other, the clips' media read by workers; yield each plan once its file is complete.

    Only this process writes into ``data_dir``: workers just read clips, so a killed prepare leaves at most one
    partial file (hidden, removed by the rerun).
    """
    num_clips = sum(len(p.clips) for p in plans)
    if num_workers is None:
        num_workers = (os.cpu_count() or 1) if num_clips >= _CLIPS_WORTH_WORKERS else 1
    num_workers = min(num_workers, num_clips)
    read = read_clip_media if video_size is None else functools.partial(
        read_resized_media, video_size=video_size, keep_original=keep_original_video)
    if num_workers > 1:  # the worker server imports the decoders while this process imports datasets and pyarrow
        start_worker_server()
    features = prepared_features(keep_original_video)
    import pyarrow.parquet  # noqa: F401  (loaded here, before the workers take the cores)

    media = read_clips_media([clip for plan in plans for clip in plan.clips], num_workers, read)
    try:
        for plan in plans:
            write_shard(plan, data_dir, media, features)
            yield plan
    finally:
        media.close()


