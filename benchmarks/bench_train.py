"""Training throughput of the tiny model on CPU (0 and 2 DataLoader workers) and the time of each demo stage.

    .venv/bin/python benchmarks/bench_train.py                 # synthesises + prepares the default set first
    .venv/bin/python benchmarks/bench_train.py --dataset DIR   # an existing prepared folder
    .venv/bin/python benchmarks/bench_train.py --skip-demo     # throughput only

Throughput is the Trainer's own ``train_samples_per_second`` over ``--epochs`` epochs of fold 0's training clips,
decoding on the fly (no evaluation in between), so it includes video/audio decoding, processing, forward, backward
and the optimiser step. The demo figures are ``blemore demo``'s stage timings (synth, prepare, train, predict,
score). On a GPU machine, the same script with ``--video-backbone``/``--audio-backbone`` measures a real model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from blemore_toolkit.data.prepare import prepare_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def throughput(dataset: str, workers: int, epochs: float, scratch: Path, backbones: dict) -> dict:
    from transformers import Trainer

    from blemore_toolkit.data.loading import load_split
    from blemore_toolkit.training.batches import ClipCollator, clip_stream, cpu_threads_beside_workers
    from blemore_toolkit.training.train import TrainSettings, build_model, training_arguments

    settings = TrainSettings(output_dir=str(scratch), epochs=epochs, num_workers=workers, progress=False,
                             logging_steps=1000, **backbones)
    with cpu_threads_beside_workers(workers) as threads:
        model, processor = build_model(settings)
        split = load_split(dataset, "fold0", "train")
        arguments = training_arguments(settings, scratch / f"workers{workers}", has_validation=False)
        arguments.save_strategy = "no"
        trainer = Trainer(model=model, args=arguments, data_collator=ClipCollator(processor),
                          train_dataset=clip_stream(split, processor, with_labels=True))
        metrics = trainer.train().metrics
    return {"workers": workers, "torch_threads": threads, "clips": len(split), "epochs": epochs,
            "clips_per_s": round(metrics["train_samples_per_second"], 1),
            "seconds": round(metrics["train_runtime"], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", help="a prepared dataset folder (default: synthesise and prepare one)")
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--video-backbone")
    parser.add_argument("--audio-backbone")
    args = parser.parse_args()

    import blemore
    from blemore_toolkit.data.synth import synthesize

    backbones = {key: getattr(args, key) for key in ("video_backbone", "audio_backbone") if getattr(args, key)}
    with tempfile.TemporaryDirectory(prefix="blemore-bench-train-") as scratch:
        scratch = Path(scratch)
        dataset = args.dataset
        if dataset is None:
            synthesize(scratch / "raw", seed=0, progress=False)
            dataset = str(prepare_dataset(scratch / "raw", scratch / "blemore", progress=False).out_dir)
        print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}")
        for workers in args.workers:
            print(json.dumps(throughput(dataset, workers, args.epochs, scratch, backbones)), flush=True)
        if not args.skip_demo:
            start = time.perf_counter()
            from contextlib import redirect_stdout
            from io import StringIO

            captured = StringIO()
            with redirect_stdout(captured):
                blemore.main(["demo", "--workdir", str(scratch / "demo")])
            summary = json.loads(captured.getvalue().strip().splitlines()[-1])
            stages = {key: value for key, value in summary.items() if key.endswith("_s")}
            print(json.dumps({"demo_total_s": round(time.perf_counter() - start, 1), **stages,
                              "acc_presence": summary["acc_presence"], "acc_salience": summary["acc_salience"]}))


if __name__ == "__main__":
    main()
