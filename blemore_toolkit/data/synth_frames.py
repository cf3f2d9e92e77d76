"""The pictures of ``blemore synth``'s clips, rendered from the signal that ``synth_signal.py`` describes.

A face-like ellipse in each emotion's hue and moving pattern (a blend's ellipse cut in the shares of its saliences)
over the actor's background, with camera shake and pixel noise: as RGB frames (``iter_frames``, ``render_frames``)
or, for ``synth_encoding.write_clips``, as the planar YUV 4:2:0 that H.264 encodes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence

import numpy as np

from blemore_toolkit.data.synth_signal import (
    DEFAULT_BLEND_INTENSITY,
    EMOTION_HUES,
    EMOTION_PATTERNS,
    ActorStyle,
    _check_label,
    _derive_seed,
    _frame_count,
    _hsv_to_rgb,
)

DEFAULT_SIZE = (128, 96)
#: Frames of pixel noise drawn per clip and cycled through.
NOISE_FRAMES = 4


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


__all__ = ["DEFAULT_SIZE", "iter_frames", "render_frames"]
