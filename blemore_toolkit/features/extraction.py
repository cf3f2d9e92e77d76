"""``blemore features DATASET --encoder NAME_OR_PATH``: pretrained-encoder features stored beside the clips.

The organisers' baselines and most challenge entries freeze a pretrained encoder, embed every clip once, and train
small heads on the result. This command does the embedding step for any transformers encoder and stores the result
as one more config of the prepared dataset folder, so that ``load_dataset(DATASET, "<config>")`` reads it offline
and ``blemore push`` ships it with the clips:

* **image** encoders (ViT, CLIP, SigLIP, DINOv2, ...; frame level): frames sampled at ``--frames-per-second`` (at
  most ``--max-frames``) or every frame, one vector per frame (the model's image embedding, or its pooled output,
  or the token mean of chosen layers);
* **video** encoders (VideoMAE, TimeSformer, ViViT, V-JEPA 2, ...; clip level): non-overlapping windows of
  ``num_frames`` frames (16 for most) taken every ``--frame-stride`` frames, one vector per window (token mean);
  the clip's tail that a whole window no longer covers gets a last window that is either end-aligned (real frames
  only, overlapping the one before) or zero-padded with black frames (``--last-window``);
* **audio** encoders (WavLM, HuBERT, wav2vec 2.0, ...): the 16 kHz track, one vector per encoder frame (about
  50 per second) from the chosen hidden layers (``--layers 6-12`` averages layers 6 to 12; 0 is the input of the
  first transformer layer), stored as a sequence of ``--audio-window-s`` windows.

Beyond transformers (``encoders.load_encoder``): ``--encoder egemaps`` (openSMILE, ``egemaps.py``), ``--encoder
torchvision:NAME`` (torchvision's video models, ``torchvision_video.py``) and ``--openface-dir DIR`` (OpenFace CSVs,
``openface.py``) store their configs the same way; ``sharding.py`` splits the shards over several processes.

``--protocol paper`` samples as the organisers did (every frame; 16 consecutive frames per window, the last window
zero-padded), ``--protocol toolkit`` (the default) as above with 4 frames/s (≤ 64) and a stride of 4, end-aligned;
both are defined in ``protocols.py`` and any explicit option overrides the protocol's value.

A folder written by ``blemore convert videomaev2`` (``converted_from: videomaev2`` in its config) gives the
reference's ``forward_features`` per window (``fc_norm`` of the token mean); under ``--protocol paper`` it sees the
organisers' pixels (``bgr_unnormalised``: BGR, [0, 1], a square bilinear resize, no normalisation), under
``--protocol toolkit`` RGB frames through its processor.

Each clip gets the **seven statistics** (mean, std, 10th, 25th, 50th, 75th, 90th percentile, in that order, each
over the frames or windows, concatenated statistic by statistic: ``features[k*H:(k+1)*H]`` is statistic ``k``) and
the **per-window sequence**. Rows also carry ``clip_id``, ``split``, ``fold`` and the training labels
(``outcome``, ``soft_target``, ``presence``; None for unlabelled test clips).

Layout: ``DATASET/features/<config>/<part>-NNNNN-of-NNNNN.parquet``, one file per parquet file of the clips (same
name), and ``provenance.json`` (encoder, revision or weight hashes, layers, frame rate, window, aggregation, toolkit
version; a local encoder folder by its name and weight hashes, never its path, as ``push`` publishes the file).
The README's YAML header gains the config (train and test splits) without touching the rest of the card.

Work is resumable: a shard is written to a hidden temporary file, renamed when complete, and marked done with a
fingerprint of its input and of every extraction setting, so an interrupted run picks up at the first unfinished
shard and a changed setting recomputes everything (it needs ``--overwrite`` to replace an existing config).
The settings, fingerprints, stored schema and card entry of a config are in ``configs.py``; this module does the
work (encoders, decoding, shards, the command).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

import blemore
from blemore import BlemoreError
from blemore_toolkit.data.atomic import check_writable, write_text_atomically
from blemore_toolkit.evaluation.scoring import json_text
from blemore_toolkit.features import imagebind_frames
from blemore_toolkit.features.configs import (
    ENCODER_KINDS,
    FEATURES_DIR,
    PROVENANCE_FILE,
    ExtractionSettings,
    _is_local,
    _shard_fingerprint,
    _weights_digest,
    default_config_name,
    feature_columns,
    local_encoder_name,
    parse_layers,
    register_config,
    same_but_for_the_path,
)
from blemore_toolkit.features.records import PADDING_FRAME, STATISTICS, aggregate, clip_record

_INPUT_COLUMNS = ["clip_id", "video", "audio", "split", "fold", "outcome", "soft_target", "presence", "duration_s"]


# ---------------------------------------------------------------------------------------------------------------
# Encoders
# ---------------------------------------------------------------------------------------------------------------


def _model_class(config, auto_class):
    """The class to load: a vision tower saved with its projection (``CLIPVisionModelWithProjection``, e.g. a
    converted ImageBind) as itself, since AutoModel would drop the projection; anything else through ``auto_class``."""
    import transformers

    architecture = (getattr(config, "architectures", None) or [""])[0]
    if architecture.endswith("VisionModelWithProjection") and hasattr(transformers, architecture):
        return getattr(transformers, architecture)
    return auto_class


def detect_kind(config) -> str:
    """``image``, ``video`` or ``audio`` from an encoder config (video configs have ``num_frames``)."""
    if hasattr(config, "vision_config") and not hasattr(config, "num_frames"):
        return "image"  # CLIP, SigLIP and other dual encoders: the image tower
    if getattr(config, "num_frames", None) or getattr(config, "frames_per_clip", None):
        return "video"
    if hasattr(config, "conv_dim") or hasattr(config, "num_mel_bins") or "audio" in type(config).__name__.lower():
        return "audio"
    return "image"


class FeatureEncoder:
    """A pretrained encoder and its preprocessor, turning decoded clips into (steps, hidden) arrays."""

    def __init__(self, settings: ExtractionSettings, device: str = "cpu", batch_size: int = 32,
                 local_files_only: bool = False, trust_remote_code: bool = False):
        import torch
        from transformers import AutoConfig, AutoModel, AutoModelForVideoClassification

        self.settings, self.batch_size = settings, batch_size
        source = os.path.expanduser(settings.encoder)
        if _is_local(settings.encoder) and not (Path(source) / "config.json").is_file():
            raise BlemoreError(f"--encoder {settings.encoder}: no such encoder folder (a local encoder is a folder "
                               "written by save_pretrained, with config.json)")
        load = {"revision": settings.revision, "local_files_only": local_files_only,
                "trust_remote_code": trust_remote_code}
        try:
            config = AutoConfig.from_pretrained(source, **load)
            # A converted VideoMAEv2 folder (blemore convert videomaev2): its feature needs the classifier's fc_norm.
            self.videomaev2 = getattr(config, "converted_from", None) == "videomaev2"
            loader = AutoModelForVideoClassification if self.videomaev2 else _model_class(config, AutoModel)
            self.model = loader.from_pretrained(source, **load)
        except (OSError, ValueError, KeyError) as error:
            raise BlemoreError(f"--encoder {settings.encoder}: cannot load it with transformers AutoModel "
                               f"({' '.join(str(error).split())[:300]})") from None
        if settings.kind == "auto":
            settings.kind = detect_kind(config)
        if settings.kind not in ENCODER_KINDS:
            raise BlemoreError(f"--kind {settings.kind!r}: expected auto, {', '.join(ENCODER_KINDS)}")
        self.kind = settings.kind
        self.commit = getattr(config, "_commit_hash", None)
        self.processor = self._load_processor(source, load)
        if imagebind_frames.is_imagebind(config) and self.kind == "image":
            settings.imagebind_frames = settings.imagebind_frames or imagebind_frames.PROCESSOR
            if settings.imagebind_frames == imagebind_frames.ORGANISERS_VIDEO:
                self.processor = imagebind_frames.OrganisersImageBindFrames(config.image_size)
        else:
            settings.imagebind_frames = None
        #: ImageBind's vision postprocessor (L2 normalisation of the embedding), recorded by its conversion.
        self.normalize = getattr(config, "embedding_normalization", None) == "l2" and settings.layers == "last"
        dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
        self.device = torch.device(device)
        self.model.to(self.device, dtype=dtypes[settings.dtype]).eval()
        self.dtype = dtypes[settings.dtype]
        # Dual encoders (CLIP, SigLIP) answer for their image tower; speech seq2seq models for their encoder.
        self.module = getattr(self.model, "vision_model", None) if self.kind == "image" else None
        if self.module is None and self.kind == "audio" and getattr(config, "is_encoder_decoder", False):
            self.module = self.model.get_encoder()
        if self.module is None:
            self.module = self.model.videomae if self.videomaev2 else self.model
        if not self.videomaev2:
            settings.pixels = "processor"
        if settings.pixels not in ("processor", "bgr_unnormalised"):
            raise BlemoreError(f"pixels {settings.pixels!r}: expected processor or bgr_unnormalised")
        self.layers = self._resolve_layers(config)
        if self.kind == "video":
            window = settings.window or getattr(config, "num_frames", None) or getattr(config, "frames_per_clip", 16)
            settings.window = int(window)

    def _load_processor(self, source: str, load: dict):
        from transformers import AutoFeatureExtractor, AutoImageProcessor, AutoVideoProcessor

        loaders = {"image": [AutoImageProcessor], "video": [AutoVideoProcessor, AutoImageProcessor],
                   "audio": [AutoFeatureExtractor]}[self.kind]
        for loader in loaders:
            try:
                return loader.from_pretrained(source, **load)
            except (OSError, ValueError, KeyError, ImportError):
                continue
        raise BlemoreError(f"--encoder {self.settings.encoder}: no {self.kind} preprocessor found (the folder needs "
                           "its preprocessor_config.json, as saved by the processor's save_pretrained)")

    def _resolve_layers(self, config) -> list[int] | None:
        choice = self.settings.layers
        if choice == "last":
            return None
        sub = getattr(config, "vision_config", None) if self.kind == "image" else None
        num_layers = getattr(sub or config, "num_hidden_layers", None)
        if num_layers is None:
            raise BlemoreError(f"--layers: {type(config).__name__} does not say how many layers it has")
        count = num_layers + 1
        if choice == "all":
            return list(range(count))
        layers = [i + count if i < 0 else i for i in choice]
        if any(not 0 <= i < count for i in layers):
            raise BlemoreError(f"--layers {choice}: the encoder has hidden states 0..{count - 1} "
                               "(0 = input of the first layer)")
        return layers

    @property
    def hidden_size(self) -> int:
        """Width of one frame/window vector (measured on a dummy input by ``probe``)."""
        return self._hidden_size

    # -- the three kinds ---------------------------------------------------------------------------------------

    def _pool(self, output):
        """Token states → one vector per item (masked mean over tokens, or the model's pooled output)."""
        import torch

        if self.layers is None and self.videomaev2:  # the reference's forward_features: fc_norm (eps 1e-6) of the mean
            norm = self.model.fc_norm
            return torch.nn.functional.layer_norm(output.last_hidden_state.mean(1), norm.normalized_shape,
                                                  norm.weight, norm.bias, self.model.config.layer_norm_eps)
        if self.layers is None:
            pooled = getattr(output, "pooler_output", None) if self.kind == "image" else None
            if pooled is not None:
                return pooled
            tokens = output.last_hidden_state
        else:
            tokens = torch.stack([output.hidden_states[i] for i in self.layers]).mean(0)
        return tokens.mean(1) if tokens.dim() == 3 else tokens

    def _pixel_inputs(self, processed) -> dict:
        name = getattr(self.module, "main_input_name", "pixel_values")
        values = processed.get("pixel_values_videos", processed.get("pixel_values"))
        return {name: values.to(self.device, dtype=self.dtype)}

    def embed_images(self, frames: list[np.ndarray]) -> np.ndarray:
        """(N,) HWC uint8 frames → (N, H) vectors, in batches."""
        import torch

        outputs = []
        for start in range(0, len(frames), self.batch_size):
            processed = self.processor(frames[start:start + self.batch_size], return_tensors="pt")
            inputs = self._pixel_inputs(processed)
            with torch.inference_mode():
                if self.layers is None and hasattr(self.model, "get_image_features"):
                    vectors = self.model.get_image_features(**inputs)
                    if not isinstance(vectors, torch.Tensor):  # a model output rather than the projected tensor
                        vectors = vectors.pooler_output
                elif self.layers is None and hasattr(self.model, "visual_projection"):  # a vision tower + projection
                    vectors = self.model(**inputs).image_embeds
                else:
                    output = self.module(**inputs, output_hidden_states=self.layers is not None)
                    vectors = self._pool(output)
                if self.normalize:
                    vectors = torch.nn.functional.normalize(vectors, dim=-1)
            outputs.append(vectors.float().cpu().numpy())
        return np.concatenate(outputs)

    def embed_windows(self, windows: list[list[np.ndarray]]) -> np.ndarray:
        """(N,) windows of ``window`` HWC uint8 frames → (N, H) vectors (token mean), in batches."""
        import torch

        outputs = []
        for start in range(0, len(windows), self.batch_size):
            if self.settings.pixels == "bgr_unnormalised":
                processed = {"pixel_values": bgr_unnormalised(windows[start:start + self.batch_size],
                                                              self.model.config.image_size)}
            else:
                processed = self.processor(windows[start:start + self.batch_size], return_tensors="pt")
            with torch.inference_mode():
                output = self.module(**self._pixel_inputs(processed), output_hidden_states=self.layers is not None)
                outputs.append(self._pool(output).float().cpu().numpy())
        return np.concatenate(outputs)

    def embed_audio(self, waveforms: list[np.ndarray]) -> list[np.ndarray]:
        """16 kHz mono waveforms → one (frames, H) array each (padding frames removed)."""
        import torch

        rate = getattr(self.processor, "sampling_rate", blemore.AUDIO_SAMPLING_RATE)
        # Without an attention mask, padding would change the outputs of the other clips: go one clip at a time.
        batch_size = self.batch_size if getattr(self.processor, "return_attention_mask", False) else 1
        results = []
        for start in range(0, len(waveforms), batch_size):
            chunk = waveforms[start:start + batch_size]
            processed = self.processor(chunk, sampling_rate=rate, return_tensors="pt", padding=True,
                                       return_attention_mask=batch_size > 1)
            values = processed.get("input_values", processed.get("input_features"))
            inputs = {getattr(self.module, "main_input_name", "input_values"): values.to(self.device, self.dtype)}
            if batch_size > 1 and "attention_mask" in processed:
                inputs["attention_mask"] = processed["attention_mask"].to(self.device)
            with torch.inference_mode():
                output = self.module(**inputs, output_hidden_states=self.layers is not None)
            tokens = (output.last_hidden_state if self.layers is None
                      else torch.stack([output.hidden_states[i] for i in self.layers]).mean(0))
            lengths = torch.tensor([len(w) for w in chunk])
            if hasattr(self.module, "_get_feat_extract_output_lengths"):
                frames = self.module._get_feat_extract_output_lengths(lengths)
            else:
                frames = torch.ceil(lengths * tokens.shape[1] / max(int(lengths.max()), 1))
            tokens = tokens.float().cpu().numpy()
            for row, count in enumerate(frames.clamp(1, tokens.shape[1]).tolist()):
                results.append(tokens[row, : int(count)])
        return results

    def probe(self) -> int:
        """Run one dummy item to learn the vector width (and fail early on an unusable encoder)."""
        try:
            if self.kind == "image":
                width = self.embed_images([np.zeros((64, 64, 3), np.uint8)]).shape[-1]
            elif self.kind == "video":
                width = self.embed_windows([[np.zeros((64, 64, 3), np.uint8)] * self.settings.window]).shape[-1]
            else:
                width = self.embed_audio([np.zeros(blemore.AUDIO_SAMPLING_RATE, np.float32)])[0].shape[-1]
        except BlemoreError:
            raise
        except Exception as error:  # any failure here means the encoder does not fit this kind of input
            raise BlemoreError(f"--encoder {self.settings.encoder}: a {self.kind} test input failed "
                               f"({type(error).__name__}: {' '.join(str(error).split())[:300]}); "
                               "check --kind") from None
        self._hidden_size = int(width)
        return self._hidden_size


def bgr_unnormalised(windows: list[list[np.ndarray]], image_size):
    """The organisers' VideoMAEv2 input (VideoMAEv2_features.py) from windows of RGB HWC uint8 frames.

    Their frames came from OpenCV, in BGR order, and were never converted; each was scaled to [0, 1] and resized
    bilinearly (``interpolate``, no antialiasing, ``align_corners=False``) to a square, with no crop and no mean/std
    normalisation. Returns (windows, frames, 3, size, size) float32.
    """
    import torch

    size = tuple(image_size) if isinstance(image_size, (list, tuple)) else (image_size, image_size)
    clips = []
    for window in windows:
        frames = torch.from_numpy(np.stack(window)).flip(-1)  # RGB → BGR
        frames = frames.permute(0, 3, 1, 2).to(torch.float32) / 255
        clips.append(torch.nn.functional.interpolate(frames, size=size, mode="bilinear", align_corners=False))
    return torch.stack(clips)


# ---------------------------------------------------------------------------------------------------------------
# Decoding clips (threads: torchcodec decodes outside the GIL)
# ---------------------------------------------------------------------------------------------------------------


def _frame_indices_image(num_frames: int, fps: float, settings: ExtractionSettings) -> list[int]:
    if not settings.frames_per_second:  # every frame (the paper), evenly thinned only if a cap is set
        if settings.max_frames and num_frames > settings.max_frames:
            return np.linspace(0, num_frames - 1, settings.max_frames).round().astype(int).tolist()
        return list(range(num_frames))
    duration = num_frames / fps if fps > 0 else num_frames
    count = max(1, int(np.floor(duration * settings.frames_per_second)))
    times = (np.arange(count) + 0.5) / settings.frames_per_second
    if count > settings.max_frames:  # evenly spaced over the clip
        times = (np.arange(settings.max_frames) + 0.5) * duration / settings.max_frames
    return [min(num_frames - 1, int(t * fps)) for t in times]


def _window_indices(num_frames: int, settings: ExtractionSettings) -> list[list[int]]:
    """Frame indices of each window; ``PADDING_FRAME`` where a zero-padded last window runs past the clip."""
    span = settings.window * settings.frame_stride
    if settings.last_window == "zero_pad":  # non-overlapping windows from frame 0; the last one padded
        return [[s + k * settings.frame_stride if s + k * settings.frame_stride < num_frames else PADDING_FRAME
                 for k in range(settings.window)] for s in range(0, num_frames, span)]
    starts = list(range(0, max(num_frames - span, 0) + 1, span))
    if starts[-1] + span < num_frames:  # the tail that a whole window no longer fits: end-aligned window
        starts.append(num_frames - span)
    return [[min(num_frames - 1, s + k * settings.frame_stride) for k in range(settings.window)] for s in starts]


def _video_windows(num_frames: int, fps: float, settings: ExtractionSettings) -> list[list[int]]:
    if settings.chunk_s or settings.window_hop:
        from blemore_toolkit.features.torchvision_video import chunked_window_indices

        return chunked_window_indices(num_frames, fps, settings.window, settings.window_hop or settings.window,
                                      settings.chunk_s)
    return _window_indices(num_frames, settings)


def _input_columns(kind: str) -> list[str]:
    """The prepared columns a kind reads (tables imported by clip name need no media)."""
    return [c for c in _INPUT_COLUMNS if c not in ("video", "audio")] if kind == "table" else _INPUT_COLUMNS


def decode_clip(row: dict, settings: ExtractionSettings) -> dict:
    """A stored row → the model's units: frames (image), windows of frames (video) or the waveform (audio)."""
    clip = row["clip_id"]
    if settings.kind == "table":  # per-clip files read by the encoder itself (OpenFace CSVs)
        return {"row": row, "units": None}
    if settings.kind == "audio":
        from torchcodec.decoders import AudioDecoder

        audio = row.get("audio") or {}
        if not audio.get("bytes"):
            raise BlemoreError(f"clip {clip}: no audio stored; an audio encoder needs the 16 kHz track")
        try:
            samples = AudioDecoder(audio["bytes"], sample_rate=blemore.AUDIO_SAMPLING_RATE, num_channels=1)
            waveform = samples.get_all_samples().data[0].numpy()
        except (RuntimeError, ValueError) as error:
            raise BlemoreError(f"clip {clip}: the audio cannot be decoded ({error})") from None
        if settings.max_audio_s:
            waveform = waveform[: int(settings.max_audio_s * blemore.AUDIO_SAMPLING_RATE)]
        return {"row": row, "units": waveform}

    from torchcodec.decoders import VideoDecoder

    video = row.get("video") or {}
    if not video.get("bytes"):
        raise BlemoreError(f"clip {clip}: no video stored")
    try:
        decoder = VideoDecoder(video["bytes"], dimension_order="NHWC", seek_mode="exact")
        num_frames = int(decoder.metadata.num_frames or 0)
        fps = float(decoder.metadata.average_fps or 25.0)
        if num_frames < 1:
            raise BlemoreError(f"clip {clip}: the video has no frames")
        if settings.kind == "image":
            groups = [_frame_indices_image(num_frames, fps, settings)]
        else:
            groups = _video_windows(num_frames, fps, settings)
        wanted = sorted({i for group in groups for i in group if i != PADDING_FRAME})
        frames = dict(zip(wanted, decoder.get_frames_at(indices=wanted).data.numpy()))
        frames[PADDING_FRAME] = np.zeros_like(frames[wanted[0]])
    except (RuntimeError, ValueError) as error:
        raise BlemoreError(f"clip {clip}: the video cannot be decoded ({error})") from None
    if settings.kind == "image":
        return {"row": row, "units": [frames[i] for i in groups[0]]}
    return {"row": row, "units": [[frames[i] for i in group] for group in groups]}


def _prefetched(rows: Iterable[dict], settings: ExtractionSettings, workers: int, ahead: int) -> Iterator[dict]:
    """``decode_clip`` over rows in threads, in order, holding at most ``ahead`` decoded clips."""
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        pending: list[concurrent.futures.Future] = []
        for row in rows:
            pending.append(pool.submit(decode_clip, row, settings))
            if len(pending) >= ahead:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


# ---------------------------------------------------------------------------------------------------------------
# Shards: one output parquet per input parquet, written atomically and marked done with a fingerprint
# ---------------------------------------------------------------------------------------------------------------


def _check_prepared(dataset_dir: Path) -> list[Path]:
    if not dataset_dir.is_dir():
        raise BlemoreError(f"{dataset_dir}: no such dataset folder (make one with `blemore prepare RAW OUT`)")
    readme = dataset_dir / "README.md"
    shards = sorted((dataset_dir / "data").glob("*.parquet"))
    if not readme.is_file() or not shards:
        raise BlemoreError(f"{dataset_dir}: not a prepared dataset folder (README.md and data/*.parquet expected; "
                           "run `blemore prepare RAW OUT` first)")
    return shards


def _rows(shard: Path, columns: Sequence[str]) -> Iterator[dict]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(shard)
    for batch in parquet.iter_batches(batch_size=8, columns=list(columns)):
        yield from batch.to_pylist()


def _windowed(frames: np.ndarray, window: int) -> np.ndarray:
    """Mean of consecutive ``window`` frames (the last window may be shorter)."""
    window = max(1, window)
    return np.stack([frames[i:i + window].mean(axis=0) for i in range(0, len(frames), window)])


def _clip_record(row: dict, steps: np.ndarray, encoder: FeatureEncoder) -> dict:
    """One output row: labels, the seven statistics over ``steps`` and the stored sequence."""
    if encoder.kind == "audio":
        rate = len(steps) / max(float(row.get("duration_s") or 0.0), 1e-3)  # encoder frames per second
        sequence = _windowed(steps, round(encoder.settings.audio_window_s * rate))
    else:
        sequence = steps
    return clip_record(row, aggregate(steps), sequence)


def _embed_group(decoded: list[dict], encoder: FeatureEncoder) -> list[dict]:
    """Embed the units of several clips together (full batches on the device), then split them per clip."""
    if hasattr(encoder, "clip_records"):  # encoders whose clip vector is not the seven statistics (eGeMAPS, tables)
        return encoder.clip_records(decoded)
    if encoder.kind == "audio":
        steps = encoder.embed_audio([d["units"] for d in decoded])
    else:
        units = [u for d in decoded for u in d["units"]]
        vectors = encoder.embed_images(units) if encoder.kind == "image" else encoder.embed_windows(units)
        bounds = np.cumsum([0] + [len(d["units"]) for d in decoded])
        steps = [vectors[bounds[i]:bounds[i + 1]] for i in range(len(decoded))]
    return [_clip_record(d["row"], s, encoder) for d, s in zip(decoded, steps)]


def write_feature_shard(shard: Path, out_dir: Path, encoder: FeatureEncoder, workers: int, on_clip=None) -> int:
    """Embed every clip of one prepared shard into ``out_dir/<shard name>`` (temporary file, then rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    features = feature_columns(encoder.hidden_size, getattr(encoder, "features_size", None))
    schema = features.arrow_schema
    final = out_dir / shard.name
    partial = out_dir / f".{shard.stem}.{os.getpid()}.partial"
    count, group, units = 0, [], 0
    try:
        with pq.ParquetWriter(partial, schema) as writer:
            def flush():
                nonlocal count, group, units
                if group:
                    rows = [features.encode_example(r) for r in _embed_group(group, encoder)]
                    writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                    count += len(group)
                    if on_clip:
                        on_clip(len(group))
                group, units = [], 0

            ahead = max(2, 2 * workers)
            for decoded in _prefetched(_rows(shard, _input_columns(encoder.kind)), encoder.settings, workers, ahead):
                group.append(decoded)
                units += len(decoded["units"]) if encoder.kind in ("image", "video") else 1
                if units >= encoder.batch_size or len(group) >= 64:
                    flush()
            flush()
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
    return count


# ---------------------------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class FeaturesResult:
    config: str
    out_dir: Path
    num_clips: int
    shards_written: int
    shards_reused: int
    hidden_size: int
    #: Width of the clip vector when it is not the seven statistics (eGeMAPS functionals).
    features_size: int | None = None
    #: False in the processes of a multi-process run other than the first (which records the config).
    is_main_process: bool = True


def extract_features(
    dataset_dir: str | os.PathLike,
    encoder: str,
    *,
    config_name: str | None = None,
    kind: str = "auto",
    revision: str | None = None,
    layers: str | Sequence[int] | None = "last",
    protocol: str = "toolkit",
    frames_per_second: float | None = None,
    max_frames: int | None = None,
    window: int | None = None,
    frame_stride: int | None = None,
    last_window: str | None = None,
    audio_window_s: float = 0.5,
    max_audio_s: float | None = None,
    device: str = "auto",
    dtype: str = "float32",
    batch_size: int = 32,
    workers: int | None = None,
    local_files_only: bool = False,
    trust_remote_code: bool = False,
    weights: str | os.PathLike | None = None,
    openface_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> FeaturesResult:
    """Embed every clip of a prepared dataset with ``encoder`` into the features config ``config_name``.

    See the module docstring for what is stored. Frame sampling and windows follow ``protocol``
    (``protocols.FEATURE_PROTOCOLS``); ``frames_per_second``, ``max_frames``, ``window``, ``frame_stride`` and
    ``last_window`` override it when given (``frames_per_second=0``: every frame; ``max_frames=0``: no cap).
    Besides transformers encoders, ``encoder`` may be ``egemaps`` (openSMILE, ``egemaps.py``),
    ``torchvision:NAME`` (torchvision's video models, ``weights`` a state-dict file; ``torchvision_video.py``) or
    ``openface`` with ``openface_dir`` (OpenFace FeatureExtraction CSVs, ``openface.py``).

    Under ``torchrun`` / ``accelerate launch`` each process embeds its share of the shards and the first one
    writes the provenance and the card once all are done (``sharding.py``); the result is that of one process.

    Raises ``BlemoreError`` (one line) for a folder that is not a
    prepared dataset, an encoder that cannot be loaded, or settings that differ from an existing config without
    ``overwrite``.
    """
    import torch

    from blemore_toolkit.features.encoders import OPENFACE
    from blemore_toolkit.features.sharding import feature_processes

    dataset_dir = Path(dataset_dir)
    shards = _check_prepared(dataset_dir)
    check_writable(dataset_dir, "features are stored inside the dataset folder (copy it somewhere writable)")
    if openface_dir is not None:
        encoder = encoder or OPENFACE
    if not encoder:
        raise BlemoreError("--encoder NAME_OR_PATH (or --openface-dir DIR) is needed")
    layers = parse_layers(layers)
    name = config_name or default_config_name(encoder, layers)
    if name in blemore.config_names() or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise BlemoreError(f"--name {name!r}: pick another config name (not default/foldK; letters, digits, -_.)")
    with feature_processes() as processes:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        device = processes.device(device)
        return _extract(dataset_dir, shards, encoder, name, processes, kind=kind, revision=revision, layers=layers,
                        protocol=protocol, frames_per_second=frames_per_second, max_frames=max_frames, window=window,
                        frame_stride=frame_stride, last_window=last_window, audio_window_s=audio_window_s,
                        max_audio_s=max_audio_s, device=device, dtype=dtype, batch_size=batch_size, workers=workers,
                        local_files_only=local_files_only, trust_remote_code=trust_remote_code, weights=weights,
                        openface_dir=openface_dir, overwrite=overwrite, progress=progress)


def _extract(dataset_dir: Path, shards: list[Path], encoder: str, name: str, processes, *, kind, revision, layers,
             protocol, frames_per_second, max_frames, window, frame_stride, last_window, audio_window_s, max_audio_s,
             device, dtype, batch_size, workers, local_files_only, trust_remote_code, weights, openface_dir,
             overwrite, progress) -> FeaturesResult:
    from blemore_toolkit.features.encoders import load_encoder
    from blemore_toolkit.features.protocols import feature_protocol

    sampling = feature_protocol(protocol)
    if frames_per_second is None:
        frames_per_second = sampling.frames_per_second
    if max_frames is None:
        max_frames = sampling.max_frames
    last_window = last_window or sampling.last_window
    if last_window not in ("end_aligned", "zero_pad"):
        raise BlemoreError(f"--last-window {last_window!r}: expected end_aligned or zero_pad")
    settings = ExtractionSettings(encoder=encoder, kind=kind, revision=revision, layers=layers,
                                  imagebind_frames=sampling.imagebind_frames,
                                  frames_per_second=frames_per_second or None, max_frames=max_frames or None,
                                  window=window or sampling.window, frame_stride=frame_stride or sampling.frame_stride,
                                  audio_window_s=audio_window_s, max_audio_s=max_audio_s, dtype=dtype,
                                  last_window=last_window, pixels=sampling.videomaev2_pixels)
    model = load_encoder(settings, protocol=getattr(sampling, "name", protocol), device=device,
                         batch_size=batch_size, weights=weights, openface_dir=openface_dir)
    if model is None:  # a transformers encoder
        model = FeatureEncoder(settings, device=device, batch_size=batch_size, local_files_only=local_files_only,
                               trust_remote_code=trust_remote_code)
    hidden_size = model.probe()
    if settings.kind != "image":  # keep provenance to the settings that matter for this kind
        settings.frames_per_second, settings.max_frames = None, None
    if settings.kind != "video":
        settings.window, settings.frame_stride, settings.last_window = None, None, "end_aligned"
    if settings.kind != "audio":
        settings.audio_window_s, settings.max_audio_s = None, None
    source_id = {"commit": model.commit}
    recorded_encoder, encoder_source = encoder, None  # egemaps, torchvision:NAME, openface: as they are
    if hasattr(model, "source_id"):  # what identifies the input of encoders that are not a model folder
        source_id.update(model.source_id())
    elif _is_local(encoder):  # a local folder: its name and its weights' digest, not where it lies
        source_id["weights_sha256"] = _weights_digest(Path(os.path.expanduser(encoder)))
        recorded_encoder, encoder_source = local_encoder_name(encoder), "local folder"
    else:
        encoder_source = "hub"
    settings_data = {**settings.fingerprint_data(), "encoder": recorded_encoder, **source_id}
    # Before local folders were recorded by name, the folder's path as given stood there: a run interrupted then
    # and resumed now with the same folder keeps its finished shards, and its config is no "other settings".
    as_given = {**settings.fingerprint_data(), **source_id} if encoder_source == "local folder" else None

    out_dir = dataset_dir / FEATURES_DIR / name
    provenance_path = out_dir / PROVENANCE_FILE
    if provenance_path.is_file() and not overwrite:
        previous = json.loads(provenance_path.read_text()).get("fingerprint")
        if previous != settings_data and not same_but_for_the_path(previous, settings_data):
            raise BlemoreError(f"{out_dir}: a features config {name!r} with other settings exists; pass --overwrite "
                               "to replace it or --name to store these features under another name")
    done_dir = out_dir / ".done"
    done_dir.mkdir(parents=True, exist_ok=True)
    fingerprints = {shard.name: _shard_fingerprint(shard, settings_data) for shard in shards}
    earlier = {shard.name: _shard_fingerprint(shard, as_given) for shard in shards} if as_given else {}
    reusable = {n for n, f in fingerprints.items() if (out_dir / n).is_file() and (done_dir / n).is_file()
                and (done_dir / n).read_text() in (f, earlier.get(n))}
    if processes.is_main:  # every process has worked out the same ``reusable`` before anyone writes (barrier)
        for stale in list(out_dir.glob("*.parquet")) + list(done_dir.iterdir()):
            if stale.name not in reusable:
                stale.unlink()
        for kept in reusable:  # recorded the way this run records them
            (done_dir / kept).write_text(fingerprints[kept])
    todo = [shard for shard in shards if shard.name not in reusable]
    processes.barrier()

    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    counts = {s.name: pq.ParquetFile(s).metadata.num_rows for s in shards}
    mine = processes.share(todo)
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    with tqdm(total=sum(counts[s.name] for s in mine), unit="clip", desc=f"features {name}",
              disable=not progress or not processes.is_main) as bar:
        for shard in mine:
            write_feature_shard(shard, out_dir, model, workers, on_clip=bar.update)
            (done_dir / shard.name).write_text(fingerprints[shard.name])
    processes.barrier()  # every shard is written before the first process records the config
    result = FeaturesResult(name, out_dir, sum(counts.values()), len(todo), len(reusable), hidden_size,
                            getattr(model, "features_size", None), processes.is_main)
    if not processes.is_main:
        return result

    from blemore_toolkit.features.dataset_clips import clips_record, read_dataset_labels

    provenance = {
        "config_name": name,
        "encoder": recorded_encoder,
        "encoder_source": encoder_source,
        "kind": settings.kind,
        "revision": revision,
        "commit": model.commit,
        "weights_sha256": source_id.get("weights_sha256"),
        "encoder_class": type(model.model).__name__,
        "layers": layers,
        "hidden_size": hidden_size,
        "frames_per_second": settings.frames_per_second,
        "max_frames": settings.max_frames,
        "imagebind_frames": settings.imagebind_frames,
        "window": settings.window,
        "frame_stride": settings.frame_stride,
        "last_window": settings.last_window if settings.kind == "video" else None,
        "pixels": settings.pixels if settings.kind == "video" else None,
        "protocol": getattr(sampling, "name", protocol),
        "audio_window_s": settings.audio_window_s,
        "max_audio_s": settings.max_audio_s,
        "aggregation": {"statistics": list(STATISTICS), "layout": "statistic-major: features[k*H:(k+1)*H] is "
                        "statistic k over the frames (image), windows (video) or encoder frames (audio)"},
        "dtype": dtype,
        "device": device,
        "toolkit_version": _toolkit_version(),
        "processes": processes.world_size,
        "fingerprint": settings_data,
        # the clips embedded, checked by everything that reads the config (features/dataset_clips.py)
        "clips": clips_record(read_dataset_labels(dataset_dir)),
    }
    if hasattr(model, "provenance"):  # what only this family records (openSMILE version, cleaning, windowing)
        provenance.update(model.provenance())
    write_text_atomically(provenance_path, json_text(provenance))
    register_config(dataset_dir, name, hidden_size, getattr(model, "features_size", None))
    shutil.rmtree(done_dir, ignore_errors=True)
    return result


def _toolkit_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for package in ("blemore", "blemore-toolkit"):
        try:
            return version(package)
        except PackageNotFoundError:
            continue
    return "unknown"
