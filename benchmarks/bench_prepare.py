"""How fast and how lean `blemore prepare` is.

Prints, for synthetic 720p clips: seconds per clip for `blemore prepare` run as a command (what a user runs: a fresh
process that imports its libraries and starts its workers, all counted), the same clips through a naive loop of one
`ffmpeg` process per clip extracting 16 kHz mono audio (what many challenge scripts do), their ratio, and the peak
memory of the prepare process tree. It then prepares the same clips again inside this process, with the decoders
already loaded, to show the steady per-clip cost that the fixed start-up (~5 s: torch and torchcodec imports) hides
on small runs. With --full it also prepares the full-size (3,050-clip, 64x48) synthetic set and prints its peak
memory.

Peak memory is sampled every 0.25 s (reading PSS costs ~5 ms a process) over the whole process tree, as two sums:
RSS (counts the pages that forked workers share with prepare once per process, so it overstates) and PSS (shared
pages split between the processes sharing them: what the tree really uses). The target (< 1 GB) is checked on PSS.

720p clips are slow to synthesise (seconds each on two cores), so `--distinct` clips are made and copied under
further real names up to `--clips` files; prepare and the naive loop read exactly the same files.

    .venv/bin/python benchmarks/bench_prepare.py                          # 96 clips at 1280x720
    .venv/bin/python benchmarks/bench_prepare.py --clips 480 --full       # + the 3,050-clip set (minutes)
    .venv/bin/python benchmarks/bench_prepare.py --work /tmp/bench        # keep the synthesised clips for reruns

The loop and the command run as ``--pairs`` paired runs (loop, prepare, loop, prepare, ...); the speed-up is printed
as the median and range of the per-pair ratios, beside its target (>= 3x).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

import blemore
from blemore_toolkit.data.prepare import prepare_dataset
from blemore_toolkit.data.synth import synthesize
from blemore_toolkit.data.synth_encoding import write_clip


class PeakMemory:
    """Samples a process (the prepare command) and all its descendants (its workers)."""

    def __init__(self, pid: int, interval_s: float = 0.25):
        self.pid, self.interval_s, self.peak_rss, self.peak_pss = pid, interval_s, 0, 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = pss = 0
            try:
                root = psutil.Process(self.pid)
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                tree = []
            for process in tree:
                try:
                    info = process.memory_full_info()
                except psutil.Error:
                    continue
                rss, pss = rss + info.rss, pss + getattr(info, "pss", info.rss)
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            time.sleep(self.interval_s)

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def __str__(self) -> str:
        return f"{self.peak_pss / 2**20:.0f} MiB PSS ({self.peak_rss / 2**20:.0f} MiB RSS summed)"


def make_720p_download(root: Path, count: int, distinct: int) -> Path:
    """``count`` real-named clips at 1280x720 (folds come from the manifest), 2-6 s long, ``distinct`` of them
    synthesised and the rest copies of those under further names. Reused when ``root`` already holds them."""
    names = [n for n, entry in blemore.load_manifest().items() if entry.split == "train"][:count]
    clips = root / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        path = clips / f"{name}.mov"
        if path.exists():
            continue
        if i < distinct:
            label = blemore.parse_clip_name(name)
            write_clip(path, label.emotions, label.salience, width=1280, height=720, fps=(25, 30)[i % 2],
                       duration_s=2.0 + (i % 5), seed=i)
        else:
            shutil.copyfile(clips / f"{names[i % distinct]}.mov", path)
    for extra in set(clips.glob("*.mov")) - {clips / f"{n}.mov" for n in names}:
        extra.unlink()
    return root


class Timer:
    """Wall time and CPU time (this process and its finished children: workers, ffmpeg, the prepare command).

    CPU time does not depend on what else the machine runs, wall time does: both are printed."""

    @staticmethod
    def _cpu() -> float:
        finished = sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                         resource.getrusage(resource.RUSAGE_CHILDREN)))
        running = 0.0  # children still alive, e.g. the worker server of an in-process prepare (and its workers)
        for child in psutil.Process().children():
            try:
                times = child.cpu_times()
            except psutil.Error:
                continue
            running += times.user + times.system + times.children_user + times.children_system
        return finished + running

    def __enter__(self):
        self._wall, self._cpu0, self.wall = time.perf_counter(), self._cpu(), None
        return self

    def stop_wall(self) -> None:
        """End the wall time here (CPU time goes on until the block ends)."""
        self.wall = time.perf_counter() - self._wall

    def __exit__(self, *exc):
        self.tree_wall, self.cpu = time.perf_counter() - self._wall, self._cpu() - self._cpu0
        self.wall = self.tree_wall if self.wall is None else self.wall

    @property
    def cores(self) -> float:
        return self.cpu / self.wall


def naive_ffmpeg_loop(clips: list[Path], out_dir: Path) -> Timer:
    out_dir.mkdir()
    with Timer() as timer:
        for clip in clips:
            subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(clip), "-vn", "-ac", "1",
                            "-ar", "16000", str(out_dir / f"{clip.stem}.wav")], check=True)
    return timer


def adopt_orphans() -> bool:
    """Make this process the reaper of its descendants' orphans (Linux): the worker server that prepare starts
    outlives it by the moment it takes to exit, and only a process that reaps it (and, through it, the workers)
    gets their CPU time counted."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def reap_orphans() -> None:
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def prepare_command(raw: Path, out: Path, workers: int | None) -> tuple[Timer, PeakMemory, float]:
    """`blemore prepare RAW OUT` in a fresh process: its times (wall: until it exits, what a user waits for; CPU:
    its whole process tree), the peak memory of its process tree, and the seconds until the last process of the
    tree ended (a reader of its output pipe waits that long)."""
    command = [sys.executable, "-c", "import sys, blemore; sys.exit(blemore.main())", "prepare", str(raw), str(out),
               "--quiet"] + (["--workers", str(workers)] if workers else [])
    with Timer() as timer:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        with PeakMemory(process.pid) as memory:
            if process.wait():
                raise SystemExit(f"prepare failed ({process.returncode}): {' '.join(command)}")
        timer.stop_wall()
        reap_orphans()
    return timer, memory, timer.tree_wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=96, help="at most 2,456 (the train names of the manifest)")
    parser.add_argument("--distinct", type=int, default=24, help="clips synthesised; the rest are copies")
    parser.add_argument("--workers", type=int, default=None, help="prepare's --workers (default: its own choice)")
    parser.add_argument("--full", action="store_true", help="also prepare the full-size 3,050-clip synthetic set")
    parser.add_argument("--pairs", type=int, default=3, help="paired runs of the loop and the command (default 3)")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder keeping the synthesised downloads between runs (default: a temporary one)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        work = args.work or tmp
        t0 = time.perf_counter()
        raw = make_720p_download(work / "raw720", args.clips, min(args.distinct, args.clips))
        clips = blemore.find_clip_files(raw)
        size_mb = sum(c.stat().st_size for c in clips) / 1e6
        print(f"{len(clips)} clips at 1280x720 ({size_mb:.0f} MB, {min(args.distinct, args.clips)} distinct) ready "
              f"in {time.perf_counter() - t0:.0f} s")

        if not adopt_orphans():
            print("note: cannot adopt orphaned processes here: the CPU time of prepare's worker server is not counted")
        wall_ratios, cpu_ratios, peaks = [], [], []
        for pair in range(args.pairs):
            naive = naive_ffmpeg_loop(clips, tmp / f"naive{pair}")
            prepare, memory, tree_wall = prepare_command(raw, tmp / f"prepared720-{pair}", args.workers)
            wall_ratios.append(naive.wall / prepare.wall)
            cpu_ratios.append(naive.cpu / prepare.cpu)
            peaks.append(memory.peak_pss)
            print(f"pair {pair + 1}: naive loop {naive.wall:.1f} s wall, {naive.cpu:.1f} s CPU "
                  f"({naive.cores:.2f} cores busy); prepare {prepare.wall:.1f} s wall (its last process ended at "
                  f"{tree_wall:.1f} s), {prepare.cpu:.1f} s CPU ({prepare.cores:.2f} cores busy): "
                  f"{wall_ratios[-1]:.2f}x; peak {memory}",
                  flush=True)
            shutil.rmtree(tmp / f"naive{pair}")
            shutil.rmtree(tmp / f"prepared720-{pair}")
        # The first call loads the decoders; the second one is timed.
        prepare_dataset(raw, tmp / "prepared720-warm", num_workers=args.workers, progress=False)
        with Timer() as warm:
            prepare_dataset(raw, tmp / "prepared720-warm", num_workers=args.workers, overwrite=True,
                                    progress=False)

        def ms(timer: Timer) -> str:
            n = len(clips)
            return (f"{timer.wall / n * 1000:7.1f} ms/clip ({timer.wall:.1f} s wall; "
                    f"CPU {timer.cpu / n * 1000:.1f} ms/clip)")

        print(f"`blemore prepare`:    {ms(prepare)}  start-up, imports and workers included (last pair)")
        print(f"naive ffmpeg loop:    {ms(naive)}  (last pair)")
        print(f"speed-up over {args.pairs} paired runs: wall median {statistics.median(wall_ratios):.2f}x "
              f"(range {min(wall_ratios):.2f}-{max(wall_ratios):.2f}x)   target >= 3x; CPU median "
              f"{statistics.median(cpu_ratios):.2f}x (range {min(cpu_ratios):.2f}-{max(cpu_ratios):.2f}x)")
        print(f"peak memory (720p):   {memory} (last pair); highest of the pairs {max(peaks) / 2**20:.0f} MiB PSS "
              "(target < 1024 MiB PSS)")
        print(f"prepare, warm:        {ms(warm)}  in-process, decoders already loaded: "
              f"{naive.wall / warm.wall:.2f}x the loop (wall), {naive.cpu / warm.cpu:.2f}x (CPU)")

        if args.full:
            t0 = time.perf_counter()
            full_raw = work / "full"
            if not (full_raw / blemore.SYNTHETIC_MARKER).exists():
                synthesize(full_raw, full=True, seed=0, overwrite=True, progress=False)
            print(f"full-size synthetic set ready in {time.perf_counter() - t0:.0f} s")
            full, memory, _ = prepare_command(full_raw, tmp / "prepared_full", args.workers)
            num_clips = len(blemore.find_clip_files(full_raw))
            print(f"full set: {num_clips} clips prepared in {full.wall:.0f} s ({full.wall / num_clips * 1000:.1f} "
                  f"ms/clip); peak memory {memory} (target < 1024 MiB PSS)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
