"""``blemore synth RAW``: a synthetic BLEMORE download whose pictures and sounds carry the labels.

The real videos cannot ship with the toolkit, yet every part downstream (prepare, loading, training, scoring)
needs clips that look like the authors' release and whose labels are *learnable*, so that a correct pipeline
reaches high accuracy and a label bug (say, swapped saliences) shows up as low accuracy. This module writes
such a download: the real layout and names, H.264 + AAC ``.mov`` clips, metadata, an anonymised test split and,
outside the download, the answer key for it.

The signal
----------
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

Layout and timing: durations are drawn per clip (log-uniform in 1-8 s: mostly short takes, a few long ones) at
25 or 30 fps, sound at 16 kHz (what every model here reads; ``--audio-rate 48000`` gives the release's rate).
Clips are encoded by the ffmpeg command line with x264's fastest preset, a couple of dozen small clips per ffmpeg
process (its start-up costs more than encoding one small clip), ``workers`` processes at a time: synthesis is a
stand-in for a download, so encoding speed matters more than file size.

Determinism: a clip's content depends only on the run seed and its real-style name, and it is encoded with
single-threaded x264 and bit-exact muxing without metadata, so the same seed gives byte-identical files whatever
the number of workers or the batching. ``synthetic.json`` is written last and ``synthetic.incomplete`` removed
last: a download without the one or with the other is incomplete.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import dataclasses
import fcntl
import functools
import hashlib
import io
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

import blemore
from blemore import BlemoreError
from blemore_toolkit.data.atomic import write_text_atomically

__all__ = [
    "EMOTION_HUES",
    "EMOTION_FUNDAMENTALS_HZ",
    "EMOTION_PATTERNS",
    "METADATA_COLUMNS",
    "ANSWER_KEY_COLUMNS",
    "ActorStyle",
    "Cancelled",
    "ClipJob",
    "SynthSummary",
    "actor_style_for",
    "render_frames",
    "iter_frames",
    "render_audio",
    "write_clip",
    "write_clips",
    "signal_features",
    "synthesize",
    "answer_key_path",
]

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

DEFAULT_SIZE = (128, 96)
FULL_SIZE = (64, 48)
DEFAULT_DURATIONS = (1.0, 8.0)
FRAME_RATES = (25, 30)
#: 16 kHz: the rate the toolkit decodes to anyway; 48 kHz cost a third of the demo's encoding time in AAC.
DEFAULT_AUDIO_RATE = 16_000
#: Sample rates synth writes: from 8 kHz (below it the highest tone, hap's 3rd harmonic near 3.8 kHz, has no room
#: under the Nyquist frequency, and the sound carries no label) to 96 kHz (AAC's highest).
AUDIO_RATES = (8_000, 96_000)
DEFAULT_WORKERS = 2
#: Clips per ffmpeg process, and the frame area up to which batching pays (above it, one clip per process).
BATCH_SIZE = 24
BATCH_PIXELS = 24 * 128 * 96
PIPE_BUFFER_BYTES = 1 << 20
#: Frames of pixel noise drawn per clip and cycled through.
NOISE_FRAMES = 4


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
# Picture
# ---------------------------------------------------------------------------------------------------------------


def _disc_segment_offset(fraction: float) -> float:
    """Offset d in (-1, 1) such that {w > d} covers ``fraction`` of the unit disc (bisection; it is monotone)."""
    low, high = -1.0, 1.0
    for _ in range(60):
        d = (low + high) / 2
        area = (math.acos(d) - d * math.sqrt(1 - d * d)) / math.pi
        low, high = (d, high) if area > fraction else (low, d)
    return (low + high) / 2


def _pattern(kind: str, x: np.ndarray, y: np.ndarray, centre: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """A travelling brightness pattern as two quadrature components: pattern(t) = p1 cos(wt) + p2 sin(wt).

    Coordinates are in frame heights, so a pattern keeps its coarseness at any resolution (4 periods per height:
    still visible at 32x32).
    """
    k = 2 * math.pi * 4.0
    envelope = 1.0
    if kind == "horizontal":
        phase = k * y
    elif kind == "vertical":
        phase = k * x
    elif kind == "diagonal":
        phase = k * (x + y) / math.sqrt(2)
    elif kind == "rings":
        phase = k * np.hypot(x - centre[0], y - centre[1])
    elif kind == "checks":
        phase, envelope = k * x, np.sin(k * y)
    elif kind == "blobs":
        phase, envelope = 0.5 * k * x, np.cos(0.5 * k * y)
    else:
        raise ValueError(f"unknown pattern {kind!r}")
    return np.sin(phase) * envelope, -np.cos(phase) * envelope


class _Motion:
    """What moves in a picture: the camera shake and the travelling pattern's phase."""

    fps: float
    margin: int
    omega: float
    drift: list[tuple[float, float]]

    def motion(self, index: int) -> tuple[int, int, float, float]:
        """Frame ``index``'s top row and left column in the tables (the shake, in whole pixels) and the cosine and
        sine of the pattern's phase."""
        t = index / self.fps
        dx, dy = (round(self.margin * math.sin(2 * math.pi * f * t + phi)) for f, phi in self.drift)
        return self.margin + dy, self.margin + dx, math.cos(self.omega * t), math.sin(self.omega * t)


class _Picture(_Motion):
    """Everything about a clip's picture that does not change over time, so that each frame is a few adds."""

    def __init__(self, emotions, salience, width, height, fps, seed, intensity, style: ActorStyle) -> None:
        rng = np.random.default_rng(_derive_seed(seed, "picture"))
        self.width, self.height, self.fps = width, height, fps
        self.margin = margin = max(2, round(0.04 * max(width, height)))
        ys, xs = np.mgrid[0 : height + 2 * margin, 0 : width + 2 * margin].astype(np.float32)
        xs, ys = (xs + 0.5 - margin) / height, (ys + 0.5 - margin) / height  # frame-height units
        aspect = width / height
        centre = (aspect * (0.5 + rng.uniform(-0.06, 0.06)), 0.5 + rng.uniform(-0.06, 0.06))
        semi_x = 0.36 * aspect * style.face_scale * rng.uniform(0.95, 1.05)
        semi_y = 0.40 * style.face_scale * rng.uniform(0.95, 1.05)
        u, v = (xs - centre[0]) / semi_x, (ys - centre[1]) / semi_y
        inside = u * u + v * v < 1.0

        # The ellipse maps affinely onto the unit disc, which keeps area ratios: a straight cut at distance d
        # from the centre of the disc gives the first emotion exactly its salience of the face.
        if len(emotions) == 2:
            angle = rng.uniform(0, 2 * math.pi)
            side = u * math.cos(angle) + v * math.sin(angle) > _disc_segment_offset(salience[0] / 100.0)
            regions = [(emotions[0], inside & side), (emotions[1], inside & ~side)]
        else:
            regions = [(emotions[0], inside)]

        background = np.asarray(style.background_rgb, dtype=np.float32)
        self.static = np.where(inside[..., None], 0.0, background).astype(np.float32)
        self.p1 = np.zeros_like(self.static)
        self.p2 = np.zeros_like(self.static)
        level = DEFAULT_BLEND_INTENSITY if intensity is None else float(intensity)
        for emotion, mask in regions:
            if emotion == "neu":
                colour = _hsv_to_rgb(rng.uniform(0, 360), 0.03, rng.uniform(0.55, 0.7) * style.brightness)
                contrast = 0.06
            else:
                saturation = float(np.clip(0.55 + 0.15 * (level - 1), 0.45, 1.0))
                colour = _hsv_to_rgb(EMOTION_HUES[emotion] + style.hue_shift, saturation, 0.8 * style.brightness)
                contrast = 0.12 + 0.06 * level
            p1, p2 = _pattern(EMOTION_PATTERNS[emotion], xs, ys, centre)
            weight = mask[..., None] * colour
            self.static += weight
            self.p1 += weight * (contrast * p1)[..., None]
            self.p2 += weight * (contrast * p2)[..., None]

        self.omega = 2 * math.pi * rng.uniform(0.5, 1.0) * rng.choice([-1, 1])
        self.drift = [(rng.uniform(0.2, 0.6), rng.uniform(0, 2 * math.pi)) for _ in range(2)]
        self.noise_seed, self.noise_std = _derive_seed(seed, "pixel-noise"), 255.0 * style.pixel_noise
        # Work in 0..255 with the rounding offset folded in, and reuse buffers: a 720p frame stays ~10 ms.
        self.static = self.static * 255.0 + 0.5
        self.p1 *= 255.0
        self.p2 *= 255.0
        self._image = np.empty((height, width, 3), dtype=np.float32)
        self._scratch = np.empty_like(self._image)

    @functools.cached_property
    def noise(self) -> np.ndarray:
        """A few frames of pixel noise, cycled (drawn on first use: the encoder draws its own, in YUV)."""
        rng = np.random.default_rng(self.noise_seed)
        return rng.normal(0, self.noise_std, (NOISE_FRAMES, self.height, self.width, 3)).astype(np.float32)

    def frame(self, index: int) -> np.ndarray:
        top, left, cosine, sine = self.motion(index)
        rows, cols = slice(top, top + self.height), slice(left, left + self.width)
        image, scratch = self._image, self._scratch
        np.multiply(self.p1[rows, cols], cosine, out=image)
        image += np.multiply(self.p2[rows, cols], sine, out=scratch)
        image += self.static[rows, cols]
        image += self.noise[index % len(self.noise)]
        np.clip(image, 0.0, 255.0, out=image)
        return image.astype(np.uint8)


#: RGB (0..255) to BT.601 limited-range Y'CbCr: the matrix swscale uses for untagged SD video, and so the one a
#: decoder inverts when it hands these clips back as RGB.
_RGB_TO_YUV = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]) / 255.0
_YUV_OFFSET = (16.0, 128.0, 128.0)


def _to_yuv(rgb: np.ndarray) -> list[np.ndarray]:
    """The Y, U and V planes of ``(..., 3)`` RGB values, without the offsets (a linear map)."""
    return [sum(np.float32(m) * rgb[..., c] for c, m in enumerate(row)) for row in _RGB_TO_YUV]


def _halve(plane: np.ndarray, row: int, col: int) -> np.ndarray:
    """2x2 means over the last two axes, starting at (row, col): 4:2:0 chroma of a picture cut there."""
    height, width = (plane.shape[-2] - row) // 2, (plane.shape[-1] - col) // 2
    cut = plane[..., row : row + 2 * height, col : col + 2 * width]
    # four strided sums: several times faster than a mean over reshaped axes
    total = cut[..., 0::2, 0::2] + cut[..., 1::2, 0::2] + cut[..., 0::2, 1::2] + cut[..., 1::2, 1::2]
    return total * np.float32(0.25)


class _Yuv420Picture(_Motion):
    """The same picture as ``_Picture``, in the planar YUV 4:2:0 that H.264 encodes, for ``write_clips``.

    Converting colours is linear, so it is done once on the tables rather than on every frame: each frame is then
    half the numbers of an RGB one, and ffmpeg has no conversion left to do (which had cost it as much CPU as x264's
    encoding of these small clips). The camera shake moves by whole pixels, so the half-resolution chroma tables
    come in four versions, one per parity of the shift. Departures from converting ``_Picture.frame``, none of which
    touches the label-carrying hues, areas or patterns: the pixel noise is drawn in YUV (as strong, though not the
    same draws), and a colour brighter than white is clipped once decoded rather than per channel before.
    """

    def __init__(self, picture: _Picture) -> None:
        width, height = self.width, self.height = picture.width, picture.height
        self.fps, self.margin, self.omega, self.drift = picture.fps, picture.margin, picture.omega, picture.drift
        static = _to_yuv(picture.static - 0.5)  # the rounding offset is folded in again below, after the offsets
        static = [plane + np.float32(offset + 0.5) for plane, offset in zip(static, _YUV_OFFSET)]
        p1, p2 = _to_yuv(picture.p1), _to_yuv(picture.p2)
        self.luma = (static[0], p1[0], p2[0])
        full_chroma = [np.stack(planes[1:]) for planes in (static, p1, p2)]  # (2, rows, cols): U and V together
        self.chroma = {(row, col): tuple(_halve(table, row, col) for table in full_chroma)
                       for row in (0, 1) for col in (0, 1)}
        # Pixel noise as strong in each plane as the RGB picture's is once converted (and, for U and V, averaged
        # over 2x2 pixels), drawn directly in YUV: a third fewer numbers, and no conversion.
        rng = np.random.default_rng(picture.noise_seed)
        luma_std, u_std, v_std = picture.noise_std * np.linalg.norm(_RGB_TO_YUV, axis=1) * [1.0, 0.5, 0.5]
        self.luma_noise = rng.standard_normal((NOISE_FRAMES, height, width), dtype=np.float32)
        self.luma_noise *= np.float32(luma_std)
        self.chroma_noise = rng.standard_normal((NOISE_FRAMES, 2, height // 2, width // 2), dtype=np.float32)
        self.chroma_noise *= np.array([u_std, v_std], dtype=np.float32)[:, None, None]
        # One buffer in the pipe's layout (Y plane, then U, then V) with views on its planes.
        self._buffer = np.empty(height * width * 3 // 2, dtype=np.float32)
        self._y = self._buffer[: height * width].reshape(height, width)
        self._uv = self._buffer[height * width :].reshape(2, height // 2, width // 2)
        self._y_scratch, self._uv_scratch = np.empty_like(self._y), np.empty_like(self._uv)

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as yuv420p bytes (a flat uint8 array)."""
        height, width = self.height, self.width
        top, left, cosine, sine = self.motion(index)
        noise = index % len(self.luma_noise)
        static, p1, p2 = self.luma
        rows, cols = slice(top, top + height), slice(left, left + width)
        self._combine(self._y, self._y_scratch, static[rows, cols], p1[rows, cols], p2[rows, cols], cosine, sine)
        self._y += self.luma_noise[noise]
        static, p1, p2 = self.chroma[top % 2, left % 2]
        rows, cols = slice(top // 2, top // 2 + height // 2), slice(left // 2, left // 2 + width // 2)
        self._combine(self._uv, self._uv_scratch, static[:, rows, cols], p1[:, rows, cols], p2[:, rows, cols],
                      cosine, sine)
        self._uv += self.chroma_noise[noise]
        np.clip(self._buffer, 0.0, 255.0, out=self._buffer)
        return self._buffer.astype(np.uint8)

    @staticmethod
    def _combine(out, scratch, static, p1, p2, cosine, sine) -> None:
        np.multiply(p1, cosine, out=out)
        out += np.multiply(p2, sine, out=scratch)
        out += static


def iter_frames(
    emotions: Sequence[str],
    salience: Sequence[float],
    *,
    width: int = DEFAULT_SIZE[0],
    height: int = DEFAULT_SIZE[1],
    fps: float = 25,
    duration_s: float = 2.0,
    seed: int = 0,
    intensity: float | None = None,
    actor_style: ActorStyle | None = None,
) -> Iterator[np.ndarray]:
    """The clip's frames one at a time, each ``(height, width, 3)`` uint8 RGB (constant memory at any size)."""
    emotions, salience = _check_label(emotions, salience)
    picture = _Picture(emotions, salience, width, height, fps, seed, intensity, actor_style or ActorStyle())
    for index in range(_frame_count(fps, duration_s)):
        yield picture.frame(index)


def render_frames(
    emotions: Sequence[str],
    salience: Sequence[float],
    *,
    width: int = DEFAULT_SIZE[0],
    height: int = DEFAULT_SIZE[1],
    fps: float = 25,
    duration_s: float = 2.0,
    seed: int = 0,
    intensity: float | None = None,
    actor_style: ActorStyle | None = None,
) -> np.ndarray:
    """All frames of a clip as a ``(num_frames, height, width, 3)`` uint8 array: what ``write_clip`` encodes."""
    frames = iter_frames(
        emotions, salience, width=width, height=height, fps=fps, duration_s=duration_s, seed=seed,
        intensity=intensity, actor_style=actor_style,
    )
    return np.stack(list(frames))


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


def _write_pcm(path: Path, samples: np.ndarray) -> None:
    """Raw 16-bit little-endian samples, which ffmpeg reads as told. A WAV is probed instead, for hidden S/PDIF
    data among others, and that cost about as much CPU as encoding the sound to AAC."""
    (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2").tofile(path)


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


# ---------------------------------------------------------------------------------------------------------------
# Encoding one clip
# ---------------------------------------------------------------------------------------------------------------


def _ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        raise BlemoreError("ffmpeg not found on PATH: blemore synth encodes clips with it (Debian: apt-get install "
                           "ffmpeg)")
    return path


@dataclasses.dataclass(frozen=True)
class ClipJob:
    """One clip for ``write_clips``: the arguments of ``write_clip``."""

    path: Path
    emotions: tuple[str, ...]
    salience: tuple[int, ...]
    width: int = DEFAULT_SIZE[0]
    height: int = DEFAULT_SIZE[1]
    fps: float = 25
    duration_s: float = 2.0
    seed: int = 0
    intensity: float | None = None
    with_audio: bool = True
    actor_style: ActorStyle = ActorStyle()
    audio_rate: int = DEFAULT_AUDIO_RATE

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def num_frames(self) -> int:
        return _frame_count(self.fps, self.duration_s)

    def frames(self) -> Iterator[np.ndarray]:
        return iter_frames(self.emotions, self.salience, width=self.width, height=self.height, fps=self.fps,
                           duration_s=self.num_frames / self.fps, seed=self.seed, intensity=self.intensity,
                           actor_style=self.actor_style)

    def yuv420_frames(self) -> Iterator[np.ndarray]:
        """The frames of ``frames()`` as yuv420p bytes, what ``write_clips`` pipes to ffmpeg."""
        emotions, salience = _check_label(self.emotions, self.salience)
        picture = _Yuv420Picture(_Picture(emotions, salience, self.width, self.height, self.fps, self.seed,
                                          self.intensity, self.actor_style))
        for index in range(self.num_frames):
            yield picture.frame(index)

    def audio(self) -> np.ndarray:
        return render_audio(self.emotions, self.salience, sample_rate=self.audio_rate,
                            duration_s=self.num_frames / self.fps, seed=self.seed, intensity=self.intensity,
                            actor_style=self.actor_style)


def write_clip(
    path: str | os.PathLike,
    emotions: Sequence[str],
    salience: Sequence[float],
    *,
    width: int = DEFAULT_SIZE[0],
    height: int = DEFAULT_SIZE[1],
    fps: float = 25,
    duration_s: float = 2.0,
    seed: int = 0,
    intensity: float | None = None,
    with_audio: bool = True,
    actor_style: ActorStyle | None = None,
    audio_rate: int = DEFAULT_AUDIO_RATE,
) -> None:
    """Write one ``.mov`` (H.264 yuv420p + mono AAC) whose picture and sound carry the label.

    The duration is rounded to whole frames and the sound has exactly the picture's length. ``with_audio=False``
    writes a clip without an audio stream (a broken input for tests). The file appears under its name only when
    complete (written to a hidden ``.part`` file first), and the same arguments give the same bytes.
    """
    emotions, salience = _check_label(emotions, salience)
    write_clips([ClipJob(Path(path), emotions, salience, width, height, fps, duration_s, seed, intensity,
                         with_audio, actor_style or ActorStyle(), audio_rate)])


class Cancelled(Exception):
    """A batch stopped because ``write_clips`` was asked to (another batch failed, or Ctrl-C)."""


# Single-threaded x264 and bit-exact muxing without metadata: same input, same bytes. "ultrafast" encodes these
# clips in about half the CPU time of "veryfast" (files about twice as large); the readout stays at full accuracy.
_VIDEO_CODEC = ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "20", "-pix_fmt", "yuv420p", "-threads", "1",
                "-flags:v", "+bitexact"]
_AUDIO_CODEC = ["-c:a", "aac", "-aac_coder", "fast", "-b:a", "64k", "-ac", "1", "-flags:a", "+bitexact"]
_MUXER = ["-fflags", "+bitexact", "-map_metadata", "-1", "-map_chapters", "-1", "-f", "mov"]


def write_clips(jobs: Sequence[ClipJob], *, cancel: threading.Event | None = None) -> None:
    """Encode several clips with one ``ffmpeg`` process (its start-up costs more than encoding a small clip).

    Each clip's raw yuv420p frames go through a pipe of their own, fed by a thread; the sound goes through a
    temporary raw PCM file. Each output is encoded independently, so a clip's bytes do not depend on the batch it
    was written in.
    Setting ``cancel`` stops the batch within a frame: nothing of it is written and ``Cancelled`` is raised.
    """
    if not jobs:
        return
    for job in jobs:
        _check_label(job.emotions, job.salience)
        if job.width % 2 or job.height % 2 or job.width < 16 or job.height < 16:
            raise ValueError(f"{job.path.name}: width and height must be even and at least 16 (yuv420p), "
                             f"got {job.width}x{job.height}")
    parts = [job.path.with_name(f".{job.path.name}.part") for job in jobs]
    with tempfile.TemporaryDirectory(prefix="blemore-synth-") as tmp, _Descriptors() as descriptors:
        inputs, outputs, pipes = [], [], []
        for i, (job, part) in enumerate(zip(jobs, parts)):
            video_index = len(inputs)
            maps = ["-map", f"{video_index}:v"]
            codecs = _VIDEO_CODEC + ["-g", str(round(job.fps))]
            inputs.append(["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{job.width}x{job.height}",
                           "-framerate", str(job.fps), "-i", None])  # the pipe, below
            if job.with_audio:
                pcm = Path(tmp) / f"{i}.pcm"
                _write_pcm(pcm, job.audio())
                maps += ["-map", f"{len(inputs)}:a"]
                inputs.append(["-f", "s16le", "-ar", str(job.audio_rate), "-ac", "1", "-i", os.fspath(pcm)])
                codecs += _AUDIO_CODEC
            outputs.append(maps + codecs + _MUXER + [os.fspath(part)])
            read_end, write_end = descriptors.pipe()
            pipes.append((read_end, write_end))
            inputs[video_index][-1] = f"pipe:{read_end}"
        command = [_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
        command += [arg for group in inputs + outputs for arg in group]
        log_path = Path(tmp) / "ffmpeg.log"
        with open(log_path, "wb") as log:
            # A session of its own: Ctrl-C in a terminal (SIGINT to the whole process group) reaches this process
            # alone, which stops ffmpeg itself. Were ffmpeg to get it too, it could exit first and its failure
            # beat the KeyboardInterrupt to the main thread: "ffmpeg failed" and exit 1 instead of "interrupted".
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                       pass_fds=[r for r, _ in pipes], start_new_session=True)
            for read_end, _ in pipes:
                descriptors.close(read_end)  # ffmpeg holds them now; our copies would keep the pipes from breaking
            feeders = [_FrameFeeder(job, write_end, descriptors, cancel) for job, (_, write_end) in zip(jobs, pipes)]
            try:
                for feeder in feeders:
                    feeder.join()
                    if feeder.error is not None and not isinstance(feeder.error, BrokenPipeError):
                        process.kill()  # the other pipes would otherwise be encoded for nothing
                returncode = process.wait()
            except BaseException:
                process.kill()
                process.wait()
                for feeder in feeders:
                    feeder.join()
                for part in parts:
                    part.unlink(missing_ok=True)
                raise
        failures = [f.error for f in feeders if f.error is not None and not isinstance(f.error, BrokenPipeError)]
        if returncode != 0 or failures:
            for part in parts:
                part.unlink(missing_ok=True)
            if failures:
                raise failures[0]
            message = log_path.read_text(errors="replace").strip().splitlines()
            names = ", ".join(job.path.name for job in jobs)
            raise BlemoreError(f"ffmpeg failed writing {names}: {message[-1] if message else f'exit {returncode}'}")
    for job, part in zip(jobs, parts):
        os.replace(part, job.path)


class _FrameFeeder(threading.Thread):
    """Renders one clip's frames into its pipe; a thread per clip so that no pipe waits on another."""

    def __init__(self, job: ClipJob, write_end: int, descriptors: _Descriptors, cancel: threading.Event | None):
        super().__init__(daemon=True)
        self.job, self.write_end, self.descriptors, self.cancel = job, write_end, descriptors, cancel
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            with open(self.write_end, "wb", closefd=False) as pipe:
                for frame in self.job.yuv420_frames():
                    if self.cancel is not None and self.cancel.is_set():
                        raise Cancelled(f"{self.job.path.name}: cancelled")
                    pipe.write(frame.data)
        except BaseException as error:  # reported by write_clips, which owns the ffmpeg process
            self.error = error
        finally:
            self.descriptors.close(self.write_end)  # end of input for ffmpeg


class _Descriptors:
    """Pipe ends that are closed by whoever finishes with them first, exactly once (a second ``os.close`` could
    hit a descriptor number already reused by another thread), and all of them on the way out."""

    def __init__(self) -> None:
        self._open: set[int] = set()
        self._lock = threading.Lock()

    def pipe(self) -> tuple[int, int]:
        read_end, write_end = os.pipe()
        if hasattr(fcntl, "F_SETPIPE_SZ"):  # Linux: room for several frames, so feeder and ffmpeg rarely wait
            with contextlib.suppress(OSError):
                fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_BUFFER_BYTES)
        with self._lock:
            self._open.update((read_end, write_end))
        return read_end, write_end

    def close(self, fd: int) -> None:
        with self._lock:
            if fd not in self._open:
                return
            self._open.remove(fd)
        os.close(fd)

    def __enter__(self) -> _Descriptors:
        return self

    def __exit__(self, *exc_info) -> None:
        for fd in list(self._open):
            self.close(fd)


# ---------------------------------------------------------------------------------------------------------------
# The whole download
# ---------------------------------------------------------------------------------------------------------------

METADATA_COLUMNS = (
    "filename", "video_id", "gender", "mix", "emotion_1", "emotion_2", "emotion_1_salience", "emotion_2_salience",
    "version", "intensity_level", "situation", "fold",
)
ANSWER_KEY_COLUMNS = METADATA_COLUMNS + ("source_name",)
MARKER = "synthetic.json"
#: Written first and removed last, so that an interrupted run is recognisable (and may be overwritten).
IN_PROGRESS = "synthetic.incomplete"


@dataclasses.dataclass(frozen=True)
class _ClipTask:
    """One clip to write: its real-style name, where it goes, and everything that shapes its content."""

    name: str
    file_stem: str
    split: str
    fold: int | None
    gender: str
    fps: int
    duration_s: float
    seed: int
    intensity: float | None
    style: ActorStyle

    @property
    def label(self) -> blemore.ClipLabel:
        return blemore.parse_clip_name(self.name)


@dataclasses.dataclass
class SynthSummary:
    """What ``synthesize`` wrote."""

    raw_dir: Path
    answer_key: Path
    train_clips: int
    test_clips: int
    folds: dict[int, list[str]]
    test_actors: list[str]
    seconds: float

    @property
    def train_actors(self) -> list[str]:
        return sorted(a for actors in self.folds.values() for a in actors)


def answer_key_path(raw_dir: str | os.PathLike) -> Path:
    """Where the answer key of a synthetic download goes by default: ``<RAW>_test_answer_key.csv`` beside RAW."""
    raw = Path(os.path.abspath(raw_dir))
    return raw.with_name(f"{raw.name}_test_answer_key.csv")


def _name(actor: str, emotions: Sequence[str], salience: Sequence[int], level: int | None, version: int) -> str:
    if len(emotions) == 2:
        return f"{actor}_mix_{emotions[0]}_{emotions[1]}_{salience[0]}_{salience[1]}_ver{version}"
    if emotions[0] == "neu":
        return f"{actor}_neu_sit{level}_ver{version}"
    return f"{actor}_{emotions[0]}_int{level}_ver{version}"


def _actor_clip_names(actor: str, index: int, rng: np.random.Generator) -> list[str]:
    """One actor's takes: all 30 blends, every emotion once (intensities rotate so that each actor shows all four),
    neutral once, one more single and one more neutral at other levels, and one ``ver2`` retake: 39 clips."""
    names = [_name(actor, pair, levels, None, 1) for pair in blemore.BLEND_PAIRS for levels in blemore.SALIENCE_LEVELS]
    for i, emotion in enumerate(blemore.BLENDABLE_EMOTIONS):
        names.append(_name(actor, (emotion,), (100,), (index + i) % 4 + 1, 1))
    names.append(_name(actor, ("neu",), (100,), index % 4 + 1, 1))
    extra = int(rng.integers(len(blemore.BLENDABLE_EMOTIONS)))
    names.append(_name(actor, (blemore.BLENDABLE_EMOTIONS[extra],), (100,), (index + extra + 2) % 4 + 1, 1))
    names.append(_name(actor, ("neu",), (100,), (index + 2) % 4 + 1, 1))
    retake = names[int(rng.integers(len(names)))]
    names.append(retake[: -len("ver1")] + "ver2")
    return names


def _default_plan(seed: int, actors_per_fold: int, test_actors: int) -> list[tuple[str, str, int | None]]:
    """(clip name, split, fold) for a few made-up actors per fold plus the test actors."""
    rng = np.random.default_rng(_derive_seed(seed, "actors"))
    count = actors_per_fold * blemore.NUM_FOLDS + test_actors
    actors = [f"A{n}" for n in rng.choice(np.arange(10, 10 + max(990, 4 * count)), size=count, replace=False)]
    plan = []
    for index, actor in enumerate(actors):
        train = index < actors_per_fold * blemore.NUM_FOLDS
        split, fold = ("train", index // actors_per_fold) if train else ("test", None)
        names = _actor_clip_names(actor, index, np.random.default_rng(_derive_seed(seed, "takes", actor)))
        plan += [(name, split, fold) for name in names]
    return plan


def _full_plan() -> list[tuple[str, str, int | None]]:
    """(clip name, split, fold) for the 3,050 clips of the shipped manifest."""
    return [(entry.clip_id, entry.split, entry.fold) for entry in blemore.load_manifest().values()]


def _tasks(plan, seed: int, durations: tuple[float, float]) -> list[_ClipTask]:
    test_names = sorted(name for name, split, _ in plan if split == "test")
    order = np.random.default_rng(_derive_seed(seed, "test-order")).permutation(len(test_names))
    digits = max(4, len(str(len(test_names))))
    anonymised = {test_names[i]: f"test_{rank + 1:0{digits}d}" for rank, i in enumerate(order)}
    styles: dict[str, ActorStyle] = {}
    genders: dict[str, str] = {}
    tasks = []
    for name, split, fold in plan:
        label = blemore.parse_clip_name(name)
        actor = label.actor_id
        if actor not in styles:
            styles[actor] = actor_style_for(actor, seed)
            genders[actor] = "FM"[_derive_seed(seed, "gender", actor) % 2]
        clip_seed = _derive_seed(seed, "clip", name)
        rng = np.random.default_rng(clip_seed)
        fps = int(rng.choice(FRAME_RATES))
        # log-uniform: mostly short takes, a few long ones (mean 3.4 s for 1-8 s)
        duration = _frame_count(fps, math.exp(rng.uniform(*np.log(durations)))) / fps
        intensity = label.intensity
        if label.is_blend:
            intensity = round(float(rng.uniform(1.5, 3.5)), 3)
        stem = anonymised.get(name, name) if split == "test" else name
        tasks.append(_ClipTask(name, stem, split, fold, genders[actor], fps, duration, clip_seed, intensity,
                               styles[actor]))
    return tasks


def _write_batch(
    tasks: Sequence[_ClipTask], raw_dir: Path, width: int, height: int, audio_rate: int, cancel: threading.Event
) -> int:
    jobs = []
    for task in tasks:
        label = task.label
        jobs.append(ClipJob(raw_dir / task.split / f"{task.file_stem}.mov", label.emotions, label.salience, width,
                            height, task.fps, task.duration_s, task.seed, task.intensity, True, task.style,
                            audio_rate))
    write_clips(jobs, cancel=cancel)
    return len(jobs)


def _batches(tasks: Sequence[_ClipTask], width: int, height: int) -> list[list[_ClipTask]]:
    """Groups of clips for one ffmpeg process each: several small clips, or a single large one."""
    size = max(1, min(BATCH_SIZE, (BATCH_PIXELS // (width * height))))
    return [list(tasks[i : i + size]) for i in range(0, len(tasks), size)]


def _metadata_row(task: _ClipTask, filename: str, fold: int | None) -> dict:
    label = task.label
    blend = label.is_blend
    return {
        "filename": filename,
        "video_id": label.actor_id,
        "gender": task.gender,
        "mix": int(blend),
        "emotion_1": label.emotions[0],
        "emotion_2": label.emotions[1] if blend else "",
        "emotion_1_salience": label.salience[0] if blend else "",
        "emotion_2_salience": label.salience[1] if blend else "",
        "version": label.version,
        "intensity_level": label.intensity if label.intensity is not None else "",
        "situation": label.situation if label.situation is not None else "",
        "fold": fold if fold is not None else "",
    }


def _write_csv(path: Path, columns: Sequence[str], rows: list[dict]) -> None:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda row: row["filename"]))
    write_text_atomically(path, text.getvalue())


def _write_json(path: Path, data: dict) -> None:
    write_text_atomically(path, json.dumps(data, indent=2) + "\n")


def _submission_template(test_stems: Sequence[str], seed: int) -> dict:
    """Placeholder predictions for every test clip, like the organisers' template (random, not the truth)."""
    rng = np.random.default_rng(_derive_seed(seed, "template"))
    picks = rng.integers(len(blemore.OUTCOMES), size=len(test_stems))
    return {"predictions": {f"{stem}.mov": blemore.OUTCOMES[int(k)].as_prediction()
                            for stem, k in zip(sorted(test_stems), picks)}}


#: What synth writes in RAW (besides the clips in train/ and test/): anything else there is someone else's.
_SYNTH_ENTRIES = {"train", "test", "train_metadata.csv", "submission_template.json", MARKER, IN_PROGRESS}
_IN_PROGRESS_TEXT = "blemore synth is writing this folder; it is not complete\n"
#: The files synth writes in train/ and test/: clips, and the hidden part of one being encoded.
_SYNTH_CLIP = re.compile(r"[A-Za-z0-9_]+\.mov|\.[A-Za-z0-9_]+\.mov\.part")


def _written_by_synth(raw_dir: Path) -> str | None:
    """``None`` when ``raw_dir`` is a (complete or interrupted) synthetic download holding only what synth writes;
    otherwise why it is not one."""
    marker, in_progress = raw_dir / MARKER, raw_dir / IN_PROGRESS
    ours = False
    if marker.is_file() and not marker.is_symlink():
        try:
            ours = json.loads(marker.read_text(encoding="utf-8")).get("generator") == "blemore synth"
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            ours = False
    if not ours and in_progress.is_file() and not in_progress.is_symlink():
        with contextlib.suppress(OSError, UnicodeDecodeError):
            ours = in_progress.read_text(encoding="utf-8") == _IN_PROGRESS_TEXT
    if not ours:
        return f"it has no {MARKER} written by blemore synth"
    for entry in sorted(raw_dir.iterdir()):
        if entry.name not in _SYNTH_ENTRIES:
            return f"it holds {entry.name}, which synth did not write"
        if entry.is_symlink() or (entry.name in ("train", "test")) != entry.is_dir():
            return f"its {entry.name} is not what synth writes (a link, or a folder where a file belongs)"
    for split in ("train", "test"):
        for entry in sorted((raw_dir / split).iterdir()) if (raw_dir / split).is_dir() else []:
            if entry.is_symlink() or not entry.is_file() or not _SYNTH_CLIP.fullmatch(entry.name):
                return f"it holds {split}/{entry.name}, which synth did not write"
    return None


def _prepare_output_dir(raw_dir: Path, overwrite: bool) -> None:
    if raw_dir.exists() and not raw_dir.is_dir():
        raise BlemoreError(f"{raw_dir} exists and is not a folder")
    if raw_dir.is_dir() and any(raw_dir.iterdir()):
        if not overwrite:
            raise BlemoreError(f"{raw_dir} is not empty; pass --overwrite (overwrite=True) to replace a previous "
                               "synthetic download")
        if raw_dir.is_symlink():
            raise BlemoreError(f"{raw_dir}: is a symlink; --overwrite replaces only a folder blemore synth wrote, "
                               "named as itself (give the folder the link points to, or another name)")
        why = _written_by_synth(raw_dir)
        if why:
            raise BlemoreError(f"{raw_dir} is not empty and was not written by blemore synth ({why}); refusing to "
                               "overwrite it")
        (raw_dir / MARKER).unlink(missing_ok=True)  # from here on it no longer looks complete
        shutil.rmtree(raw_dir)
    try:
        raw_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BlemoreError(f"{error.filename or raw_dir}: cannot write here ({error.strerror})") from None


def _check_answer_key_path(key_path: Path) -> None:
    """A file at the answer key's path is replaced only when it is an answer key synth wrote (its header)."""
    if key_path.is_symlink() or (key_path.exists() and not key_path.is_file()):
        raise BlemoreError(f"{key_path}: is a link or a folder, not an answer key of blemore synth; give "
                           "--answer-key another path")
    if key_path.is_file():
        with open(key_path, "rb") as f:
            header = f.readline().decode("utf-8", errors="replace").strip()
        if header != ",".join(ANSWER_KEY_COLUMNS):
            raise BlemoreError(f"{key_path}: exists and is not an answer key of blemore synth; give --answer-key "
                               "another path (or move that file)")


def synthesize(
    out_dir: str | os.PathLike,
    *,
    actors_per_fold: int = 2,
    test_actors: int = 2,
    seed: int = 0,
    width: int | None = None,
    height: int | None = None,
    full: bool = False,
    answer_key: str | os.PathLike | None = None,
    num_workers: int | None = None,
    durations: tuple[float, float] = DEFAULT_DURATIONS,
    audio_rate: int = DEFAULT_AUDIO_RATE,
    overwrite: bool = False,
    progress: bool = True,
) -> SynthSummary:
    """Write a synthetic BLEMORE download to ``out_dir`` and its test answer key beside it.

    Default: ``actors_per_fold`` made-up actors in each of the five folds and ``test_actors`` test actors, 39
    clips each (all 36 outcomes), at 128x96. ``full=True``: the 3,050 names, splits and folds of the shipped
    manifest at 64x48 (``actors_per_fold``/``test_actors`` are ignored). Test clips are anonymised
    (``test_0001`` ...) in a seeded order; the answer key (``answer_key``, default ``<out_dir>_test_answer_key.csv``)
    maps them back with the organisers' columns plus ``source_name``. ``durations`` bounds the per-clip duration
    in seconds (drawn log-uniformly, seeded); ``num_workers`` ffmpeg processes (default 2) encode at a time
    without changing any byte. ``synthetic.json`` is written last; a folder without it is incomplete.
    ``overwrite=True`` replaces a previous (or interrupted) synthetic download, never any other non-empty folder.
    """
    started = time.perf_counter()
    raw_dir = Path(out_dir)
    if not full and (actors_per_fold < 1 or test_actors < 0):
        raise BlemoreError(f"need at least one actor per fold and no negative test actors, got actors_per_fold="
                           f"{actors_per_fold}, test_actors={test_actors}")
    default_width, default_height = FULL_SIZE if full else DEFAULT_SIZE
    width, height = width or default_width, height or default_height
    if width % 2 or height % 2 or width < 16 or height < 16:
        raise BlemoreError(f"clip size {width}x{height}: width and height must be even and at least 16")
    low, high = (float(d) for d in durations)
    if not 0 < low <= high:
        raise BlemoreError(f"durations {low}..{high} s: need 0 < min <= max")
    if not AUDIO_RATES[0] <= audio_rate <= AUDIO_RATES[1]:
        raise BlemoreError(f"--audio-rate {audio_rate}: give a sample rate from {AUDIO_RATES[0]} to {AUDIO_RATES[1]} "
                           "Hz (below 8000 the emotions' tones do not fit, and prepare would find the clips silent)")
    workers = DEFAULT_WORKERS if num_workers is None else int(num_workers)
    if workers < 1:
        raise BlemoreError(f"--workers must be at least 1, got {workers}")
    _ffmpeg()
    key_path = Path(answer_key) if answer_key is not None else answer_key_path(raw_dir)
    if key_path.resolve().is_relative_to(raw_dir.resolve()):
        raise BlemoreError(f"answer key {key_path} would be inside the download {raw_dir}: put it outside, as the "
                           "organisers keep theirs")

    plan = _full_plan() if full else _default_plan(seed, actors_per_fold, test_actors)
    tasks = _tasks(plan, seed, (low, high))
    _check_answer_key_path(key_path)
    _prepare_output_dir(raw_dir, overwrite)
    write_text_atomically(raw_dir / IN_PROGRESS, _IN_PROGRESS_TEXT)
    for split in blemore.SPLITS:
        (raw_dir / split).mkdir(exist_ok=True)

    _run_tasks(tasks, raw_dir, width, height, audio_rate, workers, progress)

    train = [t for t in tasks if t.split == "train"]
    test = [t for t in tasks if t.split == "test"]
    _write_csv(raw_dir / "train_metadata.csv", METADATA_COLUMNS, [_metadata_row(t, t.name, t.fold) for t in train])
    key_path.parent.mkdir(parents=True, exist_ok=True)
    _write_csv(key_path, ANSWER_KEY_COLUMNS,
               [{**_metadata_row(t, t.file_stem, None), "source_name": t.name} for t in test])
    _write_json(raw_dir / "submission_template.json", _submission_template([t.file_stem for t in test], seed))

    folds: dict[int, list[str]] = {k: [] for k in range(blemore.NUM_FOLDS)}
    for t in train:
        actor = t.label.actor_id
        if actor not in folds[t.fold]:
            folds[t.fold].append(actor)
    folds = {k: sorted(v) for k, v in folds.items()}
    test_actor_ids = sorted({t.label.actor_id for t in test})
    _write_json(raw_dir / MARKER, {
        "generator": "blemore synth",
        "format": 1,
        "seed": seed,
        "full": full,
        "options": {"width": width, "height": height, "durations_s": [low, high], "audio_rate": audio_rate,
                    **({} if full else {"actors_per_fold": actors_per_fold, "test_actors": test_actors})},
        "train_clips": len(train),
        "test_clips": len(test),
        "folds": {str(k): v for k, v in folds.items()},
        "test_actors": test_actor_ids,
        "answer_key": key_path.name,
        "signal": {"hues_deg": EMOTION_HUES, "fundamentals_hz": EMOTION_FUNDAMENTALS_HZ,
                   "patterns": EMOTION_PATTERNS, "neutral_hum_hz": NEUTRAL_HUM_HZ},
    })
    (raw_dir / IN_PROGRESS).unlink()
    return SynthSummary(raw_dir, key_path, len(train), len(test), folds, test_actor_ids,
                        time.perf_counter() - started)


def _run_tasks(tasks, raw_dir: Path, width: int, height: int, audio_rate: int, workers: int, progress: bool) -> None:
    """Write the clips, ``workers`` ffmpeg batches at a time.

    Threads, not processes: the encoding happens in the ffmpeg processes and numpy releases the GIL on large
    arrays, so threads keep the cores as busy as a process pool would, without pickling, without a re-imported
    ``__main__`` (which breaks ``python -`` and some notebooks) and with a prompt stop on Ctrl-C or an error.
    """
    from tqdm.auto import tqdm

    batches = iter(_batches(tasks, width, height))
    cancel = threading.Event()
    bar = tqdm(total=len(tasks), desc="blemore synth", unit="clip", disable=not progress, file=sys.stderr)
    with bar, concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="synth") as pool:
        # One batch per worker in flight, no backlog: on Ctrl-C or an error nothing queued keeps running.
        running = {pool.submit(_write_batch, batch, raw_dir, width, height, audio_rate, cancel)
                   for batch in itertools.islice(batches, workers)}
        try:
            while running:
                done, running = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    bar.update(future.result())
                    running |= {pool.submit(_write_batch, batch, raw_dir, width, height, audio_rate, cancel)
                                for batch in itertools.islice(batches, 1)}
        except BaseException:
            cancel.set()  # the other batches stop within a frame and remove their partial files
            concurrent.futures.wait(running)
            raise


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------
