"""The audio prepare stores is FLAC that FFmpeg decodes (torchcodec: what ``datasets`` and the processors use).

libFLAC writes valid streams that FFmpeg's FLAC parser refuses now and then (about one in 3,000 clips with a silent
tail): the last frame's closing bytes, its CRC-16 and the parser's zero padding read as one more frame header. The
fixture is such a sound: a tone, noise and a tail of digital silence whose libsndfile FLAC (default level) FFmpeg
refuses with "invalid residual". Found by trying seeds; each test first checks that it still is one.
"""

import io
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
from torchcodec.decoders import AudioDecoder

import blemore
from blemore_toolkit.data.prepare import prepare_dataset

RATE = blemore.AUDIO_SAMPLING_RATE
CLIP = "A102_sad_int2_ver1"
REFUSED_SEED = 1599  # refused by FFmpeg 5.1 with soundfile 0.14's libsndfile 1.2.2 / libFLAC 1.4.3


def signal(seed: int) -> np.ndarray:
    """Half a second of 16-bit sound (as the decoder gives it: int16 / 32768) ending in digital silence."""
    rng = np.random.default_rng(seed)
    n = RATE // 2
    t = np.arange(n) / RATE
    k = (3000 * np.sin(2 * np.pi * 440 * t) + rng.normal(0, 300, n)).astype(np.int16)
    k[n - int(rng.integers(300, 1200)):] = 0
    return k.astype(np.float32) / 32768


def default_flac(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, RATE, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def ffmpeg_refuses(flac: bytes) -> bool:
    try:
        AudioDecoder(flac).get_all_samples()
    except RuntimeError:
        return True
    return False


@pytest.fixture(scope="module")
def refused_sound() -> np.ndarray:
    samples = signal(REFUSED_SEED)
    # Precondition: the plain encoding of this sound is one FFmpeg refuses, else the tests below prove nothing (another
    # libFLAC may frame it otherwise: then try seeds until ffmpeg_refuses(default_flac(signal(seed))) again).
    assert ffmpeg_refuses(default_flac(samples)), "the fixture's FLAC decodes: choose another REFUSED_SEED"
    return samples


@pytest.fixture(scope="module")
def download(tmp_path_factory, refused_sound) -> Path:
    """One clip whose 16 kHz PCM sound is the refused sound (decoded exactly, no resampling)."""
    root = tmp_path_factory.mktemp("flac") / "raw"
    root.mkdir()
    wav = root.parent / "sound.wav"
    soundfile.write(wav, refused_sound, RATE, subtype="PCM_16")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "color=c=red:s=32x24:r=10:d=0.5",
                    "-i", str(wav), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "pcm_s16le",
                    str(root / f"{CLIP}.mov")], check=True)
    return root


def test_encode_flac_stores_what_ffmpeg_decodes_back(refused_sound):
    flac = blemore.encode_flac(refused_sound, CLIP)
    decoded = AudioDecoder(flac).get_all_samples()
    assert decoded.sample_rate == RATE
    np.testing.assert_array_equal(decoded.data[0].numpy(), refused_sound)  # lossless: the same 16-bit samples
    # a sound FFmpeg takes at the default level keeps its default encoding (the bytes prepare wrote before)
    plain = signal(0)
    assert not ffmpeg_refuses(default_flac(plain))
    assert blemore.encode_flac(plain, CLIP) == default_flac(plain)


def test_prepared_audio_decodes_with_datasets(download, refused_sound, tmp_path):
    import datasets

    clip = blemore.scan_download(download).clips[0]
    media = blemore.read_clip_media(clip)
    assert ffmpeg_refuses(default_flac(AudioDecoder(str(clip.path)).get_all_samples().data[0].numpy()))
    assert not ffmpeg_refuses(media["audio"]["bytes"])

    out = tmp_path / "prepared"
    prepare_dataset(download, out, num_workers=1, progress=False)
    (row,) = datasets.load_dataset(str(out), split="train")
    assert row["clip_id"] == CLIP
    decoded = row["audio"].get_all_samples()  # what failed: "Could not push packet to decoder: Invalid data ..."
    np.testing.assert_array_equal(decoded.data[0].numpy(), refused_sound)


def test_audio_no_level_makes_decodable_is_one_line_naming_the_clip(download, tmp_path, monkeypatch):
    monkeypatch.setattr(blemore, "FLAC_LEVELS", (None,))  # only the encoding FFmpeg refuses
    out = tmp_path / "prepared"
    with pytest.raises(blemore.BlemoreError) as caught:
        prepare_dataset(download, out, num_workers=1, progress=False)
    message = str(caught.value)
    assert message.startswith(f"{CLIP}: its audio, stored as 16 kHz FLAC, does not decode (FFmpeg refuses it: ")
    assert "\n" not in message
    assert not out.exists()
