"""How fast and how lean `blemore prepare` is.

Prints, for synthetic 720p clips: seconds per clip for `prepare` (all cores), the same clips through a naive loop of
one `ffmpeg` process per clip extracting 16 kHz mono audio (what many challenge scripts do), their ratio, and the
peak memory of the prepare process tree. With --full it also prepares the full-size (3,050-clip) synthetic set and
prints its peak memory.

    .venv/bin/python benchmarks/bench_prepare.py                      # 48 clips at 1280x720
    .venv/bin/python benchmarks/bench_prepare.py --clips 96 --full    # + the 3,050-clip set (several minutes)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

import blemore
from blemore_toolkit.synth import synthesize, write_clip


class PeakMemory:
    """Samples the resident memory of this process and all its children (the prepare workers), summed."""

    def __init__(self, interval_s: float = 0.05):
        self.interval_s, self.peak, self._stop = interval_s, 0, threading.Event()

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for process in [me, *me.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(self.interval_s)

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def make_720p_download(root: Path, count: int) -> Path:
    """``count`` real-named clips at 1280x720 (folds come from the manifest), 2-6 s long."""
    names = [n for n, entry in blemore.load_manifest().items() if entry.split == "train"][:count]
    (root / "clips").mkdir(parents=True)
    for i, name in enumerate(names):
        label = blemore.parse_clip_name(name)
        write_clip(root / "clips" / f"{name}.mov", label.emotions, label.salience, width=1280, height=720,
                   fps=(25, 30)[i % 2], duration_s=2.0 + (i % 5), seed=i)
    return root


def naive_ffmpeg_loop(clips: list[Path], out_dir: Path) -> float:
    out_dir.mkdir()
    start = time.perf_counter()
    for clip in clips:
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(clip), "-vn", "-ac", "1", "-ar",
                        "16000", str(out_dir / f"{clip.stem}.wav")], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--full", action="store_true", help="also prepare the full-size 3,050-clip synthetic set")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        raw = make_720p_download(tmp / "raw720", args.clips)
        clips = blemore.find_clip_files(raw)
        size_mb = sum(c.stat().st_size for c in clips) / 1e6
        print(f"synthesised {len(clips)} clips at 1280x720 ({size_mb:.1f} MB) in {time.perf_counter() - t0:.1f} s")

        naive_s = naive_ffmpeg_loop(clips, tmp / "naive")
        with PeakMemory() as memory:
            t0 = time.perf_counter()
            blemore.prepare_dataset(raw, tmp / "prepared720", num_workers=args.workers, progress=False)
            prepare_s = time.perf_counter() - t0
        per_clip_ms = prepare_s / len(clips) * 1000
        print(f"prepare:              {per_clip_ms:7.1f} ms/clip ({prepare_s:.2f} s for {len(clips)})")
        print(f"naive ffmpeg loop:    {naive_s / len(clips) * 1000:7.1f} ms/clip ({naive_s:.2f} s)")
        print(f"speed-up:             {naive_s / prepare_s:7.2f}x  (target >= 3x)")
        print(f"peak memory (720p):   {memory.peak / 2**20:7.0f} MiB")

        if args.full:
            t0 = time.perf_counter()
            full_raw = tmp / "full"
            synthesize(full_raw, full=True, seed=0)
            print(f"synthesised the full-size set in {time.perf_counter() - t0:.0f} s")
            with PeakMemory() as memory:
                t0 = time.perf_counter()
                result = blemore.prepare_dataset(full_raw, tmp / "prepared_full", num_workers=args.workers,
                                                 progress=False)
                full_s = time.perf_counter() - t0
            print(f"full set: {result.num_clips} clips prepared in {full_s:.0f} s "
                  f"({full_s / result.num_clips * 1000:.1f} ms/clip); peak memory {memory.peak / 2**20:.0f} MiB "
                  "(target < 1024 MiB)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
