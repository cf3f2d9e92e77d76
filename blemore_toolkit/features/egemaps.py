"""``blemore features DATASET --encoder egemaps``: openSMILE's eGeMAPSv02 on each clip's 16 kHz track.

eGeMAPS (the extended Geneva Minimalistic Acoustic Parameter Set, Eyben et al. 2016) is the standard hand-crafted
feature set of affective speech: 25 low-level descriptors every 10 ms (pitch, jitter, shimmer, loudness, HNR,
formants, spectral slopes and balance, MFCC 1-4, ...) and 88 functionals of them over the clip. It is computed by
openSMILE's Python package (``pip install 'blemore[audio-features]'``), with no downloaded weights.

Stored as a features config like every encoder, with two differences that the provenance records:

* ``features`` (the clip vector) is the **88 functionals** over the whole track, as the organisers'
  ``feature_extraction/egemaps_concat.py`` (BlEmoRe/blemore-common) takes them: the one row of openSMILE's
  functionals per clip, without its ``file``/``start``/``end`` columns;
* ``sequence`` holds the **25 low-level descriptors**, averaged over windows of ``--audio-window-s`` seconds
  (0.5 s: 50 descriptor frames) like the audio encoders' sequences.

A track too short for a functional makes openSMILE answer NaN; NaN is stored as 0 (recorded as ``nan_to_zero``).
"""

from __future__ import annotations

import warnings

import numpy as np

import blemore
from blemore import BlemoreError
from blemore_toolkit.features.records import clip_record

#: openSMILE's low-level descriptor hop for eGeMAPSv02 (10 ms).
DESCRIPTOR_HOP_S = 0.01
FEATURE_SET = "eGeMAPSv02"


def _opensmile():
    try:
        import opensmile
    except ImportError:
        raise BlemoreError("--encoder egemaps needs openSMILE's Python package: pip install 'blemore[audio-features]'"
                           ) from None
    return opensmile


def windowed_mean(frames: np.ndarray, window: int) -> np.ndarray:
    """Mean of consecutive ``window`` rows (the last window may be shorter); at least one row."""
    window = max(1, int(window))
    if len(frames) == 0:
        return np.zeros((1, frames.shape[1]), dtype=np.float32)
    return np.stack([frames[i:i + window].mean(axis=0) for i in range(0, len(frames), window)])


class EgemapsEncoder:
    """eGeMAPSv02 functionals (the clip vector) and low-level descriptors (the sequence) of 16 kHz tracks."""

    kind = "audio"
    #: Tracks per group handed to ``clip_records`` (openSMILE runs one track at a time).
    batch_size = 8

    def __init__(self, settings):
        opensmile = _opensmile()
        if settings.kind not in ("auto", "audio"):
            raise BlemoreError(f"--kind {settings.kind}: eGeMAPS is an audio feature set")
        settings.kind = "audio"
        self.settings = settings
        self.opensmile_version = opensmile.__version__
        self.functionals = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                           feature_level=opensmile.FeatureLevel.Functionals)
        self.descriptors = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                           feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
        self.model = self.functionals
        self.commit = None
        self.features_size = len(self.functionals.feature_names)
        self._hidden_size = len(self.descriptors.feature_names)

    @property
    def hidden_size(self) -> int:
        return self._hidden_size

    def probe(self) -> int:
        return self._hidden_size

    def embed(self, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One 16 kHz track → (88,) functionals and (frames, 25) low-level descriptors, NaN as 0."""
        rate = blemore.AUDIO_SAMPLING_RATE
        signal = np.asarray(waveform, dtype=np.float32).reshape(1, -1)
        with warnings.catch_warnings():  # "Segment too short, filling with NaN": handled below
            warnings.simplefilter("ignore", UserWarning)
            functionals = self.functionals.process_signal(signal, rate).to_numpy(dtype=np.float64)[0]
            descriptors = self.descriptors.process_signal(signal, rate).to_numpy(dtype=np.float64)
        return np.nan_to_num(functionals).astype(np.float32), np.nan_to_num(descriptors).astype(np.float32)

    def clip_records(self, decoded: list[dict]) -> list[dict]:
        window = round(self.settings.audio_window_s / DESCRIPTOR_HOP_S)
        records = []
        for item in decoded:
            functionals, descriptors = self.embed(item["units"])
            records.append(clip_record(item["row"], functionals, windowed_mean(descriptors, window)))
        return records

    def source_id(self) -> dict:
        return {"opensmile": self.opensmile_version, "feature_set": FEATURE_SET}

    def provenance(self) -> dict:
        return {
            "encoder_class": f"opensmile.Smile({FEATURE_SET})",
            "opensmile_version": self.opensmile_version,
            "features_size": self.features_size,
            "feature_names": list(self.functionals.feature_names),
            "sequence_names": list(self.descriptors.feature_names),
            "aggregation": {"features": f"openSMILE {FEATURE_SET} functionals over the whole track (88)",
                            "sequence": f"{FEATURE_SET} low-level descriptors (every {DESCRIPTOR_HOP_S * 1000:g} ms)"
                            f", mean over windows of audio_window_s", "nan_to_zero": True,
                            "source": "BlEmoRe/blemore-common feature_extraction/egemaps_concat.py"},
        }


__all__ = ["DESCRIPTOR_HOP_S", "EgemapsEncoder", "FEATURE_SET", "windowed_mean"]
