"""The sound of ``blemore synth``'s clips, synthesised from the signal that ``synth_signal.py`` describes.

Each emotion a harmonic tone at its own fundamental, a blend's two tones mixed in the shares of their saliences
under one syllable-like envelope, neutral a quiet hum in noise; the actor's pitch, harmonics and noise floor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from blemore_toolkit.data.synth_signal import (
    DEFAULT_BLEND_INTENSITY,
    EMOTION_FUNDAMENTALS_HZ,
    NEUTRAL_HUM_HZ,
    ActorStyle,
    _check_label,
    _derive_seed,
)

#: 16 kHz: the rate the toolkit decodes to anyway; 48 kHz cost a third of the demo's encoding time in AAC.
DEFAULT_AUDIO_RATE = 16_000


# ---------------------------------------------------------------------------------------------------------------
# Sound
# ---------------------------------------------------------------------------------------------------------------


def _wrapped_phase(cycles: np.ndarray, offset: float) -> np.ndarray:
    """``2 pi cycles + offset`` wrapped to [0, 2 pi) as float32: the cycles are counted in float64 (exact pitch over
    8 s) and wrapped before float32 trigonometry, which is many times faster than float64's; ``floor`` rather than
    ``np.mod``, which costs as much as the rest of a tone."""
    cycles = cycles + offset / (2 * math.pi)
    cycles -= np.floor(cycles)
    return cycles.astype(np.float32) * np.float32(2 * math.pi)


def render_audio(
    emotions: Sequence[str],
    salience: Sequence[float],
    *,
    sample_rate: int = DEFAULT_AUDIO_RATE,
    duration_s: float = 2.0,
    seed: int = 0,
    intensity: float | None = None,
    actor_style: ActorStyle | None = None,
) -> np.ndarray:
    """The clip's mono sound as float32 in [-1, 1]: what ``write_clip`` encodes as AAC."""
    emotions, salience = _check_label(emotions, salience)
    style = actor_style or ActorStyle()
    rng = np.random.default_rng(_derive_seed(seed, "audio"))
    n = max(1, round(duration_s * sample_rate))
    t = np.arange(n, dtype=np.float64) / sample_rate

    # Syllable-like loudness contour shared by both tones of a blend, so their amplitude ratio stays the salience.
    syllables = rng.uniform(0.35, 1.0, int(math.ceil(duration_s * style.syllable_rate)) + 2)
    # linear between the syllable peaks, as np.interp would give, without its search for every sample
    position = np.arange(n, dtype=np.float32) * np.float32(style.syllable_rate / sample_rate)
    peak = position.astype(np.intp)
    syllables = syllables.astype(np.float32)
    envelope = syllables[peak] + (position - peak) * np.diff(syllables)[peak]
    fade = min(n // 2, int(0.015 * sample_rate))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        envelope[:fade] *= ramp
        envelope[n - fade :] *= ramp[::-1]

    if emotions == ("neu",):
        hum = np.sin(_wrapped_phase(NEUTRAL_HUM_HZ * t, rng.uniform(0, 2 * math.pi)))
        noise = np.convolve(rng.standard_normal(n, dtype=np.float32), np.ones(8, np.float32) / 8, mode="same")
        signal = 0.05 * hum.astype(np.float32) * (0.5 + 0.5 * envelope) + 0.05 * noise
    else:
        level = DEFAULT_BLEND_INTENSITY if intensity is None else float(intensity)
        loudness = 0.12 + 0.06 * level
        h2, h3 = style.harmonics
        # A slight vibrato (+-0.4 %) as a warp of time shared by the tones: instantaneous frequency f0 (1 + d cos).
        vibrato_rate, depth = rng.uniform(4.0, 6.0), 0.004
        # float32 is plenty for the warp (it moves time by at most 0.2 ms) and its sine is many times faster
        vibrato = np.sin(np.float32(2 * math.pi * vibrato_rate) * t.astype(np.float32))
        warped = t + np.float32(depth / (2 * math.pi * vibrato_rate)) * vibrato
        signal = np.zeros(n, dtype=np.float32)
        for emotion, share in zip(emotions, salience):
            f0 = EMOTION_FUNDAMENTALS_HZ[emotion] * style.pitch_factor
            phase = _wrapped_phase(f0 * warped, rng.uniform(0, 2 * math.pi))
            sine, cosine = np.sin(phase), np.cos(phase)
            # 2nd and 3rd harmonics from the fundamental's sine and cosine: sin 2x = 2 sin x cos x, sin 3x = ...
            tone = sine * (1 + 2 * h2 * cosine + h3 * (3 - 4 * sine * sine))
            signal += np.float32(share / 100.0) * tone
        signal *= np.float32(loudness) * envelope
    signal += np.float32(style.audio_noise) * rng.standard_normal(n, dtype=np.float32)
    return np.clip(signal, -1.0, 1.0).astype(np.float32)


__all__ = ["DEFAULT_AUDIO_RATE", "render_audio"]
