"""A features config as stored in a prepared dataset folder, apart from the work of making one (``extraction.py``).

Where it lies (``features/<config>/``, ``provenance.json``), its columns, the settings that decide its numbers and
the fingerprints made of them (a finished shard is reused only under the same fingerprint; a local encoder folder
counts by its name and weights digest, never its path), its default name, and its entry in the README's YAML header.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import blemore
from blemore import BlemoreError
from blemore_toolkit.data.atomic import write_text_atomically
from blemore_toolkit.data.card import config_info, join_card, split_card
from blemore_toolkit.features.records import STATISTICS

ENCODER_KINDS: tuple[str, ...] = ("image", "video", "audio")
FEATURES_DIR = "features"
PROVENANCE_FILE = "provenance.json"
#: Bumped when the stored layout changes, so that a resumed run never mixes shards of two layouts.
FEATURES_FORMAT_VERSION = 1


# ---------------------------------------------------------------------------------------------------------------
# Statistics and the stored schema
# ---------------------------------------------------------------------------------------------------------------


def feature_columns(hidden_size: int, features_size: int | None = None):
    """The ``datasets.Features`` of a features config whose encoder gives ``hidden_size``-wide vectors.

    ``features`` holds the seven statistics (``7 * hidden_size`` values) unless ``features_size`` says otherwise (a
    clip vector of its own, e.g. eGeMAPS functionals beside its low-level descriptors as the sequence).
    """
    import datasets

    return datasets.Features({
        "clip_id": datasets.Value("string"),
        "split": datasets.Value("string"),
        "fold": datasets.Value("int8"),
        "outcome": datasets.ClassLabel(names=list(blemore.OUTCOME_NAMES)),
        "soft_target": datasets.List(datasets.Value("float32"), length=len(blemore.EMOTIONS)),
        "presence": datasets.List(datasets.Value("float32"), length=len(blemore.EMOTIONS)),
        "features": datasets.List(datasets.Value("float32"), length=features_size or len(STATISTICS) * hidden_size),
        "sequence": datasets.List(datasets.List(datasets.Value("float32"), length=hidden_size)),
        "num_windows": datasets.Value("int32"),
    })


def parse_layers(spec: str | Sequence[int] | None) -> str | list[int]:
    """``"last"``, ``"all"`` or hidden-state indices from ``"6-12"``, ``"6,8,10"``, ``"-1"`` (or a list)."""
    if spec is None or spec == "last":
        return "last"
    if spec == "all":
        return "all"
    if not isinstance(spec, str):
        return [int(i) for i in spec]
    layers: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        match = re.fullmatch(r"(-?\d+)-(-?\d+)", part)
        try:
            layers += list(range(int(match[1]), int(match[2]) + 1)) if match else [int(part)]
        except ValueError:
            raise BlemoreError(f"--layers {spec!r}: expected 'last', 'all', 'A-B' or comma-separated indices"
                               ) from None
    if not layers:
        raise BlemoreError(f"--layers {spec!r} selects no layer")
    return layers


# ---------------------------------------------------------------------------------------------------------------
# Settings and fingerprints
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ExtractionSettings:
    """Everything that decides the numbers in a features config (recorded in provenance.json)."""

    encoder: str
    kind: str
    revision: str | None = None
    layers: str | list[int] = "last"
    #: None: every frame.
    frames_per_second: float | None = 4.0
    #: None: no cap.
    max_frames: int | None = 64
    #: A converted ImageBind's frame preprocessing (``imagebind_frames.py``); None for every other encoder.
    imagebind_frames: str | None = None
    window: int | None = None
    frame_stride: int = 4
    audio_window_s: float = 0.5
    max_audio_s: float | None = None
    dtype: str = "float32"
    #: ``end_aligned`` or ``zero_pad`` (see the module docstring).
    last_window: str = "end_aligned"
    #: ``processor`` or, for a converted VideoMAEv2 folder under the paper's protocol, ``bgr_unnormalised``
    #: (``protocols.FeatureProtocol.videomaev2_pixels``).
    pixels: str = "processor"
    #: Frames from one window's start to the next (None: ``window * frame_stride``, windows side by side).
    window_hop: int | None = None
    #: Read the clip in chunks of this many seconds, as the organisers' Video Swin code does (None: whole clip;
    #: see ``torchvision_video.chunked_window_indices``).
    chunk_s: float | None = None

    def fingerprint_data(self) -> dict:
        data = dataclasses.asdict(self)
        data.pop("dtype")  # a storage/computation detail that hardly moves the numbers; keep shards reusable
        if data["imagebind_frames"] is None:  # not an ImageBind folder: fingerprints as before the setting existed
            data.pop("imagebind_frames")
        if data["last_window"] == "end_aligned":  # the only rule before it was a setting: old shards stay valid
            data.pop("last_window")
        if data["pixels"] == "processor":  # likewise
            data.pop("pixels")
        for later in ("window_hop", "chunk_s"):  # settings added later: absent when unused, so old shards stay valid
            if data[later] is None:
                data.pop(later)
        return data


def _is_local(source: str) -> bool:
    return os.path.isdir(source) or source.startswith((".", "/", "~"))


def local_encoder_name(encoder: str) -> str:
    """How ``provenance.json`` and the fingerprints record a local encoder folder: by its name alone (``videomae`` for
    ``/home/me/weights/videomae/``), never its absolute path, which ``push`` would publish with the dataset. The
    digest of its weights (``_weights_digest``), recorded beside the name, is what tells two such folders apart."""
    return Path(os.path.abspath(os.path.expanduser(encoder))).name or encoder


def same_but_for_the_path(previous, settings_data: dict) -> bool:
    """Whether a config's recorded fingerprint ``previous`` is ``settings_data`` as written before local encoder
    folders were recorded by name (``local_encoder_name``): the same settings and weights digest, with a path whose
    last part is that name where the name now stands."""
    if not isinstance(previous, dict) or "weights_sha256" not in settings_data:
        return False
    path = previous.get("encoder")
    return (isinstance(path, str) and local_encoder_name(path) == settings_data["encoder"]
            and {**previous, "encoder": settings_data["encoder"]} == settings_data)


def _weights_digest(folder: Path) -> dict[str, str]:
    """sha256 of the weight files of a local encoder folder: the revision of a checkpoint that has no commit."""
    digests = {}
    for path in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        digests[path.name] = digest.hexdigest()
    return digests


def _shard_fingerprint(shard: Path, settings_data: dict) -> str:
    stat = shard.stat()
    text = json.dumps({"format": FEATURES_FORMAT_VERSION, "shard": shard.name, "size": stat.st_size,
                       "mtime_ns": stat.st_mtime_ns, "settings": settings_data}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()



# ---------------------------------------------------------------------------------------------------------------
# The README: one more config in the YAML header, the rest of the card untouched
# ---------------------------------------------------------------------------------------------------------------


def register_config(dataset_dir: Path, name: str, hidden_size: int, features_size: int | None = None) -> None:
    """Add (or replace) the features config ``name`` in the README's YAML ``configs`` and ``dataset_info``."""
    readme = dataset_dir / "README.md"
    metadata, body = split_card(readme.read_text(), readme)
    if not isinstance(metadata.get("configs"), list):
        raise BlemoreError(f"{readme}: the YAML header lists no configs; run `blemore prepare RAW OUT` again")
    out_dir = dataset_dir / FEATURES_DIR / name
    parts = sorted({p.name.split("-", 1)[0] for p in out_dir.glob("*.parquet")})
    folds = [p for p in parts if p.startswith("fold")]
    data_files = []
    if folds:
        data_files.append({"split": "train", "path": [f"{FEATURES_DIR}/{name}/{p}-*.parquet" for p in folds]})
    if "test" in parts:
        data_files.append({"split": "test", "path": [f"{FEATURES_DIR}/{name}/test-*.parquet"]})
    metadata["configs"] = [c for c in metadata["configs"] if c.get("config_name") != name]
    config = {"config_name": name, "data_files": data_files}
    metadata["configs"].append(config)
    infos = [i for i in metadata.get("dataset_info") or [] if i.get("config_name") != name]
    infos.append(config_info(dataset_dir, config, feature_columns(hidden_size, features_size)._to_yaml_list()))
    metadata["dataset_info"] = infos
    write_text_atomically(readme, join_card(metadata, body))


def feature_configs(dataset_dir: str | os.PathLike) -> list[str]:
    """Names of the features configs stored in a prepared dataset folder."""
    root = Path(dataset_dir) / FEATURES_DIR
    return sorted(p.parent.name for p in root.glob(f"*/{PROVENANCE_FILE}"))


# ---------------------------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------------------------


def default_config_name(encoder: str, layers: str | list[int]) -> str:
    """A config name from the encoder's last path component, plus the layers when they are not the default."""
    base = re.sub(r"[^a-z0-9]+", "-", Path(encoder.rstrip("/")).name.lower()).strip("-") or "encoder"
    if layers == "all":
        base += "-all"
    elif layers != "last":
        contiguous = len(layers) > 1 and layers == list(range(layers[0], layers[-1] + 1))
        base += "-l" + (f"{layers[0]}-{layers[-1]}" if contiguous else "-".join(map(str, layers)))
    return base
