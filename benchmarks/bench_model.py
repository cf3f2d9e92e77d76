"""Throughput of a BLEMORE model: training steps (forward + backward + optimizer step) and inference, in clips/s.

Inputs are random tensors of the real shapes, so no data is needed. Three ways to pick the encoders:

* default: a tiny random VideoMAE + WavLM pair (runs anywhere in seconds; the CPU figure the project reports);
* ``--video-model-type videomae --audio-model-type wavlm``: the library's default (base-size) configs with random
  weights: the compute of base-size backbones without downloading them;
* ``--video-backbone MCG-NJU/videomae-base --audio-backbone microsoft/wavlm-base-plus``: pretrained backbones by
  Hub name or local path (downloads them), the way a user fine-tunes;
* ``--model hicmae``: HiCMAE at the BLEMORE fine-tuning's base size (dim 512, 10 + 10 + 2 layers, 16 × 160 × 160
  frames, 256 × 128 log-mel) with random weights.

Attention runs through PyTorch's SDPA kernel in every encoder whose transformers class supports it (VideoMAE
does; WavLM in transformers 5.24 does not and stays eager): ``--attention eager`` compares.
``--gradient-checkpointing`` recomputes activations in the backward pass (transformers 5.24 calls it activation
checkpointing): less memory, more time per step. The report gives the attention each encoder used and the peak
memory (GPU: allocated by torch; CPU: the process's peak RSS).

Examples::

    python benchmarks/bench_model.py                       # tiny, CPU
    python benchmarks/bench_model.py --video-model-type videomae --audio-model-type wavlm --batch-size 1 \
        --gradient-checkpointing                           # base size, random weights, less memory
    python benchmarks/bench_model.py --model hicmae --batch-size 2        # HiCMAE base, random weights
    python benchmarks/bench_model.py --video-backbone MCG-NJU/videomae-base \\
        --audio-backbone microsoft/wavlm-base-plus --device cuda --batch-size 8 --bf16
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import AutoConfig, VideoMAEConfig, WavLMConfig
from transformers.models.auto.modeling_auto import MODEL_MAPPING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from blemore_toolkit.modeling import BlemoreConfig, BlemoreForBlendedEmotionRecognition  # noqa: E402

GPU_COMMAND = (
    "python benchmarks/bench_model.py --video-backbone MCG-NJU/videomae-base "
    "--audio-backbone microsoft/wavlm-base-plus --device cuda --batch-size 8 --bf16"
)


def tiny_configs(image_size: int, num_frames: int) -> tuple[VideoMAEConfig, WavLMConfig]:
    video = VideoMAEConfig(
        image_size=image_size, patch_size=16, num_frames=num_frames, tubelet_size=2, hidden_size=64,
        num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
    )  # fmt: skip
    audio = WavLMConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, conv_dim=(32, 32, 32),
        conv_stride=(5, 4, 4), conv_kernel=(10, 8, 8), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        num_buckets=32, max_bucket_distance=128,
    )  # fmt: skip
    return video, audio


def choose_attention(config, attention: str) -> None:
    """Ask an encoder config for ``attention`` ("sdpa" or "eager"); SDPA only where the encoder class supports it."""
    if config is None:
        return
    model_class = MODEL_MAPPING[type(config)]
    if attention == "eager" or getattr(model_class, "_supports_sdpa", False):
        config._attn_implementation = attention


def build_hicmae(args):
    from blemore_toolkit.modeling import HicmaeConfig, HicmaeForBlendedEmotionRecognition

    config = HicmaeConfig()
    config._attn_implementation = args.attention
    model = HicmaeForBlendedEmotionRecognition(config)
    if args.gradient_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
    return model


def build_model(args) -> BlemoreForBlendedEmotionRecognition:
    if args.model == "hicmae":
        return build_hicmae(args)
    settings = dict(fusion=args.fusion, objective=args.objective, audio_hidden_layers=args.audio_layers)
    if args.video_backbone or args.audio_backbone:
        model = BlemoreForBlendedEmotionRecognition.from_pretrained_backbones(
            args.video_backbone, args.audio_backbone, **settings
        )
    else:
        if args.video_model_type or args.audio_model_type:
            video = AutoConfig.for_model(args.video_model_type) if args.video_model_type else None
            audio = AutoConfig.for_model(args.audio_model_type) if args.audio_model_type else None
        else:
            video, audio = tiny_configs(args.image_size or 112, args.num_frames or 16)
        choose_attention(video, args.attention)
        choose_attention(audio, args.attention)
        model = BlemoreForBlendedEmotionRecognition(BlemoreConfig(video_config=video, audio_config=audio, **settings))
    if args.gradient_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
    return model


def attention_used(encoder) -> str | None:
    return None if encoder is None else getattr(encoder.config, "_attn_implementation", None) or "eager"


def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # kB on Linux


def make_batch(model, args, device) -> dict:
    config, batch = model.config, {}
    if config.model_type == "hicmae":
        frames, size = config.num_frames, config.image_size
        batch["pixel_values_videos"] = torch.randn(args.batch_size, frames, 3, size, size, device=device)
        batch["input_features"] = torch.randn(args.batch_size, config.audio_length, config.num_mel_bins,
                                              device=device)
        batch["labels"] = torch.randint(0, 36, (args.batch_size,), device=device)
        return batch
    if config.video_config is not None:
        frames = args.num_frames or getattr(config.video_config, "num_frames", None) or 16
        size = args.image_size or getattr(config.video_config, "image_size", 224)
        size = size if isinstance(size, int) else size[0]
        batch["pixel_values_videos"] = torch.randn(args.batch_size, frames, 3, size, size, device=device)
    if config.audio_config is not None:
        samples = int(args.audio_seconds * 16_000)
        batch["input_values"] = torch.randn(args.batch_size, samples, device=device)
        batch["attention_mask"] = torch.ones(args.batch_size, samples, dtype=torch.long, device=device)
    batch["labels"] = torch.randint(0, 36, (args.batch_size,), device=device)
    return batch


def timed(step, steps: int, device) -> float:
    """Median seconds per step: robust to the odd slow step on a shared machine."""
    durations = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="blemore", choices=["blemore", "hicmae"],
                        help="blemore: composed encoders (below); hicmae: HiCMAE base size, random weights")
    parser.add_argument("--video-backbone", help="pretrained video encoder (Hub name or path)")
    parser.add_argument("--audio-backbone", help="pretrained audio encoder (Hub name or path)")
    parser.add_argument("--video-model-type", help="random-init default config of this type, e.g. videomae")
    parser.add_argument("--audio-model-type", help="random-init default config of this type, e.g. wavlm")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--num-frames", type=int, help="default: the video config's num_frames")
    parser.add_argument("--image-size", type=int, help="default: the video config's image_size (tiny: 112)")
    parser.add_argument("--audio-seconds", type=float, default=2.0)
    parser.add_argument("--fusion", default="gated", choices=["concat", "gated", "cross_attention"])
    parser.add_argument("--objective", default="soft_kl", choices=["soft_kl", "outcome"])
    parser.add_argument("--audio-layers", default="last", help="'last' or 'all'")
    parser.add_argument("--bf16", action="store_true", help="autocast to bfloat16 (GPU)")
    parser.add_argument("--gradient-checkpointing", action="store_true",
                        help="recompute activations in the backward pass (activation checkpointing): less memory")
    parser.add_argument("--attention", default="sdpa", choices=["sdpa", "eager"],
                        help="attention kernel of the encoders that support SDPA (default: sdpa)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    device = torch.device(args.device)
    model = build_model(args).to(device)
    batch = make_batch(model, args, device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)

    def train_step():
        with autocast:
            loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def inference_step():
        with torch.no_grad(), autocast:
            model(**{k: v for k, v in batch.items() if k != "labels"})

    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timed(train_step, args.warmup, device)
    train_s = timed(train_step, args.steps, device)
    train_peak = peak_memory_mb(device)
    model.eval()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timed(inference_step, args.warmup, device)
    inference_s = timed(inference_step, args.steps, device)
    inference_peak = peak_memory_mb(device)

    shapes = {k: list(v.shape) for k, v in batch.items() if k != "labels"}
    if args.model == "hicmae":
        video_name = audio_name = "HicmaeModel"
        attention = {"video": model.config._attn_implementation, "audio": model.config._attn_implementation}
    else:
        encoders = model.blemore.video_encoder, model.blemore.audio_encoder
        video_name, audio_name = (type(e).__name__ if e is not None else None for e in encoders)
        attention = {"video": attention_used(encoders[0]), "audio": attention_used(encoders[1])}
    report = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "video": video_name,
        "audio": audio_name,
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "inputs": shapes,
        "fusion": "hicmae (cross-modal encoder)" if args.model == "hicmae" else args.fusion,
        "bf16": args.bf16,
        "gradient_checkpointing": args.gradient_checkpointing,
        "attention": attention,
        "train_step_ms": round(train_s * 1e3, 1),
        "train_clips_per_s": round(args.batch_size / train_s, 2),
        "inference_ms": round(inference_s * 1e3, 1),
        "inference_clips_per_s": round(args.batch_size / inference_s, 2),
        "train_peak_memory_mb": train_peak,
        "inference_peak_memory_mb": inference_peak,
        "peak_memory_kind": "torch.cuda.max_memory_allocated" if device.type == "cuda" else "process peak RSS",
    }
    print(json.dumps(report, indent=2))
    if device.type == "cpu":
        print(f"\nBase-size backbones on a GPU:\n  {GPU_COMMAND}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
