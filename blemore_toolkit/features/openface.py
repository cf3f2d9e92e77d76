"""``blemore features DATASET --openface-dir DIR [--name openface]``: OpenFace 2.x FeatureExtraction CSVs imported.

OpenFace (Baltrušaitis et al., the C++ toolkit) is not a Python encoder: run its ``FeatureExtraction -f CLIP.mov``
on each clip, then import the CSVs it writes (one per clip, ``<clip name>.csv``, found at any depth under DIR and
matched to the prepared clips by name). What is taken, and how it is cleaned, follows the organisers'
``feature_extraction/openface_operations/`` (BlEmoRe/blemore-common: ``config_openface.py`` for the columns,
``openface_helpers.py`` and ``openface2npy.py`` for the cleaning, ``timeseries2aggregate.py`` for the statistics):

* **31 columns, in this order**: the 17 AU intensities ``AU01_r AU02_r AU04_r AU05_r AU06_r AU07_r AU09_r AU10_r
  AU12_r AU14_r AU15_r AU17_r AU20_r AU23_r AU25_r AU26_r AU45_r``, the head pose ``pose_Rx pose_Ry pose_Rz pose_Tx
  pose_Ty pose_Tz``, the gaze ``gaze_0_x gaze_0_y gaze_0_z gaze_1_x gaze_1_y gaze_1_z gaze_angle_x gaze_angle_y``;
* a frame is **bad** when ``success != 1`` or ``confidence < 0.85``. With the success ratio
  ``mean(success == 1)`` and the confidence ratio ``mean(confidence >= 0.85)``: when **either** ratio is in
  [0.85, 1), the bad frames' 31 values are replaced by a **linear interpolation** over the frame order (pandas'
  ``interpolate(method="linear")``: a bad frame after the last good one takes the last good frame's values), and the
  frames before the first good frame, which it cannot fill, are **dropped**;
* when neither ratio is in [0.85, 1) the frames are kept **as they are**, bad ones included: both ratios 1 (nothing
  to clean), or both below 0.85 (the organisers' npy conversion keeps such clips unchanged; only their separate
  ``aggregate_data.py`` summary discards them);
* a CSV with no frame left (or none at all) becomes **one row of zeros**.

The stored ``sequence`` is the cleaned frames (one row of 31 per frame), ``features`` the seven statistics over
them, as for every frame-level encoder. FeatureExtraction writes its header with ``", "`` between names (OpenFace
2.0-2.2) or ``","``: both are read.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from blemore import BlemoreError
from blemore_toolkit.features.records import aggregate, clip_record

AU_INTENSITY_COLUMNS: tuple[str, ...] = (
    "AU01_r", "AU02_r", "AU04_r", "AU05_r", "AU06_r", "AU07_r", "AU09_r", "AU10_r", "AU12_r", "AU14_r", "AU15_r",
    "AU17_r", "AU20_r", "AU23_r", "AU25_r", "AU26_r", "AU45_r",
)
POSE_COLUMNS: tuple[str, ...] = ("pose_Rx", "pose_Ry", "pose_Rz", "pose_Tx", "pose_Ty", "pose_Tz")
GAZE_COLUMNS: tuple[str, ...] = (
    "gaze_0_x", "gaze_0_y", "gaze_0_z", "gaze_1_x", "gaze_1_y", "gaze_1_z", "gaze_angle_x", "gaze_angle_y",
)
#: The organisers' 31 feature columns, in their order (config_openface.py: AU intensities, pose, gaze).
FEATURE_COLUMNS: tuple[str, ...] = AU_INTENSITY_COLUMNS + POSE_COLUMNS + GAZE_COLUMNS
QUALITY_COLUMNS: tuple[str, ...] = ("success", "confidence")
#: A frame with a lower landmark confidence is bad (openface2npy.py's ``confidence_threshold``).
CONFIDENCE_THRESHOLD = 0.85
#: Clips whose good-frame ratio is in [this, 1) are interpolated (``good_frames_ratio_threshold``).
GOOD_FRAMES_RATIO = 0.85
SOURCE = ("BlEmoRe/blemore-common feature_extraction/openface_operations/ (config_openface.py, openface_helpers.py, "
          "openface2npy.py) and feature_extraction/timeseries2aggregate.py")


def read_openface_csv(path: str | os.PathLike):
    """One FeatureExtraction CSV → a DataFrame of its quality and feature columns (header names stripped).

    ``BlemoreError`` naming the file when it cannot be read, lacks a column, or holds a non-number there.
    """
    import pandas as pd

    path = Path(path)
    try:
        table = pd.read_csv(path, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise BlemoreError(f"OpenFace CSV {path}: the file is empty (not even a header line)") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise BlemoreError(f"OpenFace CSV {path}: cannot be read ({' '.join(str(error).split())[:200]})") from None
    table.columns = [str(c).strip() for c in table.columns]
    wanted = list(QUALITY_COLUMNS + FEATURE_COLUMNS)
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        raise BlemoreError(f"OpenFace CSV {path}: not a FeatureExtraction output, columns {', '.join(missing[:4])}"
                           f"{' ...' if len(missing) > 4 else ''} missing (run FeatureExtraction with its default "
                           "outputs, or at least -pose -gaze -aus)")
    numbers = table[wanted].apply(pd.to_numeric, errors="coerce").astype("float64")
    for column in wanted:  # FeatureExtraction writes numbers only: anything else (text, NaN, a gap) is damage
        if numbers[column].isna().any():
            line = int(np.flatnonzero(numbers[column].isna().to_numpy())[0]) + 2
            raise BlemoreError(f"OpenFace CSV {path}: column {column} holds a value that is not a number "
                               f"(line {line})")
    return numbers


def good_frame_ratios(table) -> tuple[float, float]:
    """(success ratio, confidence ratio) of a FeatureExtraction table; NaN for a table with no frame."""
    count = len(table)
    if count == 0:
        return float("nan"), float("nan")
    success = float((table["success"].to_numpy() == 1).sum()) / count
    confident = float((table["confidence"].to_numpy() >= CONFIDENCE_THRESHOLD).sum()) / count
    return success, confident


def clean_frames(table) -> tuple[np.ndarray, str]:
    """The organisers' cleaning of one clip's frames → ((frames, 31) float32, what was done).

    What was done: ``kept`` (both ratios 1), ``interpolated``, ``kept_bad_frames`` (neither ratio in [0.85, 1),
    at least one below) or ``empty`` (one row of zeros).
    """
    success, confident = good_frame_ratios(table)
    in_range = [GOOD_FRAMES_RATIO <= ratio < 1 for ratio in (success, confident)]  # NaN compares False
    columns = list(FEATURE_COLUMNS)
    action = "kept"
    if any(in_range):
        table = table.copy()
        bad = (table["success"] != 1) | (table["confidence"] < CONFIDENCE_THRESHOLD)
        table.loc[bad, columns] = np.nan
        table[columns] = table[columns].interpolate(method="linear")
        table = table.dropna(subset=columns)
        action = "interpolated"
    elif len(table) and min(success, confident) < 1:
        action = "kept_bad_frames"
    if len(table) == 0:
        return np.zeros((1, len(columns)), dtype=np.float32), "empty"
    return table[columns].to_numpy(dtype=np.float32), action


def index_csvs(folder: str | os.PathLike) -> dict[str, Path]:
    """``clip name → CSV`` for every ``*.csv`` at any depth of ``folder``; a name found twice is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BlemoreError(f"--openface-dir {folder}: no such folder")
    index: dict[str, Path] = {}
    for path in sorted(folder.rglob("*.csv")):
        if path.stem in index:
            raise BlemoreError(f"--openface-dir {folder}: two CSVs for clip {path.stem} ({index[path.stem]} and "
                               f"{path}); keep one")
        index[path.stem] = path
    return index


class OpenFaceTable:
    """The "encoder" of ``--openface-dir``: each clip's CSV, cleaned, as its frame sequence."""

    kind = "table"
    #: Clips per group handed to ``clip_records``.
    batch_size = 64

    def __init__(self, settings, folder: str | os.PathLike):
        if settings.kind not in ("auto", "table"):
            raise BlemoreError(f"--kind {settings.kind}: OpenFace CSVs are imported as they are (no --kind)")
        settings.kind = "table"
        self.settings = settings
        self.folder = Path(folder).expanduser().resolve()
        self.csvs = index_csvs(self.folder)
        self.model = self
        self.commit = None
        self._hidden_size = len(FEATURE_COLUMNS)

    @property
    def hidden_size(self) -> int:
        return self._hidden_size

    def probe(self) -> int:
        return self._hidden_size

    def frames(self, clip_id: str) -> np.ndarray:
        path = self.csvs.get(clip_id)
        if path is None:
            raise BlemoreError(f"clip {clip_id}: no OpenFace CSV {clip_id}.csv under {self.folder}")
        return clean_frames(read_openface_csv(path))[0]

    def clip_records(self, decoded: list[dict]) -> list[dict]:
        records = []
        for item in decoded:
            frames = self.frames(item["row"]["clip_id"])
            records.append(clip_record(item["row"], aggregate(frames), frames))
        return records

    def source_id(self) -> dict:
        """Names, sizes and modification times of the CSVs: a changed CSV makes a resumed run start over."""
        digest = hashlib.sha256()
        for name, path in sorted(self.csvs.items()):
            stat = path.stat()
            digest.update(f"{name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
        return {"openface_dir": self.folder.name, "csv_listing_sha256": digest.hexdigest()}

    def provenance(self) -> dict:
        return {
            "encoder_class": "OpenFace FeatureExtraction CSV",
            "openface_dir": self.folder.name,  # its name, not its local path (push publishes provenance.json)
            "columns": list(FEATURE_COLUMNS),
            "cleaning": {"confidence_threshold": CONFIDENCE_THRESHOLD, "good_frames_ratio": GOOD_FRAMES_RATIO,
                         "rule": "bad frame: success != 1 or confidence < 0.85; if the success or the confidence "
                         "ratio is in [0.85, 1), bad frames are linearly interpolated and leading ones dropped; "
                         "otherwise frames are kept as they are; no frame left: one row of zeros",
                         "source": SOURCE},
        }


__all__ = [
    "AU_INTENSITY_COLUMNS", "CONFIDENCE_THRESHOLD", "FEATURE_COLUMNS", "GAZE_COLUMNS", "GOOD_FRAMES_RATIO",
    "OpenFaceTable", "POSE_COLUMNS", "clean_frames", "good_frame_ratios", "index_csvs", "read_openface_csv",
]
