"""What the clips of ``blemore synth`` show and sound like for each emotion and each actor, and the readout that
finds the labels in them again.

Every clip shows a "face": an ellipse over a background, both moving together by a few pixels (camera shake).

* Picture. Each non-neutral emotion has its own hue, spaced 72 degrees apart so that they stay apart after
  resizing to 32x32 and H.264's chroma subsampling: ``ang`` red (0), ``hap`` yellow (72), ``disg`` green (144),
  ``sad`` blue (216), ``fea`` purple (288); and its own coarse moving pattern (horizontal stripes, rings,
  vertical stripes, diagonal stripes, checks) that modulates brightness, never hue. A blend cuts the ellipse
  with a straight line whose angle and offset are drawn per clip, so that each emotion covers exactly its
  salience of the ellipse's area (70/30 -> 70 % and 30 %). Neutral is a grey, low-contrast ellipse.
  Intensity (1-4) raises saturation and pattern contrast.
* Sound. Each non-neutral emotion is a harmonic tone (fundamental + 2nd and 3rd harmonics) at its own
  fundamental: ``sad`` 220 Hz, ``disg`` 330 Hz, ``ang`` 523 Hz, ``fea`` 831 Hz, ``hap`` 1245 Hz. These were chosen
  so that no fundamental and no 2nd/3rd harmonic of another emotion come within 19 % of each other. A blend
  mixes the two tones with amplitudes proportional to salience, under one shared syllable-like envelope.
  Neutral is a quiet 100 Hz hum in noise. Intensity scales loudness.
* Actors. Each actor has a style drawn from its id: background tint and brightness, a hue shift of up to
  6 degrees, face size, pixel noise, a pitch shift of up to 3 %, harmonic balance, noise floor and syllable
  rate. Actor-disjoint evaluation therefore tests generalisation to unseen styles, while the label-carrying
  cues (hue family, area share, fundamental band, amplitude share) stay learnable.

``signal_features`` is the matching hand-written readout (colour-area shares over hue sectors and band
amplitudes around the fundamentals); ``tests/test_synth.py`` shows that nearest-centroid over it, fitted on
train actors, recovers the 36-way outcome of held-out actors from decoded clips.

The pictures are rendered by ``synth_frames.py``, the sound by ``synth_audio.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

import numpy as np

import blemore

# ---------------------------------------------------------------------------------------------------------------
# The signal: what each emotion looks and sounds like
# ---------------------------------------------------------------------------------------------------------------

#: Hue (degrees) of each non-neutral emotion, 72 degrees apart.
EMOTION_HUES: dict[str, float] = {"ang": 0.0, "hap": 72.0, "disg": 144.0, "sad": 216.0, "fea": 288.0}
#: Fundamental (Hz) of each non-neutral emotion's tone; no 1st-3rd harmonic of one is within 19 % of another.
EMOTION_FUNDAMENTALS_HZ: dict[str, float] = {
    "sad": 220.0,
    "disg": 329.63,
    "ang": 523.25,
    "fea": 830.61,
    "hap": 1244.51,
}
#: Coarse brightness pattern of each emotion (neutral has its own low-contrast blobs).
EMOTION_PATTERNS: dict[str, str] = {
    "ang": "horizontal",
    "hap": "rings",
    "disg": "vertical",
    "sad": "diagonal",
    "fea": "checks",
    "neu": "blobs",
}
NEUTRAL_HUM_HZ = 100.0
#: Intensity given to blends (whose names carry none) unless the caller draws one.
DEFAULT_BLEND_INTENSITY = 2.5
#: Pixels with chroma (max - min of RGB in 0..1) above this count as emotion-coloured in the readout.
CHROMA_THRESHOLD = 0.15
#: Half-width of the readout's band around each fundamental, relative (covers the actors' +-3 % pitch shift).
BAND_HALF_WIDTH = 0.07


def _derive_seed(*parts: object) -> int:
    """A 64-bit seed from any parts, stable across processes and Python versions (unlike ``hash``)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


@dataclasses.dataclass(frozen=True)
class ActorStyle:
    """How one actor differs from the others; none of it carries the label."""

    background_rgb: tuple[float, float, float] = (0.4, 0.4, 0.42)
    brightness: float = 0.92
    hue_shift: float = 0.0
    face_scale: float = 1.0
    pixel_noise: float = 0.008
    pitch_factor: float = 1.0
    harmonics: tuple[float, float] = (0.45, 0.2)
    audio_noise: float = 0.004
    syllable_rate: float = 4.0


def actor_style_for(actor_id: str, seed: int = 0) -> ActorStyle:
    """The style of an actor, drawn from its id and the run seed."""
    rng = np.random.default_rng(_derive_seed(seed, "actor-style", actor_id))
    background = _hsv_to_rgb(rng.uniform(0, 360), rng.uniform(0.03, 0.1), rng.uniform(0.25, 0.55))
    return ActorStyle(
        background_rgb=tuple(float(c) for c in background),
        brightness=float(rng.uniform(0.85, 1.0)),
        hue_shift=float(rng.uniform(-6.0, 6.0)),
        face_scale=float(rng.uniform(0.9, 1.1)),
        pixel_noise=float(rng.uniform(0.004, 0.015)),
        pitch_factor=float(rng.uniform(0.97, 1.03)),
        harmonics=(float(rng.uniform(0.3, 0.6)), float(rng.uniform(0.1, 0.3))),
        audio_noise=float(rng.uniform(0.002, 0.008)),
        syllable_rate=float(rng.uniform(3.0, 5.0)),
    )


def _hsv_to_rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    h = (hue % 360.0) / 60.0
    chroma = value * saturation
    x = chroma * (1 - abs(h % 2 - 1))
    sector = int(h) % 6
    rgb = [(chroma, x, 0), (x, chroma, 0), (0, chroma, x), (0, x, chroma), (x, 0, chroma), (chroma, 0, x)][sector]
    return np.asarray(rgb, dtype=np.float32) + np.float32(value - chroma)


def _check_label(emotions: Sequence[str], salience: Sequence[float]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Canonical order, and refuse anything that is not one of the 36 outcomes."""
    emotions, salience = blemore.canonical_label(emotions, salience)
    blemore.outcome_index(emotions, salience)
    return emotions, salience


def _frame_count(fps: float, duration_s: float) -> int:
    return max(1, round(duration_s * fps))


# ---------------------------------------------------------------------------------------------------------------
# The readout that proves the signal is there
# ---------------------------------------------------------------------------------------------------------------

_HUE_ORDER = tuple(EMOTION_HUES)


def signal_features(frames: np.ndarray, audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """A hand-written readout of the synthetic signal: 12 numbers in [0, 1].

    ``frames``: ``(T, H, W, 3)`` or ``(T, 3, H, W)`` uint8 RGB at any size (e.g. 8 frames at 32x32);
    ``audio``: mono samples. Returns, in ``blemore.BLENDABLE_EMOTIONS`` order, each emotion's share of the
    coloured pixels (hue sectors of 72 degrees), the coloured fraction of the picture (gated to [0, 1]), each
    emotion's share of the tone amplitude (band of +-7 % around its fundamental), and the tonal share of the
    sound's energy (gated). Shares are multiplied by their gate so that neutral clips sit near zero.
    """
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.shape[-1] != 3 and frames.shape[1] == 3:
        frames = np.moveaxis(frames, 1, -1)
    rgb = frames.reshape(-1, 3).astype(np.float32) / 255.0
    high, low = rgb.max(axis=1), rgb.min(axis=1)
    chroma = high - low
    coloured = chroma > CHROMA_THRESHOLD
    r, g, b = rgb[coloured].T
    c, top = chroma[coloured], high[coloured]
    hue = np.where(top == r, ((g - b) / c) % 6, np.where(top == g, (b - r) / c + 2, (r - g) / c + 4)) * 60.0
    centres = np.asarray([EMOTION_HUES[e] for e in _HUE_ORDER])
    distance = np.abs((hue[:, None] - centres[None, :] + 180.0) % 360.0 - 180.0)
    counts = np.bincount(distance.argmin(axis=1), minlength=len(centres)).astype(np.float64)
    colour_gate = min(1.0, coloured.mean() / 0.15)
    colour_share = counts / max(counts.sum(), 1.0)

    audio = np.asarray(audio, dtype=np.float64).reshape(-1)
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio)))) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1.0 / sample_rate)
    energies = np.asarray([
        spectrum[(freqs > EMOTION_FUNDAMENTALS_HZ[e] / (1 + BAND_HALF_WIDTH))
                 & (freqs < EMOTION_FUNDAMENTALS_HZ[e] * (1 + BAND_HALF_WIDTH))].sum()
        for e in _HUE_ORDER
    ])
    total = spectrum[freqs > 60.0].sum()
    audio_gate = min(1.0, energies.sum() / max(total, 1e-12) / 0.5)
    amplitudes = np.sqrt(energies)
    audio_share = amplitudes / max(amplitudes.sum(), 1e-12)

    order = [_HUE_ORDER.index(e) for e in blemore.BLENDABLE_EMOTIONS]
    return np.concatenate([
        colour_share[order] * colour_gate, [colour_gate], audio_share[order] * audio_gate, [audio_gate],
    ]).astype(np.float32)


__all__ = ["EMOTION_FUNDAMENTALS_HZ", "EMOTION_HUES", "EMOTION_PATTERNS", "ActorStyle", "actor_style_for",
           "signal_features"]
