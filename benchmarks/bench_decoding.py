"""What decoding a training clip costs, and how many CPU cores it takes to feed a model.

For synthetic clips at 1080p, 720p and the `blemore prepare --video-size 256` copy of the 720p clips (H.264, 25 fps,
4 s), per clip: 16 evenly spaced frames (``BlemoreProcessor.sample_frames``, what the Trainer's batches call) and
the 16 kHz FLAC sound of the prepared dataset, all on one thread. Prints:

* exact vs approximate seeking for the 16 frames at 720p (raw torchcodec, paired runs): why ``sample_frames``
  seeks exactly;
* ``sample_frames`` + sound vs raw torchcodec on the same bytes at 720p, paired clip by clip in ABBA order (target
  <= 1.0x: the processor adds nothing to decoding); a ratio per round and the ratio of the totals;
* clips/s per core at each size, and the cores needed to feed ``--model-clips-per-s`` (a base-size VideoMAE on a
  modern GPU trains at hundreds of clips/s).

CPU seconds (``time.process_time``) are what is measured, with torch and FFmpeg held to one thread, so the figures
are per core and disturbed far less than wall-clock seconds by other users of a shared machine.

    .venv/bin/python benchmarks/bench_decoding.py [--clips 4] [--pairs 5] [--model-clips-per-s 300]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import soundfile
import torch
from torchcodec.decoders import AudioDecoder, VideoDecoder
from transformers import Wav2Vec2FeatureExtractor

import blemore
from blemore_toolkit.data import synth_encoding
from blemore_toolkit.data.prepare import resize_video
from blemore_toolkit.data.synth_encoding import write_clip
from blemore_toolkit.modeling.processing_blemore import BlemoreProcessor, frame_indices

NUM_FRAMES = 16
SIZES = {"1080p": (1920, 1080), "720p": (1280, 720)}


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f} (range {min(values):.3f}-{max(values):.3f})"


def make_clips(folder: Path, count: int, duration_s: float) -> dict[str, list[tuple[bytes, bytes]]]:
    """``{size: [(video bytes, 16 kHz FLAC bytes), ...]}``; the 256 px clips are prepare's copies of the 720p ones.

    Encoded with x264 "veryfast" (B-frames, as camera clips have) rather than synth's "ultrafast" (none): how
    seeking performs depends on it.
    """
    synth_encoding._VIDEO_CODEC[synth_encoding._VIDEO_CODEC.index("-preset") + 1] = "veryfast"
    clips: dict[str, list[tuple[bytes, bytes]]] = {}
    for size, (width, height) in SIZES.items():
        clips[size] = []
        for i in range(count):
            outcome = blemore.OUTCOMES[(7 * i + 3) % len(blemore.OUTCOMES)]
            path = folder / f"A{i + 1}_{size}_{i}.mov"
            write_clip(path, outcome.emotions, outcome.salience, width=width, height=height, fps=25,
                       duration_s=duration_s, seed=i)
            samples = AudioDecoder(str(path), sample_rate=16_000, num_channels=1).get_all_samples().data[0].numpy()
            flac = io.BytesIO()
            soundfile.write(flac, samples, 16_000, format="FLAC", subtype="PCM_16")
            clips[size].append((path.read_bytes(), flac.getvalue()))
            if size == "720p":
                small, _, _ = resize_video(path, 256, 25.0)
                clips.setdefault("256px", []).append((small, flac.getvalue()))
    return clips


def raw_frames(data: bytes, seek_mode: str) -> torch.Tensor:
    decoder = VideoDecoder(data, seek_mode=seek_mode, num_ffmpeg_threads=1)
    return decoder.get_frames_at(indices=frame_indices(len(decoder), NUM_FRAMES).tolist()).data


def raw_clip(data: bytes, flac: bytes) -> None:
    raw_frames(data, "exact")
    AudioDecoder(flac, sample_rate=16_000, num_channels=1).get_all_samples()


def processor_clip(processor: BlemoreProcessor, data: bytes, flac: bytes) -> None:
    processor.sample_frames({"bytes": data})
    processor.load_audio({"bytes": flac})


def cpu_seconds(function, clips, *args) -> float:
    """CPU seconds per clip of ``function(*args, video, audio)`` over ``clips``."""
    start = time.process_time()
    for video, audio in clips:
        function(*args, video, audio)
    return (time.process_time() - start) / len(clips)


def compare_paired(processor: BlemoreProcessor, clips, pairs: int) -> tuple[list[float], list[float], list[float]]:
    """CPU seconds per clip of the processor and of raw torchcodec, and their ratios, one figure per round.

    Paired clip by clip, in ABBA order: in each round every clip goes through the processor, raw torchcodec, raw
    torchcodec again and the processor again, back to back, so that each side decodes it as often first (cold
    caches, the other's garbage) as second.
    """
    processor_clip(processor, *clips[0])  # warm-up of both paths: lazy imports, first allocations
    raw_clip(*clips[0])
    ours, raw, ratios = [], [], []
    for _ in range(pairs):
        ours_s = raw_s = 0.0
        for video, audio in clips:
            for path in ("ours", "raw", "raw", "ours"):
                start = time.process_time()
                if path == "ours":
                    processor_clip(processor, video, audio)
                    ours_s += time.process_time() - start
                else:
                    raw_clip(video, audio)
                    raw_s += time.process_time() - start
        ours.append(ours_s / (2 * len(clips)))
        raw.append(raw_s / (2 * len(clips)))
        ratios.append(ours_s / raw_s)
    return ours, raw, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=4, help="distinct clips per size (default 4)")
    parser.add_argument("--duration", type=float, default=4.0, help="clip length in seconds (default 4)")
    parser.add_argument("--pairs", type=int, default=5, help="paired runs per comparison (default 5)")
    parser.add_argument("--model-clips-per-s", type=float, default=300.0,
                        help="training speed of the model to feed, in clips/s (default 300)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    processor = BlemoreProcessor(feature_extractor=Wav2Vec2FeatureExtractor(sampling_rate=16_000),
                                 num_frames=NUM_FRAMES)

    with tempfile.TemporaryDirectory() as tmp:
        print(f"making {args.clips} clips of {args.duration:g} s at each size ...", flush=True)
        clips = make_clips(Path(tmp), args.clips, args.duration)

    hd = clips["720p"]
    cpu_seconds(raw_frames, [(v, "exact") for v, _ in hd])  # warm-up: libraries, caches
    exact, approximate, ratios = [], [], []
    for _ in range(args.pairs):
        a = cpu_seconds(lambda v, mode: raw_frames(v, mode), [(v, "exact") for v, _ in hd])
        b = cpu_seconds(lambda v, mode: raw_frames(v, mode), [(v, "approximate") for v, _ in hd])
        exact.append(a)
        approximate.append(b)
        ratios.append(a / b)
    print(f"720p, {NUM_FRAMES} frames, raw torchcodec: exact seeking {spread(exact)} CPU s/clip, approximate "
          f"{spread(approximate)}; exact/approximate {spread(ratios)}x   target < 1.0x (sample_frames seeks "
          f"exactly)")

    ours, raw, ratios = compare_paired(processor, hd, args.pairs)
    print(f"720p, {NUM_FRAMES} frames + sound: sample_frames + load_audio {spread(ours)} CPU s/clip, raw torchcodec "
          f"(audio too) {spread(raw)}; ratio {spread(ratios)}x over {len(ratios)} paired rounds, "
          f"{sum(ours) / sum(raw):.3f}x in total   target <= 1.0x")

    print(f"\nclips/s per core ({NUM_FRAMES} frames + sound through the processor) and cores to feed "
          f"{args.model_clips_per_s:g} clips/s:")
    for size, members in clips.items():
        per_clip = [cpu_seconds(processor_clip, members, processor) for _ in range(max(1, args.pairs // 2))]
        rate = 1.0 / statistics.median(per_clip)
        print(f"  {size:>6}: {rate:6.1f} clips/s per core ({spread(per_clip)} CPU s/clip) -> "
              f"{args.model_clips_per_s / rate:5.1f} cores")


if __name__ == "__main__":
    main()
