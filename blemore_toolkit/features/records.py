"""What one row of a features config is made of: the seven statistics and the row itself.

Shared by ``extraction.py`` and the encoder families beside it (``egemaps.py``, ``openface.py``,
``torchvision_video.py``), which import it rather than ``extraction`` so that the modules form no cycle.
"""

from __future__ import annotations

import numpy as np

#: The seven per-clip statistics, in storage order.
STATISTICS: tuple[str, ...] = ("mean", "std", "p10", "p25", "p50", "p75", "p90")
_PERCENTILES = (10, 25, 50, 75, 90)
#: Frame index that stands for a black (all-zero) padding frame in a window.
PADDING_FRAME = -1


def aggregate(sequence: np.ndarray) -> np.ndarray:
    """(T, H) frames or windows → (7·H,) the seven statistics, statistic by statistic (see ``STATISTICS``)."""
    values = np.asarray(sequence, dtype=np.float64)
    if values.ndim != 2 or len(values) == 0:
        raise ValueError(f"expected a non-empty (steps, hidden) array, got shape {values.shape}")
    parts = [values.mean(axis=0), values.std(axis=0)] + list(np.percentile(values, _PERCENTILES, axis=0))
    return np.concatenate(parts).astype(np.float32)


def clip_record(row: dict, features: np.ndarray, sequence: np.ndarray) -> dict:
    """One output row: the clip's id, split, fold and labels, its clip vector and its stored sequence."""
    return {
        "clip_id": row["clip_id"], "split": row["split"], "fold": row["fold"], "outcome": row["outcome"],
        "soft_target": row["soft_target"], "presence": row["presence"],
        "features": features, "sequence": sequence.astype(np.float32), "num_windows": len(sequence),
    }


__all__ = ["PADDING_FRAME", "STATISTICS", "aggregate", "clip_record"]
