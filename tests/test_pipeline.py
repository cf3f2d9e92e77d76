"""``pipeline(model=FOLDER, trust_remote_code=True)``: the custom pipeline a saved BLEMORE model ships with keeps the
contract of its task (``video-classification``) and gives the challenge's answer with ``blend=True``."""

import types

import numpy as np
import pytest
import torch

from blemore_toolkit.metrics.blemore.challenge import check_clips
from blemore_toolkit.modeling.decoding_blemore import EMOTIONS, OUTCOME_NAMES


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    from blemore_toolkit.training.tiny import tiny_model, tiny_processor

    folder = tmp_path_factory.mktemp("pipeline") / "model"
    model, processor = tiny_model(seed=3).eval(), tiny_processor()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder, model, processor


@pytest.fixture(scope="module")
def classify(saved_model):
    from transformers import pipeline

    folder, _, _ = saved_model
    return pipeline(model=str(folder), trust_remote_code=True)


@pytest.fixture(scope="module")
def test_paths(synthetic_raw):
    return sorted(str(p) for p in (synthetic_raw / "test").glob("*.mov"))[:5]


def expected(model, processor, clips):
    """What the model itself gives for these clips (the processor on the files): its logits and decoded answers."""
    with torch.no_grad():
        out = model(**processor(videos=clips, audio=clips))
    return out.logits, model.decode(out)


def labels_of(result):
    return [entry["label"] for entry in result]


def scores_of(result):
    return [entry["score"] for entry in result]


def test_the_task_comes_from_the_saved_config(classify):
    assert classify.task == "video-classification"
    assert type(classify).__name__ == "BlemorePipeline"
    assert type(classify).__module__.startswith("transformers_modules")  # the folder's own copy of the code


def test_a_clip_gets_labels_and_scores_sorted_as_video_classification_does(classify, saved_model, synthetic_raw,
                                                                           prepared_dataset):
    from datasets import load_dataset

    _, model, processor = saved_model
    row = load_dataset(str(prepared_dataset), split="test")[0]
    path = next(p for p in (synthetic_raw / "test").glob("*.mov") if p.stem == row["clip_id"])
    logits, _ = expected(model, processor, [str(path)])
    probabilities = logits[0].softmax(-1)
    order = probabilities.argsort(descending=True).tolist()
    for clip in (str(path), path.read_bytes(), row):
        result = classify(clip)
        assert isinstance(result, list) and all(set(entry) == {"label", "score"} for entry in result)
        assert len(result) == 5  # transformers' video-classification default top_k
        assert labels_of(result) == [EMOTIONS[i] for i in order[:5]]
        assert scores_of(result) == pytest.approx(probabilities[order[:5]].tolist(), abs=1e-5)
        assert scores_of(result) == sorted(scores_of(result), reverse=True)
    everything = classify(str(path), top_k=6)
    assert sorted(labels_of(everything)) == sorted(EMOTIONS) and sum(scores_of(everything)) == pytest.approx(1.0)
    assert labels_of(classify(str(path), top_k=2)) == [EMOTIONS[i] for i in order[:2]]
    assert len(classify(str(path), top_k=50)) == 6
    sigmoid = classify(str(path), top_k=6, function_to_apply="sigmoid")
    raw = classify(str(path), top_k=6, function_to_apply="none")
    by_label = {entry["label"]: entry["score"] for entry in raw}
    assert [by_label[e] for e in EMOTIONS] == pytest.approx(logits[0].tolist(), abs=1e-5)
    assert scores_of(sigmoid) == pytest.approx(torch.tensor(scores_of(raw)).sigmoid().tolist(), abs=1e-6)
    with pytest.raises(ValueError, match="function_to_apply"):
        classify(str(path), function_to_apply="softplus")
    with pytest.raises(TypeError):
        classify(str(path), no_such_option=1)


def test_blend_gives_the_challenges_answer(classify, saved_model, test_paths):
    _, model, processor = saved_model
    logits, decoded = expected(model, processor, test_paths[:1])
    result = classify(test_paths[0], blend=True)
    assert set(result) == {"emotions", "outcome", "probabilities"}
    assert result["emotions"] == decoded[0]
    check_clips([result["emotions"]])  # the metric's format, valid under its strict checks
    assert result["outcome"] in OUTCOME_NAMES
    assert [result["probabilities"][e] for e in EMOTIONS] == pytest.approx(logits[0].softmax(-1).tolist(), abs=1e-5)


def test_a_list_is_batched_and_matches_one_at_a_time(classify, test_paths):
    batched = classify(test_paths, batch_size=2)
    assert isinstance(batched, list) and len(batched) == 5
    for path, result in zip(test_paths, batched):
        single = classify(path)
        assert labels_of(result) == labels_of(single)
        assert scores_of(result) == pytest.approx(scores_of(single), abs=1e-5)
    as_blends = classify(test_paths, batch_size=3, blend=True)
    assert [r["emotions"] for r in as_blends] == [classify(p, blend=True)["emotions"] for p in test_paths]


def test_generators_and_datasets_stream_clip_by_clip(classify, test_paths, prepared_dataset):
    import datasets
    from transformers.pipelines.pt_utils import KeyDataset

    singles = [classify(path, top_k=6) for path in test_paths]
    streamed = classify((path for path in test_paths), top_k=6, batch_size=2)
    assert isinstance(streamed, types.GeneratorType) or hasattr(streamed, "__next__")  # an iterator, not a list
    files = datasets.Dataset.from_dict({"file": test_paths})
    for answers in (list(streamed), list(classify(KeyDataset(files, "file"), top_k=6, batch_size=2))):
        assert len(answers) == len(test_paths)
        for answer, single in zip(answers, singles):
            assert labels_of(answer) == labels_of(single)
            assert scores_of(answer) == pytest.approx(scores_of(single), abs=1e-5)
    # Rows of a prepared dataset, read and decoded by two DataLoader workers.
    rows = datasets.load_dataset(str(prepared_dataset), split="test").select(range(4))
    from_workers = list(classify(rows, batch_size=2, num_workers=2, blend=True))
    in_process = [classify(row, blend=True) for row in rows]
    assert [a["emotions"] for a in from_workers] == [b["emotions"] for b in in_process]
    streaming = list(classify(rows.to_iterable_dataset(), batch_size=2, blend=True))  # load_dataset(streaming=True)
    assert [a["emotions"] for a in streaming] == [b["emotions"] for b in in_process]
    for a, b in zip(from_workers, in_process):
        assert list(a["probabilities"].values()) == pytest.approx(list(b["probabilities"].values()), abs=1e-5)


def test_the_saved_pipeline_loads_again(classify, tmp_path, test_paths):
    from transformers import pipeline

    classify.save_pretrained(tmp_path / "saved")
    again = pipeline(model=str(tmp_path / "saved"), trust_remote_code=True, blend=True)
    assert again(test_paths[0]) == classify(test_paths[0], blend=True)


def test_a_clip_without_the_models_modality_is_named(classify, prepared_dataset):
    from datasets import load_dataset

    row = load_dataset(str(prepared_dataset), split="test")[0]
    with pytest.raises(ValueError, match="this model needs audio"):
        classify(row["video"])


@pytest.mark.parametrize(("first", "second"), [("ang", "hap"), ("hap", "ang"), ("disg", "sad")])
def test_a_known_blend_comes_out_with_its_saliences_in_place(saved_model, test_paths, first, second):
    """The head's last layer set to give 70 % to one emotion and 30 % to another whatever the clip: the answer must
    say which is which (an untrained model decodes everything to 50/50 and would not notice a swap)."""
    from blemore_toolkit.modeling import BlemorePipeline
    from blemore_toolkit.training.tiny import tiny_model

    _, _, processor = saved_model
    model = tiny_model(seed=3).eval()
    last = model.head[-1]
    target = np.full(len(EMOTIONS), 1e-6)
    target[EMOTIONS.index(first)], target[EMOTIONS.index(second)] = 0.7, 0.3
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.from_numpy(np.log(target / target.sum())))
    classify = BlemorePipeline(model=model, processor=processor)
    result = classify(test_paths[0], blend=True)
    pair = sorted([(first, 70.0), (second, 30.0)], key=lambda item: EMOTIONS.index(item[0]))
    assert result["emotions"] == [{"emotion": e, "salience": s} for e, s in pair]
    assert labels_of(classify(test_paths[0], top_k=2)) == [first, second]


def test_an_audio_only_model_is_an_audio_classification_pipeline(tmp_path, test_paths):
    """As transformers' audio classification pipeline: every label by default, a waveform accepted as a clip."""
    from transformers import Wav2Vec2FeatureExtractor, pipeline

    from blemore_toolkit.modeling import BlemoreConfig, BlemoreForBlendedEmotionRecognition, BlemoreProcessor
    from blemore_toolkit.training.tiny import tiny_config

    torch.manual_seed(0)
    both = tiny_config()
    config = BlemoreConfig(audio_config=both.audio_config, fusion="concat", fusion_hidden_size=32,
                           head_hidden_sizes=[32], dropout=0.0)
    model = BlemoreForBlendedEmotionRecognition(config).eval()
    processor = BlemoreProcessor(feature_extractor=Wav2Vec2FeatureExtractor(sampling_rate=16_000))
    model.save_pretrained(tmp_path / "audio")
    processor.save_pretrained(tmp_path / "audio")
    classify = pipeline(model=str(tmp_path / "audio"), trust_remote_code=True)
    assert classify.task == "audio-classification"
    result = classify(test_paths[0])
    assert sorted(labels_of(result)) == sorted(EMOTIONS) and scores_of(result) == sorted(scores_of(result))[::-1]
    waveform = processor.load_audio(test_paths[0])
    from_array = classify({"array": waveform, "sampling_rate": 16_000})
    assert labels_of(from_array) == labels_of(result)
    assert scores_of(from_array) == pytest.approx(scores_of(result), abs=1e-5)
    assert len(classify(test_paths[0], top_k=1)) == 1
