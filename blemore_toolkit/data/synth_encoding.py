"""Encoding ``blemore synth``'s clips to ``.mov`` files (H.264 yuv420p + mono AAC) with the ffmpeg command line.

``write_clip`` writes one clip; ``write_clips`` writes several with one ffmpeg process (its start-up costs more
than encoding one small clip), each clip's frames through a pipe of its own. x264 runs single-threaded and the
muxing is bit-exact without metadata, so the same arguments give the same bytes whatever the batching, and a clip
appears under its name only when it is complete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from blemore import BlemoreError
from blemore_toolkit.data.synth_audio import DEFAULT_AUDIO_RATE, render_audio
from blemore_toolkit.data.synth_frames import DEFAULT_SIZE, _Picture, _Yuv420Picture, iter_frames
from blemore_toolkit.data.synth_signal import ActorStyle, _check_label, _frame_count

PIPE_BUFFER_BYTES = 1 << 20


# ---------------------------------------------------------------------------------------------------------------
# Encoding one clip
# ---------------------------------------------------------------------------------------------------------------


def _write_pcm(path: Path, samples: np.ndarray) -> None:
    """Raw 16-bit little-endian samples, which ffmpeg reads as told. A WAV is probed instead, for hidden S/PDIF
    data among others, and that cost about as much CPU as encoding the sound to AAC."""
    (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2").tofile(path)


def _ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        raise BlemoreError("ffmpeg not found on PATH: blemore synth encodes clips with it (Debian: apt-get install "
                           "ffmpeg)")
    return path


@dataclasses.dataclass(frozen=True)
class ClipJob:
    """One clip for ``write_clips``: the arguments of ``write_clip``."""

    path: Path
    emotions: tuple[str, ...]
    salience: tuple[int, ...]
    width: int = DEFAULT_SIZE[0]
    height: int = DEFAULT_SIZE[1]
    fps: float = 25
    duration_s: float = 2.0
    seed: int = 0
    intensity: float | None = None
    with_audio: bool = True
    actor_style: ActorStyle = ActorStyle()
    audio_rate: int = DEFAULT_AUDIO_RATE

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def num_frames(self) -> int:
        return _frame_count(self.fps, self.duration_s)

    def frames(self) -> Iterator[np.ndarray]:
        return iter_frames(self.emotions, self.salience, width=self.width, height=self.height, fps=self.fps,
                           duration_s=self.num_frames / self.fps, seed=self.seed, intensity=self.intensity,
                           actor_style=self.actor_style)

    def yuv420_frames(self) -> Iterator[np.ndarray]:
        """The frames of ``frames()`` as yuv420p bytes, what ``write_clips`` pipes to ffmpeg."""
        emotions, salience = _check_label(self.emotions, self.salience)
        picture = _Yuv420Picture(_Picture(emotions, salience, self.width, self.height, self.fps, self.seed,
                                          self.intensity, self.actor_style))
        for index in range(self.num_frames):
            yield picture.frame(index)

    def audio(self) -> np.ndarray:
        return render_audio(self.emotions, self.salience, sample_rate=self.audio_rate,
                            duration_s=self.num_frames / self.fps, seed=self.seed, intensity=self.intensity,
                            actor_style=self.actor_style)


def write_clip(
    path: str | os.PathLike,
    emotions: Sequence[str],
    salience: Sequence[float],
    *,
    width: int = DEFAULT_SIZE[0],
    height: int = DEFAULT_SIZE[1],
    fps: float = 25,
    duration_s: float = 2.0,
    seed: int = 0,
    intensity: float | None = None,
    with_audio: bool = True,
    actor_style: ActorStyle | None = None,
    audio_rate: int = DEFAULT_AUDIO_RATE,
) -> None:
    """Write one ``.mov`` (H.264 yuv420p + mono AAC) whose picture and sound carry the label.

    The duration is rounded to whole frames and the sound has exactly the picture's length. ``with_audio=False``
    writes a clip without an audio stream (a broken input for tests). The file appears under its name only when
    complete (written to a hidden ``.part`` file first), and the same arguments give the same bytes.
    """
    emotions, salience = _check_label(emotions, salience)
    write_clips([ClipJob(Path(path), emotions, salience, width, height, fps, duration_s, seed, intensity,
                         with_audio, actor_style or ActorStyle(), audio_rate)])


class Cancelled(Exception):
    """A batch stopped because ``write_clips`` was asked to (another batch failed, or Ctrl-C)."""


# Single-threaded x264 and bit-exact muxing without metadata: same input, same bytes. "ultrafast" encodes these
# clips in about half the CPU time of "veryfast" (files about twice as large); the readout stays at full accuracy.
_VIDEO_CODEC = ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "20", "-pix_fmt", "yuv420p", "-threads", "1",
                "-flags:v", "+bitexact"]
_AUDIO_CODEC = ["-c:a", "aac", "-aac_coder", "fast", "-b:a", "64k", "-ac", "1", "-flags:a", "+bitexact"]
_MUXER = ["-fflags", "+bitexact", "-map_metadata", "-1", "-map_chapters", "-1", "-f", "mov"]


def write_clips(jobs: Sequence[ClipJob], *, cancel: threading.Event | None = None) -> None:
    """Encode several clips with one ``ffmpeg`` process (its start-up costs more than encoding a small clip).

    Each clip's raw yuv420p frames go through a pipe of their own, fed by a thread; the sound goes through a
    temporary raw PCM file. Each output is encoded independently, so a clip's bytes do not depend on the batch it
    was written in.
    Setting ``cancel`` stops the batch within a frame: nothing of it is written and ``Cancelled`` is raised.
    """
    if not jobs:
        return
    for job in jobs:
        _check_label(job.emotions, job.salience)
        if job.width % 2 or job.height % 2 or job.width < 16 or job.height < 16:
            raise ValueError(f"{job.path.name}: width and height must be even and at least 16 (yuv420p), "
                             f"got {job.width}x{job.height}")
    parts = [job.path.with_name(f".{job.path.name}.part") for job in jobs]
    with tempfile.TemporaryDirectory(prefix="blemore-synth-") as tmp, _Descriptors() as descriptors:
        inputs, outputs, pipes = [], [], []
        for i, (job, part) in enumerate(zip(jobs, parts)):
            video_index = len(inputs)
            maps = ["-map", f"{video_index}:v"]
            codecs = _VIDEO_CODEC + ["-g", str(round(job.fps))]
            inputs.append(["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{job.width}x{job.height}",
                           "-framerate", str(job.fps), "-i", None])  # the pipe, below
            if job.with_audio:
                pcm = Path(tmp) / f"{i}.pcm"
                _write_pcm(pcm, job.audio())
                maps += ["-map", f"{len(inputs)}:a"]
                inputs.append(["-f", "s16le", "-ar", str(job.audio_rate), "-ac", "1", "-i", os.fspath(pcm)])
                codecs += _AUDIO_CODEC
            outputs.append(maps + codecs + _MUXER + [os.fspath(part)])
            read_end, write_end = descriptors.pipe()
            pipes.append((read_end, write_end))
            inputs[video_index][-1] = f"pipe:{read_end}"
        command = [_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
        command += [arg for group in inputs + outputs for arg in group]
        log_path = Path(tmp) / "ffmpeg.log"
        with open(log_path, "wb") as log:
            # A session of its own: Ctrl-C in a terminal (SIGINT to the whole process group) reaches this process
            # alone, which stops ffmpeg itself. Were ffmpeg to get it too, it could exit first and its failure
            # beat the KeyboardInterrupt to the main thread: "ffmpeg failed" and exit 1 instead of "interrupted".
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                       pass_fds=[r for r, _ in pipes], start_new_session=True)
            for read_end, _ in pipes:
                descriptors.close(read_end)  # ffmpeg holds them now; our copies would keep the pipes from breaking
            feeders = [_FrameFeeder(job, write_end, descriptors, cancel) for job, (_, write_end) in zip(jobs, pipes)]
            try:
                for feeder in feeders:
                    feeder.join()
                    if feeder.error is not None and not isinstance(feeder.error, BrokenPipeError):
                        process.kill()  # the other pipes would otherwise be encoded for nothing
                returncode = process.wait()
            except BaseException:
                process.kill()
                process.wait()
                for feeder in feeders:
                    feeder.join()
                for part in parts:
                    part.unlink(missing_ok=True)
                raise
        failures = [f.error for f in feeders if f.error is not None and not isinstance(f.error, BrokenPipeError)]
        if returncode != 0 or failures:
            for part in parts:
                part.unlink(missing_ok=True)
            if failures:
                raise failures[0]
            message = log_path.read_text(errors="replace").strip().splitlines()
            names = ", ".join(job.path.name for job in jobs)
            raise BlemoreError(f"ffmpeg failed writing {names}: {message[-1] if message else f'exit {returncode}'}")
    for job, part in zip(jobs, parts):
        os.replace(part, job.path)


class _FrameFeeder(threading.Thread):
    """Renders one clip's frames into its pipe; a thread per clip so that no pipe waits on another."""

    def __init__(self, job: ClipJob, write_end: int, descriptors: _Descriptors, cancel: threading.Event | None):
        super().__init__(daemon=True)
        self.job, self.write_end, self.descriptors, self.cancel = job, write_end, descriptors, cancel
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            with open(self.write_end, "wb", closefd=False) as pipe:
                for frame in self.job.yuv420_frames():
                    if self.cancel is not None and self.cancel.is_set():
                        raise Cancelled(f"{self.job.path.name}: cancelled")
                    pipe.write(frame.data)
        except BaseException as error:  # reported by write_clips, which owns the ffmpeg process
            self.error = error
        finally:
            self.descriptors.close(self.write_end)  # end of input for ffmpeg


class _Descriptors:
    """Pipe ends that are closed by whoever finishes with them first, exactly once (a second ``os.close`` could
    hit a descriptor number already reused by another thread), and all of them on the way out."""

    def __init__(self) -> None:
        self._open: set[int] = set()
        self._lock = threading.Lock()

    def pipe(self) -> tuple[int, int]:
        read_end, write_end = os.pipe()
        if hasattr(fcntl, "F_SETPIPE_SZ"):  # Linux: room for several frames, so feeder and ffmpeg rarely wait
            with contextlib.suppress(OSError):
                fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_BUFFER_BYTES)
        with self._lock:
            self._open.update((read_end, write_end))
        return read_end, write_end

    def close(self, fd: int) -> None:
        with self._lock:
            if fd not in self._open:
                return
            self._open.remove(fd)
        os.close(fd)

    def __enter__(self) -> _Descriptors:
        return self

    def __exit__(self, *exc_info) -> None:
        for fd in list(self._open):
            self.close(fd)


__all__ = ["Cancelled", "ClipJob", "write_clip", "write_clips"]
