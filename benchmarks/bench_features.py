"""Feature-extraction speed of `blemore features` with tiny random encoders on this machine (clips per second).

    python benchmarks/bench_features.py [--dataset PREPARED] [--actors-per-fold 1] [--batch-size 32]
    python benchmarks/bench_features.py --families [--clips 4] [--device cpu]
    python benchmarks/bench_features.py --families --only torchvision:swin3d_b --protocol paper --device cuda

Without ``--dataset`` a small synthetic download is made and prepared in a temporary folder. Three tiny random
encoders (ViT frames, VideoMAE windows, WavLM audio; saved locally, nothing downloaded) each embed every clip; the
figure is clips per second for the whole run, decoding included. Tiny encoders measure the pipeline (decoding,
preprocessing, batching, writing), not a real encoder's arithmetic; the GPU commands for real encoders are printed
at the end.

``--families`` measures instead the encoder families that need no download at their real size: openSMILE's
eGeMAPS on every clip, and torchvision's Video Swin at base size (``torchvision:swin3d_t`` and ``swin3d_b``,
random weights) on the first ``--clips`` clips (one window each under the toolkit protocol; 14-17 under the paper's
10 s chunks), eGeMAPS on ten times as many. A family whose package is missing is reported as such.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from blemore_toolkit.data.loading import read_label_table
from blemore_toolkit.data.prepare import prepare_dataset

GPU_COMMANDS = """\
Real encoders on a GPU (one command each; add --revision COMMIT to pin a Hub checkpoint):
  blemore features blemore --encoder MCG-NJU/videomae-base --device cuda --dtype float16 --batch-size 64
  blemore features blemore --encoder openai/clip-vit-large-patch14 --device cuda --dtype float16 --batch-size 256
  blemore features blemore --encoder microsoft/wavlm-large --layers 6-12 --device cuda --batch-size 16
  blemore features blemore --encoder facebook/hubert-large-ll60k --device cuda --batch-size 16"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=None, help="a prepared dataset folder (default: make a synthetic one)")
    parser.add_argument("--actors-per-fold", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--families", action="store_true",
                        help="eGeMAPS and torchvision's Video Swin at their real size instead of tiny encoders")
    parser.add_argument("--only", nargs="+", default=None, metavar="ENCODER",
                        help="with --families: these encoders only (default: egemaps torchvision:swin3d_t "
                        "torchvision:swin3d_b)")
    parser.add_argument("--clips", type=int, default=4, help="with --families: clips for the torchvision models")
    parser.add_argument("--protocol", default="toolkit", choices=("toolkit", "paper"))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

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
        if args.families:
            bench_families(dataset, work, args)
            return
        from blemore_toolkit.training.tiny import save_tiny_encoders

        encoders = save_tiny_encoders(work / "encoders")
        clips = len(read_label_table(dataset))
        print(f"{clips} clips, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f}")
        for name, path in encoders.items():
            start = time.perf_counter()
            result = extract_features(dataset, str(path), batch_size=args.batch_size, device="cpu", progress=False)
            seconds = time.perf_counter() - start
            print(f"{name:>9} ({result.config}): {clips / seconds:7.1f} clips/s ({seconds:.1f} s, hidden "
                  f"{result.hidden_size})")
        print(f"load average after {os.getloadavg()[0]:.2f}")
        print(GPU_COMMANDS)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _first_clips(dataset: Path, target: Path, count: int) -> Path:
    """A copy of ``dataset`` whose clips are the first ``count`` of its first shard."""
    import pyarrow.parquet as pq

    shutil.copytree(dataset, target)
    shards = sorted((target / "data").glob("*.parquet"))
    table = pq.read_table(shards[0]).slice(0, count)
    for shard in shards:
        shard.unlink()
    pq.write_table(table, shards[0])
    return target


def bench_families(dataset: Path, work: Path, args) -> None:
    from blemore import BlemoreError
    from blemore_toolkit.features.extraction import extract_features

    few = _first_clips(dataset, work / "few", args.clips)
    many = _first_clips(dataset, work / "many", 10 * args.clips)  # openSMILE is cheap: ten times the clips
    print(f"{os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f}, device {args.device}, "
          f"protocol {args.protocol}")
    for encoder in args.only or ["egemaps", "torchvision:swin3d_t", "torchvision:swin3d_b"]:
        target = many if encoder == "egemaps" else few
        clips = len(read_label_table(target))
        start = time.perf_counter()
        try:
            result = extract_features(target, encoder, protocol=args.protocol, batch_size=args.batch_size,
                                      device=args.device, progress=False)
        except BlemoreError as error:
            print(f"{encoder:>22}: not run ({error})")
            continue
        seconds = time.perf_counter() - start
        windows = ""
        if result.features_size is None:
            import pyarrow.parquet as pq

            counts = [n for p in result.out_dir.glob("*.parquet") for n in pq.read_table(p)["num_windows"].to_pylist()]
            windows = f", {sum(counts)} windows"
        print(f"{encoder:>22}: {clips / seconds:7.2f} clips/s ({clips} clips{windows} in {seconds:.1f} s, "
              f"hidden {result.hidden_size})")
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
