"""Feature-extraction speed of `blemore features` with tiny random encoders on this machine (clips per second).

    python benchmarks/bench_features.py [--dataset PREPARED] [--actors-per-fold 1] [--batch-size 32]
        [--imagebind base,huge] [--imagebind-clips 2] [--imagebind-protocol toolkit] [--device cpu]
    python benchmarks/bench_features.py --families [--clips 4] [--device cpu]
    python benchmarks/bench_features.py --families --only torchvision:swin3d_b --protocol paper --device cuda

Without ``--dataset`` a small synthetic download is made and prepared in a temporary folder. Three tiny random
encoders (ViT frames, VideoMAE windows, WavLM audio; saved locally, nothing downloaded) each embed every clip; the
figure is clips per second for the whole run, decoding included. Tiny encoders measure the pipeline (decoding,
preprocessing, batching, writing), not a real encoder's arithmetic; the GPU commands for real encoders are printed
at the end.

VideoMAEv2 at real sizes (``--videomaev2 base,giant``, the default; ``--videomaev2 ''`` skips it): a random-weight
folder of the reference's ``vit_base_patch16_224`` / ``vit_giant_patch14_224`` (the paper's encoder) in the layout
``blemore convert videomaev2`` writes, run under ``--protocol paper`` (every frame, 16-frame windows, the organisers'
pixels) on the first ``--videomaev2-clips`` clips. On a CPU the giant takes minutes per clip (about 4 TFLOP per
16-frame window) and ~4.5 GB of memory and disk.

``--imagebind SIZES`` adds converted ImageBind vision encoders at real sizes (``base``, ``huge``; see
bench_imagebind.py, which makes them: a random checkpoint in the original layout, ``blemore convert imagebind``),
then ``features`` on the first ``--imagebind-clips`` clips, decoding and the frame transform included.

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

from bench_imagebind import IMAGEBIND_SIZES, converted_imagebind

from blemore_toolkit.data.loading import read_label_table
from blemore_toolkit.data.prepare import prepare_dataset

GPU_COMMANDS = """\
Real encoders on a GPU (one command each; add --revision COMMIT to pin a Hub checkpoint):
  blemore features blemore --encoder MCG-NJU/videomae-base --device cuda --dtype float16 --batch-size 64
  blemore features blemore --encoder vit-g-k710 --protocol paper --device cuda --batch-size 16  # convert videomaev2
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


def videomaev2_folder(root: Path, size: str) -> Path:
    """A random-weight converted VideoMAEv2 folder of the reference's ``size`` (as ``blemore convert`` writes it)."""
    import torch
    from transformers import VideoMAEForVideoClassification, VideoMAEImageProcessorPil

    from blemore_toolkit.conversion import videomaev2

    name = next(n for n in videomaev2.REFERENCE_MODELS if n.split("_")[1] == size)
    layout = {k: torch.empty(shape, device="meta") for k, shape in videomaev2.reference_layout(name).items()}
    config = videomaev2.config_from_state(layout, name)
    out = root / f"videomaev2-{size}"
    VideoMAEForVideoClassification(config).save_pretrained(out)
    processor = VideoMAEImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    processor.save_pretrained(out)
    return out


def bench_videomaev2(dataset: Path, work: Path, size: str, clips: int, batch_size: int, device: str,
                     dtype: str = "float32") -> None:
    """Clips/s of the paper's VideoMAEv2 features (``--protocol paper``) on the first ``clips`` clips."""
    import pyarrow.parquet as pq

    from blemore_toolkit.features.extraction import extract_features

    subset = work / f"videomaev2-{size}-data"
    (subset / "data").mkdir(parents=True)
    shutil.copy(dataset / "README.md", subset / "README.md")
    shard = sorted((dataset / "data").glob("*.parquet"))[0]
    table = pq.read_table(shard).slice(0, clips)
    pq.write_table(table, subset / "data" / shard.name)
    video_s = sum(float(d) for d in table.column("duration_s").to_pylist())
    folder = videomaev2_folder(work, size)
    start = time.perf_counter()
    result = extract_features(subset, str(folder), protocol="paper", batch_size=batch_size, device=device,
                              dtype=dtype, progress=False)
    seconds = time.perf_counter() - start
    windows = sum(pq.read_table(p, columns=["num_windows"]).column(0).to_numpy().sum()
                  for p in (subset / "features" / result.config).glob("*.parquet"))
    print(f"videomaev2-{size} (--protocol paper, {device}, {dtype}): {clips / seconds:7.3f} clips/s, "
          f"{windows / seconds:6.3f} windows/s ({seconds:.1f} s for {clips} clips, {video_s:.1f} s of video, "
          f"{windows} windows, hidden {result.hidden_size})")
    shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=None, help="a prepared dataset folder (default: make a synthetic one)")
    parser.add_argument("--actors-per-fold", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--videomaev2", default="base,giant",
                        help="VideoMAEv2 sizes to time (comma-separated: small base large huge giant; '' for none)")
    parser.add_argument("--videomaev2-clips", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="device of the converted encoders (the tiny encoders: cpu)")
    parser.add_argument("--dtype", default="float32", help="dtype of the converted encoders (float32, bfloat16, ...)")
    parser.add_argument("--no-tiny", action="store_true", help="skip the tiny encoders")
    parser.add_argument("--imagebind", default="none",
                        help="comma-separated ImageBind sizes to add (base, huge), or none (default)")
    parser.add_argument("--imagebind-clips", type=int, default=2, help="clips the ImageBind encoders embed")
    parser.add_argument("--imagebind-protocol", default="toolkit", choices=("toolkit", "paper"))
    parser.add_argument("--families", action="store_true",
                        help="eGeMAPS and torchvision's Video Swin at their real size instead of tiny encoders")
    parser.add_argument("--only", nargs="+", default=None, metavar="ENCODER",
                        help="with --families: these encoders only (default: egemaps torchvision:swin3d_t "
                        "torchvision:swin3d_b)")
    parser.add_argument("--clips", type=int, default=4, help="with --families: clips for the torchvision models")
    parser.add_argument("--protocol", default="toolkit", choices=("toolkit", "paper"))
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
        if args.families:
            bench_families(dataset, work, args)
            return
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
        for size in filter(None, args.videomaev2.split(",")):
            bench_videomaev2(dataset, work, size, args.videomaev2_clips, args.batch_size, args.device, args.dtype)
        if sizes:
            bench_imagebind(dataset, work, sizes, args.imagebind_clips, args.imagebind_protocol, args.device,
                            args.dtype, args.batch_size)
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
