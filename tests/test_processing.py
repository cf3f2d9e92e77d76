"""BlemoreProcessor on real decoded clips written by the synthetic-data generator (H.264 + AAC .mov)."""

import numpy as np
import pytest
import torch
from torchcodec.decoders import AudioDecoder, VideoDecoder
from transformers import VideoMAEImageProcessorPil, Wav2Vec2FeatureExtractor

from blemore_toolkit.data.synth_encoding import write_clip
from blemore_toolkit.modeling import (
    BlemoreConfig,
    BlemoreForBlendedEmotionRecognition,
    BlemoreProcessor,
    frame_indices,
)

NUM_FRAMES, SIZE, RATE = 8, 32, 16_000


def make_processor(video=True, audio=True, **settings) -> BlemoreProcessor:
    return BlemoreProcessor(
        VideoMAEImageProcessorPil(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE})
        if video
        else None,
        Wav2Vec2FeatureExtractor(sampling_rate=RATE) if audio else None,
        num_frames=settings.pop("num_frames", NUM_FRAMES),
        **settings,
    )


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two labelled clips of different lengths and one without sound, as `blemore synth` writes them."""
    folder = tmp_path_factory.mktemp("clips")
    paths = {
        "blend": folder / "A1_mix_ang_hap_70_30_ver1.mov",
        "single": folder / "A2_sad_int2_ver1.mov",
        "silent": folder / "A3_fea_int1_ver1.mov",
    }
    write_clip(paths["blend"], ["ang", "hap"], [70, 30], duration_s=2.0, seed=1)
    write_clip(paths["single"], ["sad"], [100], duration_s=1.0, seed=2)
    write_clip(paths["silent"], ["fea"], [100], duration_s=1.0, seed=3, with_audio=False)
    return paths


def test_frame_indices_are_segment_centres():
    np.testing.assert_array_equal(frame_indices(50, 5), [5, 15, 25, 35, 45])
    np.testing.assert_array_equal(frame_indices(16, 16), np.arange(16))
    short = frame_indices(3, 8)  # fewer frames than asked: frames repeat, in order, all in range
    assert len(short) == 8 and short.min() == 0 and short.max() == 2 and (np.diff(short) >= 0).all()
    with pytest.raises(ValueError):
        frame_indices(0, 4)


def test_sample_frames_from_every_kind_of_video(clips):
    processor = make_processor()
    decoder = VideoDecoder(str(clips["blend"]))
    expected = decoder.get_frames_at(indices=frame_indices(len(decoder), NUM_FRAMES).tolist()).data
    assert expected.shape == (NUM_FRAMES, 3, 96, 128) and expected.dtype == torch.uint8
    torch.testing.assert_close(processor.sample_frames(decoder), expected)
    for source in (str(clips["blend"]), clips["blend"].read_bytes(), {"path": str(clips["blend"]), "bytes": None}):
        torch.testing.assert_close(processor.sample_frames(source), expected)
    all_frames = decoder.get_frames_at(indices=list(range(len(decoder)))).data
    torch.testing.assert_close(processor.sample_frames(all_frames), expected)  # (T, C, H, W)
    torch.testing.assert_close(processor.sample_frames(all_frames.permute(0, 2, 3, 1).numpy()), expected)  # T H W C


def test_processor_on_decoded_clips(clips):
    processor = make_processor()
    paths = [str(clips["blend"]), str(clips["single"])]
    batch = processor(videos=paths, audio=paths)
    assert batch["pixel_values_videos"].shape == (2, NUM_FRAMES, 3, SIZE, SIZE)
    assert batch["pixel_values_videos"].dtype == torch.float32
    lengths = [AudioDecoder(p, sample_rate=RATE, num_channels=1).get_all_samples().data.shape[-1] for p in paths]
    assert abs(lengths[0] - 2 * RATE) < 0.05 * RATE and abs(lengths[1] - RATE) < 0.05 * RATE  # AAC adds a little
    assert batch["input_values"].shape == (2, max(lengths))
    assert batch["attention_mask"].sum(-1).tolist() == lengths
    assert batch["input_values"][1, lengths[1] :].abs().max() == 0  # padding is silence
    # frames are the video processor's output for the evenly sampled frames
    direct = processor.video_processor([processor.sample_frames(p) for p in paths], return_tensors="pt")
    torch.testing.assert_close(batch["pixel_values_videos"], direct["pixel_values"])


def test_processor_reads_dataset_rows_like_files(clips):
    import datasets

    paths = [str(clips["blend"]), str(clips["single"])]
    rows = (
        datasets.Dataset.from_dict({"video": paths, "audio": paths})
        .cast_column("video", datasets.Video())
        .cast_column("audio", datasets.Audio(sampling_rate=RATE))
    )[:2]
    processor = make_processor()
    from_rows = processor(videos=rows["video"], audio=rows["audio"])
    from_files = processor(videos=paths, audio=paths)
    for key in ("pixel_values_videos", "input_values", "attention_mask"):
        torch.testing.assert_close(from_rows[key], from_files[key])


def test_audio_inputs_lengths_and_errors(clips):
    processor = make_processor(video=False, max_audio_seconds=0.5)
    waveforms = [np.ones(RATE, dtype=np.float32), np.ones(RATE // 4, dtype=np.float32)]
    batch = processor(audio=waveforms)
    assert batch["input_values"].shape == (2, RATE // 2)  # cut to max_audio_seconds, padded to the longest
    assert batch["attention_mask"].sum(-1).tolist() == [RATE // 2, RATE // 4]
    one = processor(audio={"array": np.zeros(800), "sampling_rate": RATE})  # a single clip is a batch of one
    assert one["input_values"].shape == (1, 800)
    with pytest.raises(ValueError, match="44100 Hz"):
        processor(audio={"array": np.zeros(800), "sampling_rate": 44_100})
    with pytest.raises(ValueError, match="A3_fea_int1_ver1.mov: cannot decode audio"):
        processor(audio=[str(clips["silent"])])
    with pytest.raises(ValueError, match="no video processor"):
        processor(videos=[str(clips["blend"])])
    with pytest.raises(ValueError, match="needs a video_processor"):
        BlemoreProcessor()


def test_load_audio_gives_the_decoders_samples_and_averages_channels(clips):
    """A file gives exactly what torchcodec decodes at the encoder's rate (no extra resampling or averaging); only
    a waveform with several channels is averaged to mono."""
    processor = make_processor(video=False)
    decoded = AudioDecoder(str(clips["blend"]), sample_rate=RATE, num_channels=1).get_all_samples().data[0].numpy()
    waveform = processor.load_audio(str(clips["blend"]))
    assert waveform.dtype == np.float32 and np.array_equal(waveform, decoded)
    stereo = np.stack([np.ones(100, dtype=np.float32), np.zeros(100, dtype=np.float32)])
    assert np.array_equal(processor.load_audio(stereo), np.full(100, 0.5, dtype=np.float32))


def test_save_and_load(tmp_path, clips):
    for video, audio in ((True, True), (True, False), (False, True)):
        processor = make_processor(video, audio, max_audio_seconds=1.5 if audio else None)
        folder = tmp_path / f"video{video}-audio{audio}"
        processor.save_pretrained(folder)
        assert (folder / "processing_blemore.py").exists()
        loaded = BlemoreProcessor.from_pretrained(folder)
        assert loaded.to_dict() == processor.to_dict()
        inputs = {}
        if video:
            inputs["videos"] = [str(clips["blend"])]
        if audio:
            inputs["audio"] = [str(clips["blend"])]
        expected, again = processor(**inputs), loaded(**inputs)
        for key in expected:
            torch.testing.assert_close(again[key], expected[key])


def test_processor_feeds_the_model(clips):
    from transformers import VideoMAEConfig, WavLMConfig

    config = BlemoreConfig(
        video_config=VideoMAEConfig(
            image_size=SIZE, patch_size=16, num_frames=NUM_FRAMES, tubelet_size=2, hidden_size=32,
            num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        ),
        audio_config=WavLMConfig(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16),
            conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
            num_buckets=16, max_bucket_distance=64,
        ),
        fusion_hidden_size=16, fusion_num_heads=2, head_hidden_sizes=[16],
    )  # fmt: skip
    model = BlemoreForBlendedEmotionRecognition(config).eval()
    paths = [str(clips["blend"]), str(clips["single"])]
    with torch.no_grad():
        out = model(**make_processor()(videos=paths, audio=paths))
    assert out.logits.shape == (2, 6)
    assert [len(p) in (1, 2) for p in model.decode(out)] == [True, True]


# ---------------------------------------------------------------------------------------------------------------
# With datasets and the Trainer's collators: fingerprints, stored dtypes, padding
# ---------------------------------------------------------------------------------------------------------------

_HASH_IN_A_FRESH_PROCESS = """
import sys
import datasets
from transformers import AutoProcessor
from datasets.fingerprint import Hasher
processor = AutoProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)
assert type(processor).__module__.startswith("transformers_modules"), type(processor).__module__
if len(sys.argv) > 2:  # a map with it, on a dataset saved to disk: its cache file is named by the fingerprint
    source = datasets.load_from_disk(sys.argv[2])
    mapped = source.map(lambda rows: processor(audio=rows["audio"], padding=False, return_tensors=None),
                        batched=True, remove_columns=["audio"])
    print(mapped.cache_files[0]["filename"])
print(Hasher.hash(processor))
"""


def test_a_remote_code_processor_has_the_same_fingerprint_in_every_process(tmp_path, clips):
    """Loaded as remote code (a ``transformers_modules`` class), hashed by ``datasets`` in two fresh processes:
    the same fingerprint, so a ``ds.map`` with it in the second process finds the first one's cache file."""
    import os
    import subprocess
    import sys

    import datasets

    make_processor().save_pretrained(tmp_path / "processor")
    datasets.Dataset.from_dict({"audio": [str(clips["blend"]), str(clips["single"])]}).save_to_disk(tmp_path / "ds")
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}
    outputs = []
    for _ in range(2):
        run = subprocess.run([sys.executable, "-c", _HASH_IN_A_FRESH_PROCESS, str(tmp_path / "processor"),
                              str(tmp_path / "ds")], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        outputs.append(run.stdout.split()[-2:])
    assert outputs[0] == outputs[1]  # the processor's hash and the map's cache file
    hashes = [outputs[0][1]]
    # the settings are the fingerprint: another setting, another hash
    make_processor(max_audio_seconds=1.0).save_pretrained(tmp_path / "other")
    run = subprocess.run([sys.executable, "-c", _HASH_IN_A_FRESH_PROCESS, str(tmp_path / "other")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split()[-1] != hashes[0]


def test_a_pickled_processor_is_the_same_processor(clips):
    import pickle

    processor = make_processor(max_audio_seconds=1.5)
    copy = pickle.loads(pickle.dumps(processor))
    assert copy.to_dict() == processor.to_dict()
    paths = [str(clips["blend"])]
    expected, again = processor(videos=paths, audio=paths), copy(videos=paths, audio=paths)
    for key in expected:
        torch.testing.assert_close(again[key], expected[key])


def test_dataset_map_stores_float32_and_caches(clips, tmp_path):
    import datasets

    processor = make_processor()
    paths = [str(clips["blend"]), str(clips["single"])]
    source = datasets.Dataset.from_dict({"video": paths, "audio": paths, "label": [3, 4]})
    source.save_to_disk(tmp_path / "source")
    source = datasets.load_from_disk(tmp_path / "source")  # backed by a file, so map results are cached there

    def preprocess(rows):
        return processor(videos=rows["video"], audio=rows["audio"], padding=False, return_tensors=None)

    mapped = source.map(preprocess, batched=True, remove_columns=["video", "audio"])
    features = mapped.features
    assert features["input_values"].feature.dtype == "float32"
    assert features["attention_mask"].feature.dtype in ("int8", "int64")  # datasets stores masks as int8
    frames = features["pixel_values_videos"]
    while hasattr(frames, "feature"):
        frames = frames.feature
    assert frames.dtype == "float32"
    again = source.map(preprocess, batched=True, remove_columns=["video", "audio"])
    assert again.cache_files == mapped.cache_files  # the same fingerprint: read back, not recomputed
    # Stored rows pad into a batch with the Trainer's DataCollatorWithPadding and the processor as "tokenizer".
    from transformers import DataCollatorWithPadding

    batch = DataCollatorWithPadding(processor)([mapped[0], mapped[1]])
    direct = processor(videos=paths, audio=paths)
    assert batch["labels"].tolist() == [3, 4]
    assert batch["input_values"].dtype == torch.float32
    for key in ("pixel_values_videos", "input_values", "attention_mask"):
        torch.testing.assert_close(batch[key], direct[key])


def test_pad_batches_the_processors_own_outputs(clips):
    processor = make_processor()
    paths = [str(clips["blend"]), str(clips["single"])]
    ones = [processor(videos=[p], audio=[p]) for p in paths]  # batches of one, as the pipeline makes them
    padded = processor.pad(ones)
    direct = processor(videos=paths, audio=paths)
    for key in direct:
        torch.testing.assert_close(padded[key], direct[key])
    longer = processor.pad(ones, padding="max_length", max_length=3 * RATE)
    assert longer["input_values"].shape == (2, 3 * RATE)
    assert longer["attention_mask"].sum(-1).tolist() == direct["attention_mask"].sum(-1).tolist()
