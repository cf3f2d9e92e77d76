"""``blemore features DATASET --encoder torchvision:NAME [--weights PATH]``: torchvision's video classifiers as
clip-level encoders (``pip install 'blemore[video]'``).

``NAME`` is one of torchvision's video models (``torchvision.models.list_models(torchvision.models.video)``):
``swin3d_t``, ``swin3d_s``, ``swin3d_b`` (Video Swin), ``mvit_v1_b``, ``mvit_v2_s``, ``r3d_18``, ``mc3_18``,
``r2plus1d_18``, ``s3d``. The model is built with random weights (``weights=None``: nothing is ever downloaded), then
``--weights PATH`` loads a state dict into it (a ``module.`` prefix, as ``nn.DataParallel`` saves, is removed; the
classification layer is not needed and its keys are ignored, so a checkpoint fine-tuned to another number of classes
loads too). The feature of a window is the input of the classification layer, with that layer replaced by the
identity: for Video Swin and the ResNets the ``avgpool`` output (as the organisers read it with a forward hook on
``avgpool``), for MViT the class token after the last norm, for S3D the pooled 1024 channels. Frames are prepared
by the transforms of the model's torchvision weights (``weights.transforms()``: RGB, short side to 256, centre crop
224, Kinetics mean/std), as the organisers' ``VideoSwinTransformer_features.py`` does.

Windows
-------
``--protocol paper`` cuts windows as the organisers' Video Swin code (BlEmoRe/blemore-common,
``feature_extraction/video_encoding/VideoSwinTransformer_features.py``) does: windows of **32 frames every 16**
(overlapping by half), over the clip read in **10 s chunks**; each chunk is prefixed with the previous chunk's last
16 frames; the final chunk is **zero-padded** (black frames) to ``int(10 * fps)`` frames when shorter, so that a clip
shorter than 10 s always gives ``(int(10 * fps) - 32) // 16 + 1`` windows (14 at 25 fps, 17 at 30 fps), the later ones
on black frames only. A chunk holds the frames whose time is within [start, end] (both ends: the frame at exactly
10 s is read twice, as ``torchvision.io.read_video`` with ``pts_unit="sec"`` gives it; a chunk starting between two
frames also gets the one before). ``--window`` changes the 32 (the hop stays half a window).
``--protocol toolkit`` uses the model's training clip length (32 frames for Video Swin, 16 for MViT and the ResNets,
128 for S3D), every 4th frame and an end-aligned last window, as for every clip encoder.

torchvision's wheels on PyPI are built against CUDA torch; beside a CPU-only torch their C extension (the detection
operators, which no video model uses) cannot load, and torchvision's import then stops while registering those
operators' meta kernels. ``import_torchvision`` declares the two operators' schemas in that case so that the pure
Python models import; a CPU machine can instead install the CPU build from PyTorch's own index.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from blemore import BlemoreError
from blemore_toolkit.features.records import PADDING_FRAME

PREFIX = "torchvision:"
#: The organisers' Video Swin windowing (VideoSwinTransformer_features.py: win_size, stride, chunk_duration_sec).
PAPER_WINDOW, PAPER_CHUNK_S = 32, 10.0
#: Frames a window under ``--protocol toolkit``: the clip length each model was trained on (torchvision's docs).
CLIP_LENGTHS = {"swin3d": 32, "mvit": 16, "r3d": 16, "mc3": 16, "r2plus1d": 16, "s3d": 128}
#: The classification layer of each family, replaced by the identity to read the pooled feature.
CLASSIFIERS = {"swin3d": "head", "mvit": "head", "r3d": "fc", "mc3": "fc", "r2plus1d": "fc", "s3d": "classifier"}
#: Extra architectures by name → (builder, the torchvision model whose preprocessing and family it shares); for
#: smaller instances of torchvision's classes (the tests register a tiny Video Swin).
ARCHITECTURES: dict[str, tuple[Callable, str]] = {}
_OPERATOR_SCHEMAS = {  # the operators torchvision registers meta kernels for without checking they exist
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_declared = []  # keeps the torch.library.Library that declared them alive


def import_torchvision():
    """``torchvision``, importable beside a CPU torch even when its C extension was built for CUDA (see above)."""
    try:
        import torchvision
    except ImportError:
        raise BlemoreError("--encoder torchvision:NAME needs torchvision: pip install 'blemore[video]' (on a CPU-only "
                           "machine the CPU build: pip install torchvision --index-url "
                           "https://download.pytorch.org/whl/cpu)") from None
    except RuntimeError as error:
        if "torchvision::" not in str(error):
            raise
        import torch

        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        library = torch.library.Library("torchvision", "DEF")
        for schema in _OPERATOR_SCHEMAS.values():
            library.define(schema)
        _declared.append(library)
        import torchvision
    return torchvision


def family(name: str) -> str:
    base = ARCHITECTURES[name][1] if name in ARCHITECTURES else name
    return next((f for f in CLASSIFIERS if base.startswith(f)), "")


def chunked_window_indices(num_frames: int, fps: float, window: int, hop: int, chunk_s: float | None
                           ) -> list[list[int]]:
    """Frame indices of each window (``PADDING_FRAME`` for a black frame), read as the organisers' Video Swin code
    reads a clip: ``chunk_s``-second chunks, each prefixed with the last ``window - hop`` frames of the one before,
    the final chunk zero-padded to ``int(chunk_s * fps)`` frames; windows of ``window`` frames every ``hop``.
    ``chunk_s`` None: the whole clip as one chunk, not padded."""
    duration = num_frames / fps
    overlap = window - hop
    chunk_s = chunk_s or math.inf
    expected = int(chunk_s * fps) if math.isfinite(chunk_s) else 0
    windows, carried, start = [], [], 0.0
    eps = 1e-9
    while True:
        end = min(start + chunk_s, duration)
        first = math.floor(start * fps + eps)  # the frame at ``start``, or the one before it
        chunk = carried + [i for i in range(first, num_frames) if i <= end * fps + eps]
        last = end >= duration
        if last and len(chunk) < expected:
            chunk += [PADDING_FRAME] * (expected - len(chunk))
        windows += [chunk[s:s + window] for s in range(0, len(chunk) - window + 1, hop)]
        if last:
            break
        carried = chunk[-overlap:] if overlap > 0 and len(chunk) >= overlap else []
        start = end
    return windows


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def load_state_dict(model, path: str | os.PathLike, classifier: str) -> None:
    """Load a state dict file into ``model`` (``module.`` prefixes removed, the classifier's keys ignored)."""
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise BlemoreError(f"--weights {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a pickle that is not plain tensors, a truncated file, not a torch file at all
        raise BlemoreError(f"--weights {path}: not a state dict torch can load safely "
                           f"({' '.join(str(error).split())[:200]})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise BlemoreError(f"--weights {path}: holds a {type(state).__name__}, not a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(f"{classifier}.")}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # a tensor of another shape
        raise BlemoreError(f"--weights {path}: does not fit this architecture "
                           f"({' '.join(str(error).split())[:300]})") from None
    missing = [k for k in result.missing_keys if not k.startswith(f"{classifier}.")]
    if missing or result.unexpected_keys:
        raise BlemoreError(f"--weights {path}: does not fit this architecture (missing {missing[:3]}, "
                           f"unexpected {result.unexpected_keys[:3]})")


class TorchvisionVideoEncoder:
    """A torchvision video model without its classification layer, on windows of RGB frames."""

    kind = "video"

    def __init__(self, settings, *, protocol: str, weights=None, device: str = "cpu",
                 batch_size: int = 8):
        import torch

        torchvision = import_torchvision()
        from torchvision.models import get_model, get_model_weights, list_models

        self.name = settings.encoder.removeprefix(PREFIX)
        available = list_models(module=torchvision.models.video)
        if self.name not in available and self.name not in ARCHITECTURES:
            raise BlemoreError(f"--encoder {settings.encoder}: not a torchvision video model (one of "
                               f"{', '.join(available)})")
        if settings.kind not in ("auto", "video"):
            raise BlemoreError(f"--kind {settings.kind}: torchvision's video models are clip (video) encoders")
        settings.kind = "video"
        self.settings, self.batch_size = settings, batch_size
        self.family = family(self.name)
        if self.name in ARCHITECTURES:
            build, reference = ARCHITECTURES[self.name]
            self.model = build()
        else:
            reference = self.name
            self.model = get_model(self.name, weights=None)
        self.preprocess = get_model_weights(reference).DEFAULT.transforms()
        self.classifier = CLASSIFIERS[self.family]
        self.weights = Path(weights).expanduser() if weights else None
        if self.weights is not None:
            load_state_dict(self.model, self.weights, self.classifier)
        setattr(self.model, self.classifier, torch.nn.Identity())
        dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
        self.dtype, self.device = dtypes[settings.dtype], torch.device(device)
        self.model.to(self.device, dtype=self.dtype).eval()
        self.commit = None
        if protocol == "paper":  # the organisers' Video Swin windows (module docstring)
            settings.window = settings.window or PAPER_WINDOW
            settings.window_hop, settings.chunk_s = settings.window // 2, PAPER_CHUNK_S
            settings.frame_stride, settings.last_window = 1, "zero_pad"
        else:
            settings.window = settings.window or CLIP_LENGTHS[self.family]

    @property
    def hidden_size(self) -> int:
        return self._hidden_size

    def window_tensor(self, frames: list[np.ndarray]):
        """One window of HWC uint8 RGB frames → the model's (C, T, H, W) input (the weights' transforms)."""
        import torch

        video = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)  # T, C, H, W as read_video gives it
        return self.preprocess(video)

    def embed_windows(self, windows: list[list[np.ndarray]]) -> np.ndarray:
        import torch

        outputs = []
        for start in range(0, len(windows), self.batch_size):
            batch = torch.stack([self.window_tensor(w) for w in windows[start:start + self.batch_size]])
            with torch.inference_mode():
                vectors = self.model(batch.to(self.device, dtype=self.dtype))
            outputs.append(vectors.reshape(len(batch), -1).float().cpu().numpy())
        return np.concatenate(outputs)

    def probe(self) -> int:
        try:
            width = self.embed_windows([[np.zeros((64, 64, 3), np.uint8)] * self.settings.window]).shape[-1]
        except Exception as error:
            raise BlemoreError(f"--encoder {self.settings.encoder}: a window of {self.settings.window} frames failed "
                               f"({type(error).__name__}: {' '.join(str(error).split())[:300]}); check --window"
                               ) from None
        self._hidden_size = int(width)
        return self._hidden_size

    def source_id(self) -> dict:
        return {"weights_sha256": {self.weights.name: _sha256(self.weights)} if self.weights else None}

    def provenance(self) -> dict:
        import torchvision

        return {
            "encoder_class": f"torchvision.models.video {type(self.model).__name__}",
            "torchvision_version": torchvision.__version__,
            "weights": self.weights.name if self.weights else None,  # its digest is weights_sha256; no local path
            "initialisation": "weights file" if self.weights else "random (torchvision's default init, no weights)",
            "feature": f"input of the classification layer `{self.classifier}` (replaced by the identity)",
            "preprocessing": repr(self.preprocess).replace("\n", " "),
            "window_hop": self.settings.window_hop,
            "chunk_s": self.settings.chunk_s,
        }


__all__ = [
    "ARCHITECTURES", "CLASSIFIERS", "CLIP_LENGTHS", "PAPER_CHUNK_S", "PAPER_WINDOW", "TorchvisionVideoEncoder",
    "chunked_window_indices", "family", "import_torchvision", "load_state_dict",
]
