"""Feature-extraction speed of `blemore features` with tiny random encoders on this machine (clips per second).

    python benchmarks/bench_features.py [--dataset PREPARED] [--actors-per-fold 1] [--batch-size 32]

Without ``--dataset`` a small synthetic download is made and prepared in a temporary folder. Three tiny random
encoders (ViT frames, VideoMAE windows, WavLM audio; saved locally, nothing downloaded) each embed every clip; the
figure is clips per second for the whole run, decoding included. Tiny encoders measure the pipeline (decoding,
preprocessing, batching, writing), not a real encoder's arithmetic; the GPU commands for real encoders are printed
at the end.
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


if __name__ == "__main__":
    main()
