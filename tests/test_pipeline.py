"""``pipeline(model=FOLDER, trust_remote_code=True)``: the custom pipeline a saved BLEMORE model ships with."""

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


def expected(model, processor, clips):
    """What the model itself predicts for these clips (the processor on the files, then decode)."""
    with torch.no_grad():
        out = model(**processor(videos=clips, audio=clips))
    return model.decode(out), out.logits.softmax(-1)


def test_the_task_comes_from_the_saved_config(classify, saved_model):
    assert classify.task == "video-classification"
    assert type(classify).__name__ == "BlemorePipeline"
    assert type(classify).__module__.startswith("transformers_modules")  # the folder's own copy of the code


def test_a_path_bytes_and_a_dataset_row_give_the_models_prediction(classify, saved_model, synthetic_raw,
                                                                   prepared_dataset):
    from datasets import load_dataset

    _, model, processor = saved_model
    test = load_dataset(str(prepared_dataset), split="test")
    row = test[0]
    path = next(p for p in (synthetic_raw / "test").glob("*.mov") if p.stem == row["clip_id"])
    decoded, probabilities = expected(model, processor, [str(path)])
    for clip in (str(path), path.read_bytes(), row):
        result = classify(clip)
        assert set(result) == {"emotions", "outcome", "probabilities"}
        assert result["emotions"] == decoded[0]
        check_clips([result["emotions"]])  # the metric's format, valid under its strict checks
        assert result["outcome"] in OUTCOME_NAMES
        assert list(result["probabilities"]) == list(EMOTIONS)
        assert [result["probabilities"][e] for e in EMOTIONS] == pytest.approx(probabilities[0].tolist(), abs=1e-5)


def test_a_list_is_batched_and_matches_one_at_a_time(classify, synthetic_raw):
    paths = sorted(str(p) for p in (synthetic_raw / "test").glob("*.mov"))[:5]
    batched = classify(paths, batch_size=2)
    assert len(batched) == 5
    for path, result in zip(paths, batched):
        single = classify(path)
        assert result["emotions"] == single["emotions"]
        assert [result["probabilities"][e] for e in EMOTIONS] == pytest.approx(
            [single["probabilities"][e] for e in EMOTIONS], abs=1e-5)


def test_a_clip_without_the_models_modality_is_named(classify, prepared_dataset):
    from datasets import load_dataset

    row = load_dataset(str(prepared_dataset), split="test")[0]
    with pytest.raises(ValueError, match="this model needs audio"):
        classify(row["video"])
