"""Speed of a converted ImageBind vision encoder on random frames: frames/s, and the clips/s that makes.

    python benchmarks/bench_imagebind.py [--size base,huge] [--device cpu] [--dtype float32] [--batch-size 8]

For each size, a random checkpoint in the original layout (the vision branch of ``ImageBindModel``, keys as in
``imagebind_huge.pth``) is converted by ``blemore convert imagebind`` (timed), loaded as a
``CLIPVisionModelWithProjection``, and run on random (batch, 3, 224, 224) frames: the embedding ``blemore features``
stores, L2-normalised. ``base`` is a ViT-B/14 shape (width 768, 12 blocks; for scale, ImageBind publishes no base
model); ``huge`` is ``imagebind_huge``'s vision branch (width 1280, 32 blocks, 16 heads; 632M parameters, ~5 GB of
memory and disk while converting). Needs only torch and transformers (no dataset, no decoding). The clips/s column
is frames/s over the frames a clip of ``--clip-frames`` frames costs under ``--protocol paper`` (every frame).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

#: ImageBind vision sizes: width, blocks, heads, embedding (huge: ``imagebind_huge`` in imagebind_model.py).
IMAGEBIND_SIZES = {"base": (768, 12, 12, 768), "huge": (1280, 32, 16, 1024)}


def random_imagebind_checkpoint(path: Path, size: str) -> Path:
    """A random ``ImageBindModel`` vision branch saved as ``imagebind_huge.pth`` is (a flat state dict)."""
    import torch

    width, blocks, _, embed = IMAGEBIND_SIZES[size]
    generator = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=generator) * 0.02

    state = {"modality_preprocessors.vision.cls_token": rand(1, 1, width),
             "modality_preprocessors.vision.rgbt_stem.proj.1.weight": rand(width, 3, 2, 14, 14),
             "modality_preprocessors.vision.pos_embedding_helper.pos_embed": rand(1, 257, width),
             "modality_trunks.vision.pre_transformer_layer.0.weight": 1 + rand(width),
             "modality_trunks.vision.pre_transformer_layer.0.bias": rand(width),
             "modality_heads.vision.0.weight": 1 + rand(width), "modality_heads.vision.0.bias": rand(width),
             "modality_heads.vision.2.weight": rand(embed, width)}
    for i in range(blocks):
        block = f"modality_trunks.vision.blocks.{i}."
        state.update({block + "attn.in_proj_weight": rand(3 * width, width),
                      block + "attn.in_proj_bias": rand(3 * width),
                      block + "attn.out_proj.weight": rand(width, width), block + "attn.out_proj.bias": rand(width),
                      block + "mlp.fc1.weight": rand(4 * width, width), block + "mlp.fc1.bias": rand(4 * width),
                      block + "mlp.fc2.weight": rand(width, 4 * width), block + "mlp.fc2.bias": rand(width)})
        for norm in ("norm_1", "norm_2"):
            state.update({block + f"{norm}.weight": 1 + rand(width), block + f"{norm}.bias": rand(width)})
    torch.save(state, path)
    return path


def converted_imagebind(work: Path, size: str) -> tuple[Path, float]:
    """A converted random ImageBind folder of ``size`` in ``work``, and the seconds making it took."""
    from blemore_toolkit.conversion import convert_checkpoint

    start = time.perf_counter()
    checkpoint = random_imagebind_checkpoint(work / f"imagebind_{size}.pth", size)
    folder = convert_checkpoint("imagebind", checkpoint, work / f"imagebind-{size}",
                                num_attention_heads=IMAGEBIND_SIZES[size][2])
    checkpoint.unlink()
    return folder, time.perf_counter() - start


def measure(folder: Path, device: str, dtype: str, batch_size: int, batches: int) -> dict:
    import torch
    from transformers import CLIPVisionModelWithProjection

    torch_dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    model = CLIPVisionModelWithProjection.from_pretrained(folder).to(device, dtype=torch_dtype).eval()
    frames = torch.randn(batch_size, 3, 224, 224, device=device, dtype=torch_dtype)

    def run():
        with torch.inference_mode():
            out = torch.nn.functional.normalize(model(pixel_values=frames).image_embeds, dim=-1)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return out

    run()  # warm-up
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(batches):
        run()
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"frames_per_s": batch_size * batches / seconds, "seconds": seconds,
            "parameters": sum(p.numel() for p in model.parameters()), "peak_memory_mb": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="base", help="comma-separated sizes: base, huge")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--clip-frames", type=int, default=75, help="frames of a clip (75: 3 s at 25 fps)")
    args = parser.parse_args()
    sizes = args.size.split(",")
    if any(size not in IMAGEBIND_SIZES for size in sizes):
        parser.error(f"--size {args.size!r}: choose from {', '.join(IMAGEBIND_SIZES)}")
    import torch
    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, device {args.device}, "
          f"{torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory(prefix="bench-imagebind-") as work:
        for size in sizes:
            folder, convert_s = converted_imagebind(Path(work), size)
            report = {"size": size, "device": args.device, "dtype": args.dtype, "batch_size": args.batch_size,
                      "convert_s": round(convert_s, 1), **measure(folder, args.device, args.dtype,
                                                                  args.batch_size, args.batches)}
            report["clips_per_s_every_frame"] = report["frames_per_s"] / args.clip_frames
            print(json.dumps(report))
            print(f"imagebind-{size:<5} {args.dtype} on {args.device}: {report['frames_per_s']:8.2f} frames/s = "
                  f"{report['clips_per_s_every_frame']:7.3f} clips/s of {args.clip_frames} frames (every frame); "
                  f"{report['parameters'] / 1e6:.0f}M parameters, peak {report['peak_memory_mb'] / 1024:.1f} GiB, "
                  f"conversion {convert_s:.1f} s")
            import shutil

            shutil.rmtree(folder)


if __name__ == "__main__":
    main()
