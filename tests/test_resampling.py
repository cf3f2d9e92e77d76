"""Audio recorded at 48 kHz (the real release's rate) reaches the models at 16 kHz, at its own length: in the
prepared dataset and through the processor's ``load_audio``. The other fixtures are written at 16 kHz already, so
without this a dropped resampling step would go unnoticed."""

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile
from torchcodec.decoders import AudioDecoder, VideoDecoder

import blemore
from blemore_toolkit.data.prepare import prepare_dataset
from blemore_toolkit.data.synth_encoding import write_clip

RELEASE_RATE, MODEL_RATE = 48_000, 16_000
NAMES = ("A102_mix_ang_hap_70_30_ver1", "A102_sad_int2_ver1")


@pytest.fixture(scope="module")
def download_48k(tmp_path_factory) -> Path:
    """Two clips whose sound is stored at 48 kHz, with real names (folds from the shipped manifest)."""
    root = tmp_path_factory.mktemp("rate48k") / "raw"
    (root / "clips").mkdir(parents=True)
    for i, name in enumerate(NAMES):
        label = blemore.parse_clip_name(name)
        write_clip(root / "clips" / f"{name}.mov", label.emotions, label.salience, width=48, height=32,
                   duration_s=1.2, seed=i, audio_rate=RELEASE_RATE)
    return root


def native_track(path: Path) -> tuple[np.ndarray, int, float]:
    """The stored sound as decoded, with its rate, and the video's duration."""
    samples = AudioDecoder(str(path)).get_all_samples()
    return samples.data[0].numpy(), samples.sample_rate, float(VideoDecoder(str(path)).metadata.duration_seconds)


def assert_is_the_track_at_16k(waveform: np.ndarray, path: Path):
    native, rate, duration = native_track(path)
    assert rate == RELEASE_RATE  # the fixture does hold 48 kHz sound
    assert abs(len(waveform) - duration * MODEL_RATE) < 0.05 * MODEL_RATE, (len(waveform), duration)
    # The same sound: every third 48 kHz sample (the synthetic tones lie far below 8 kHz) follows the waveform.
    decimated = native[::3][: len(waveform)]
    n = min(len(decimated), len(waveform))
    assert np.corrcoef(decimated[:n], waveform[:n])[0, 1] > 0.9


def test_prepare_stores_16k_audio_of_the_clips_length(download_48k, tmp_path):
    import datasets

    out = tmp_path / "prepared"
    prepare_dataset(download_48k, out, progress=False)
    train = datasets.load_dataset(str(out), split="train")
    assert train.features["audio"].sampling_rate == MODEL_RATE
    stored = train.cast_column("audio", datasets.Audio(decode=False))
    for row, raw in zip(train, stored):
        path = download_48k / "clips" / f"{row['clip_id']}.mov"
        flac, rate = soundfile.read(io.BytesIO(raw["audio"]["bytes"]), dtype="float32")
        assert rate == MODEL_RATE  # the file itself is 16 kHz, not a 48 kHz file read as 16 kHz
        assert_is_the_track_at_16k(flac, path)
        decoded = row["audio"].get_all_samples()
        assert decoded.sample_rate == MODEL_RATE and decoded.data.shape[-1] == len(flac)


def test_load_audio_resamples_a_48k_file_to_16k(download_48k):
    from transformers import Wav2Vec2FeatureExtractor

    from blemore_toolkit.modeling import BlemoreProcessor

    processor = BlemoreProcessor(feature_extractor=Wav2Vec2FeatureExtractor(sampling_rate=MODEL_RATE))
    for name in NAMES:
        path = download_48k / "clips" / f"{name}.mov"
        for source in (str(path), path.read_bytes(), {"path": str(path), "bytes": None}):
            assert_is_the_track_at_16k(processor.load_audio(source), path)
