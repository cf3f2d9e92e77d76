"""Feature-extraction speed of `blemore features` with tiny random encoders on this machine (clips per second).

    python benchmarks/bench_features.py [--dataset PREPARED] [--actors-per-fold 1] [--batch-size 32]
        [--imagebind base,huge] [--imagebind-clips 2] [--imagebind-protocol toolkit] [--device cpu]

Without ``--dataset`` a small synthetic download is made and prepared in a temporary folder. Three tiny random
encoders (ViT frames, VideoMAE windows, WavLM audio; saved locally, nothing downloaded) each embed every clip; the
figure is clips per second for the whole run, decoding included. Tiny encoders measure the pipeline (decoding,
preprocessing, batching, writing), not a real encoder's arithmetic; the GPU commands for real encoders are printed
at the end.

``--imagebind SIZES`` adds converted ImageBind vision encoders at real sizes (``base``, ``huge``; see
bench_imagebind.py, which makes them: a random checkpoint in the original layout, ``blemore convert imagebind``),
then ``features`` on the first ``--imagebind-clips`` clips, decoding and the frame transform included.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench_imagebind import IMAGEBIND_SIZES, converted_imagebind

from blemore_toolkit.data.loading import read_label_table
from blemore_toolkit.data.prepare import prepare_dataset

GPU_COMMANDS = """\
Real encoders on a GPU (one command each; add --revision COMMIT to pin a Hub checkpoint):
  blemore features blemore --encoder MCG-NJU/videomae-base --device cuda --dtype float16 --batch-size 64
  blemore features blemore --encoder openai/clip-vit-large-patch14 --device cuda --dtype float16 --batch-size 256
  blemore features blemore --encoder microsoft/wavlm-large --layers 6-12 --device cuda --batch-size 16
  blemore features blemore --encoder facebook/hubert-large-ll60k --device cuda --batch-size 16
  blemore convert imagebind imagebind_huge.pth imagebind-huge
  blemore features blemore --encoder imagebind-huge --protocol paper --device cuda --dtype float16 --batch-size 256"""


def first_clips(dataset: Path, out: Path, clips: int) -> Path:
    """A copy of ``dataset`` that holds only the first ``clips`` clips of its first shard."""
    import pyarrow.parquet as pq

    (out / "data").mkdir(parents=True)
    shutil.copy(dataset / "README.md", out / "README.md")
    shard = sorted((dataset / "data").glob("*.parquet"))[0]
    pq.write_table(pq.read_table(shard).slice(0, clips), out / "data" / shard.name)
    return out


def bench_imagebind(dataset: Path, work: Path, sizes: list[str], clips: int, protocol: str, device: str,
                    dtype: str, batch_size: int) -> None:
    from blemore_toolkit.features.extraction import extract_features

    few = first_clips(dataset, work / "imagebind-clips", clips)
    for size in sizes:
        folder, converted = converted_imagebind(work, size)
        start = time.perf_counter()
        result = extract_features(few, str(folder), protocol=protocol, device=device, dtype=dtype,
                                  batch_size=batch_size, progress=False, workers=1)
        seconds = time.perf_counter() - start
        import pyarrow.parquet as pq

        frames = sum(pq.read_table(p, columns=["num_windows"]).column(0).to_numpy().sum()
                     for p in result.out_dir.glob("*.parquet"))
        print(f"imagebind-{size:<5} ({protocol}, {device}, {dtype}): {result.num_clips / seconds:7.3f} clips/s, "
              f"{frames / seconds:6.2f} frames/s ({result.num_clips} clips, {frames} frames, {seconds:.1f} s; "
              f"random checkpoint + convert {converted:.1f} s)")
        shutil.rmtree(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=None, help="a prepared dataset folder (default: make a synthetic one)")
    parser.add_argument("--actors-per-fold", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--imagebind", default="none",
                        help="comma-separated ImageBind sizes to add (base, huge), or none (default)")
    parser.add_argument("--imagebind-clips", type=int, default=2, help="clips the ImageBind encoders embed")
    parser.add_argument("--imagebind-protocol", default="toolkit", choices=("toolkit", "paper"))
    parser.add_argument("--no-tiny", action="store_true", help="skip the tiny encoders")
    parser.add_argument("--device", default="cpu", help="device of the converted encoders (the tiny encoders: cpu)")
    parser.add_argument("--dtype", default="float32", help="dtype of the converted encoders (float32, float16, ...)")
    args = parser.parse_args()
    sizes = [] if args.imagebind == "none" else args.imagebind.split(",")
    if any(size not in IMAGEBIND_SIZES for size in sizes):
        parser.error(f"--imagebind {args.imagebind!r}: choose from {', '.join(IMAGEBIND_SIZES)} or none")

    from blemore_toolkit.features.extraction import extract_features

    work = Path(tempfile.mkdtemp(prefix="bench-features-"))
    try:
        if args.dataset:
            dataset = work / "blemore"
            shutil.copytree(args.dataset, dataset)
        else:
            from blemore_toolkit.data.synth import synthesize

            synthesize(work / "raw", actors_per_fold=args.actors_per_fold, test_actors=1, seed=0, progress=False)
            dataset = prepare_dataset(work / "raw", work / "blemore", progress=False).out_dir
        from blemore_toolkit.training.tiny import save_tiny_encoders

        encoders = save_tiny_encoders(work / "encoders")
        clips = len(read_label_table(dataset))
        print(f"{clips} clips, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f}")
        for name, path in ({} if args.no_tiny else encoders).items():
            start = time.perf_counter()
            result = extract_features(dataset, str(path), batch_size=args.batch_size, device="cpu", progress=False)
            seconds = time.perf_counter() - start
            print(f"{name:>9} ({result.config}): {clips / seconds:7.1f} clips/s ({seconds:.1f} s, hidden "
                  f"{result.hidden_size})")
        if sizes:
            bench_imagebind(dataset, work, sizes, args.imagebind_clips, args.imagebind_protocol, args.device,
                            args.dtype, args.batch_size)
        print(f"load average after {os.getloadavg()[0]:.2f}")
        print(GPU_COMMANDS)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
