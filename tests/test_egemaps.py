"""``blemore features --encoder egemaps``: openSMILE's eGeMAPSv02 on the synthetic clips' sound, then ``heads``.

The synthetic sound codes each emotion as a harmonic tone at its own pitch, two tones mixed by salience for a blend
(``data/synth_audio.py``). eGeMAPS is real signal processing (no random encoder), so a head on its functionals must
learn the labels of actors it never saw: the five-fold CV here holds out one actor per fold.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

pytest.importorskip("opensmile", reason="eGeMAPS needs the audio-features extra")

import blemore  # noqa: E402
from blemore_toolkit.features.egemaps import DESCRIPTOR_HOP_S, windowed_mean  # noqa: E402
from blemore_toolkit.features.extraction import extract_features  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Five train actors (one a fold) and one test actor, short clips (eGeMAPS costs ~0.2 s per second of sound)."""
    from blemore_toolkit.data.prepare import prepare_dataset
    from blemore_toolkit.data.synth import synthesize

    root = tmp_path_factory.mktemp("egemaps")
    synthesize(root / "raw", actors_per_fold=1, test_actors=1, seed=0, width=32, height=24, durations=(0.6, 1.0),
               progress=False)
    prepare_dataset(root / "raw", root / "blemore", clips_per_shard=64, progress=False)
    return root / "blemore"


@pytest.fixture(scope="module")
def extracted(dataset):
    return extract_features(dataset, "egemaps", progress=False)


def test_egemaps_config_holds_functionals_and_windowed_descriptors(dataset, extracted, tmp_path):
    import datasets
    import opensmile
    from torchcodec.decoders import AudioDecoder

    assert extracted.config == "egemaps" and extracted.features_size == 88 and extracted.hidden_size == 25
    loaded = datasets.load_dataset(str(dataset), "egemaps", cache_dir=str(tmp_path / "cache"))
    row = loaded["train"][3]
    assert len(row["features"]) == 88 and np.asarray(row["sequence"]).shape == (row["num_windows"], 25)
    assert len(loaded["test"]) == 39 and loaded["test"][0]["outcome"] is None

    # The stored numbers are openSMILE's on the prepared 16 kHz track, computed here by hand.
    clips = datasets.load_dataset(str(dataset), "default", cache_dir=str(tmp_path / "cache"))["train"]
    clips = clips.cast_column("audio", datasets.Audio(decode=False))
    audio = next(r["audio"]["bytes"] for r in clips if r["clip_id"] == row["clip_id"])
    track = AudioDecoder(audio, sample_rate=blemore.AUDIO_SAMPLING_RATE, num_channels=1).get_all_samples().data[0]
    functionals = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                  feature_level=opensmile.FeatureLevel.Functionals)
    descriptors = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                  feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
    expected = functionals.process_signal(track.numpy(), blemore.AUDIO_SAMPLING_RATE).to_numpy()[0]
    np.testing.assert_allclose(row["features"], np.nan_to_num(expected), rtol=1e-5, atol=1e-5)
    frames = descriptors.process_signal(track.numpy(), blemore.AUDIO_SAMPLING_RATE).to_numpy()
    windows = windowed_mean(np.nan_to_num(frames), round(0.5 / DESCRIPTOR_HOP_S))
    np.testing.assert_allclose(row["sequence"], windows, rtol=1e-5, atol=1e-5)
    assert len(windows) == int(np.ceil(len(frames) / 50))

    provenance = json.loads((dataset / "features" / "egemaps" / "provenance.json").read_text())
    assert provenance["feature_names"][0] == "F0semitoneFrom27.5Hz_sma3nz_amean"
    assert provenance["opensmile_version"] == opensmile.__version__ and provenance["kind"] == "audio"
    assert provenance["features_size"] == 88 and len(provenance["sequence_names"]) == 25


def test_heads_on_egemaps_learn_the_sound_of_held_out_actors(extracted, dataset):
    from blemore_toolkit.features.cross_validation import cross_validate, format_table
    from blemore_toolkit.features.feature_table import load_feature_table
    from blemore_toolkit.features.head_training import HeadSettings

    table = load_feature_table(dataset, ["egemaps"])
    settings = HeadSettings(head="mlp256", epochs=80, batch_size=256, lr=1e-2, weight_decay=1e-4, dropout=0.0,
                            precision="float32")
    cv = cross_validate(table, settings)
    summary = cv.summary()
    print(format_table(cv))
    assert summary["acc_presence"]["mean"] >= 0.8, format_table(cv)
    assert cv.pooled["acc_presence"] >= 0.8, format_table(cv)


def test_a_missing_opensmile_is_one_line(dataset, monkeypatch):
    monkeypatch.setitem(sys.modules, "opensmile", None)
    with pytest.raises(blemore.BlemoreError, match=r"pip install 'blemore\[audio-features\]'"):
        extract_features(dataset, "egemaps", config_name="egemaps-again", progress=False)
