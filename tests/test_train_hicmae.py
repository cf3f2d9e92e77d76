"""`blemore train --model hicmae`: the tiny HiCMAE learns held-out actors; `--recipe paper` sets the fork's list."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from blemore_toolkit.cli import add_train_arguments, main, settings_from_args
from blemore_toolkit.training import hicmae as recipe_module
from blemore_toolkit.training.hicmae import (
    PAPER,
    PAPER_RECIPE,
    PAPER_RECIPE_DIFFERENCES,
    apply_paper_recipe,
    paper_optimizer,
    tiny_hicmae_config,
    training_window,
)
from blemore_toolkit.training.train import TrainSettings, run_training, training_arguments

RECIPES_MD = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


@pytest.fixture(scope="module")
def two_actors_per_fold(tmp_path_factory):
    """Eight training actors (the demo's count per fold run): enough styles to generalise to unseen actors."""
    from blemore_toolkit.data.prepare import prepare_dataset
    from blemore_toolkit.data.synth import synthesize

    root = tmp_path_factory.mktemp("hicmae_synth")
    synthesize(root / "raw", actors_per_fold=2, test_actors=1, seed=0, width=64, height=48, durations=(1.0, 3.0),
               progress=False)
    prepare_dataset(root / "raw", root / "blemore", clips_per_shard=32, progress=False)
    return root / "blemore"


def test_tiny_hicmae_learns_held_out_actors(two_actors_per_fold, tmp_path):
    settings = TrainSettings(output_dir=str(tmp_path / "run"), model="hicmae", epochs=8, batch_size=16,
                             num_workers=0, progress=False, logging_steps=50)
    summary = run_training(str(two_actors_per_fold), "0", settings)
    metrics = summary["validation"]["folds"]["fold0"]  # fold 0's actors: never seen in training
    assert metrics["acc_presence"] >= 0.9, metrics
    assert metrics["acc_salience"] >= 0.75, metrics
    saved = json.loads((Path(summary["model_dir"]) / "config.json").read_text())
    assert saved["model_type"] == "hicmae" and saved["auto_map"]["AutoModel"] == "modeling_hicmae.HicmaeModel"


def _paper_settings(tmp_path) -> TrainSettings:
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    args = parser.parse_args(["data", "--model", "hicmae", "--recipe", "paper", "-o", str(tmp_path)])
    return apply_paper_recipe(settings_from_args(args))


def test_the_paper_recipe_sets_the_training_arguments(tmp_path):
    settings = _paper_settings(tmp_path)
    arguments = training_arguments(settings, tmp_path, has_validation=True)
    assert (arguments.num_train_epochs, arguments.per_device_train_batch_size, arguments.seed) == (80, 32, 0)
    assert arguments.dataloader_drop_last is True
    assert arguments.fp16 is torch.cuda.is_available()
    assert settings.recipe == "paper" and settings.model == "hicmae"


def test_the_paper_optimiser_groups_layer_decay_and_schedule():
    torch.manual_seed(0)
    from blemore_toolkit.modeling.modeling_hicmae import HicmaeForBlendedEmotionRecognition

    config = tiny_hicmae_config(num_hidden_layers=3, num_audio_hidden_layers=3, num_fusion_layers=2)
    model = HicmaeForBlendedEmotionRecognition(config)
    optimizer, scheduler = paper_optimizer(model, total_batch=32, steps_per_epoch=10)
    peak = 1e-3 * 32 / 256
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["betas"] == (0.9, 0.999) and optimizer.defaults["eps"] == 1e-8
    by_name = {}
    for group in optimizer.param_groups:
        names = [n for n, p in model.named_parameters() if any(p is q for q in group["params"])]
        for name in names:
            by_name[name] = group
    assert set(by_name) == {name for name, _ in model.named_parameters()}
    num_layers = 3 + 2  # max(video, audio) + fusion, as the fork's get_num_layers
    expected_layer = {
        "hicmae.video_embeddings.projection.weight": 0,
        "hicmae.audio_embeddings.projection.bias": 0,
        "hicmae.video_layers.0.attention.attention.query.weight": 1,
        "hicmae.audio_layers.2.output.dense.weight": 3,
        "hicmae.fusion_video_layers.0.cross_attention.key.weight": 4,
        "hicmae.fusion_audio_layers.1.layer.intermediate.dense.weight": 5,
        "hicmae.video_layernorm.weight": 6,
        "hicmae.video_layer_weights": 6,
        "head.weight": 6,
    }
    for name, layer in expected_layer.items():
        group = by_name[name]
        assert group["layer"] == layer, name
        assert group["lr_scale"] == pytest.approx(0.75 ** (num_layers + 1 - layer)), name
    for name, group in by_name.items():
        parameter = dict(model.named_parameters())[name]
        no_decay = parameter.dim() == 1 or name.endswith(".bias")
        assert group["weight_decay"] == (0.0 if no_decay else 0.05), name
    # Linear warm-up from 0 over 5 epochs (50 steps), then a cosine to 1e-6 · 32 / 256 at step 800.
    head = by_name["head.weight"]
    lrs = []
    for _ in range(800):
        lrs.append(head["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == 0.0 and lrs[49] == pytest.approx(peak) and lrs[50] == pytest.approx(peak)
    assert lrs[25] == pytest.approx(peak * 25 / 49)
    assert lrs[799] == pytest.approx(1e-6 * 32 / 256, rel=0.05) and min(lrs[50:]) >= 1e-6 * 32 / 256 * 0.99
    layer1 = by_name["hicmae.video_layers.0.attention.attention.query.weight"]
    assert layer1["lr"] / head["lr"] == pytest.approx(0.75 ** 5)


def test_recipes_md_lists_every_setting_of_the_paper_recipe():
    text = RECIPES_MD.read_text()
    section = text[text.index("## HiCMAE"):]
    for setting, value, source in PAPER_RECIPE:
        row = next((line for line in section.splitlines() if line.startswith(f"| {setting} |")), None)
        assert row is not None, setting
        assert value in row and source in row, (setting, row)
    for difference in PAPER_RECIPE_DIFFERENCES:
        assert difference in section
    assert re.search(r"0\.18", section)


def test_the_training_window_follows_the_forks_loader():
    rng = np.random.default_rng(0)
    short, first, last = training_window(40, 16, 4, rng)  # ≤ 64 frames: linspace over the clip, padded
    expected = np.clip(np.concatenate([np.linspace(0, 40, num=10), np.full(6, 40.0)]), 0, 39).astype(int).tolist()
    assert short == expected and (first, last) == (0, 39)
    for _ in range(20):
        indices, first, last = training_window(200, 16, 4, rng)
        assert len(indices) == 16 and indices[-1] - indices[0] in (63, 64) and first == indices[0]
        assert last == min(first + 64, 199)


def test_paper_recipe_is_for_hicmae_only(prepared_dataset, tmp_path, capsys):
    assert main(["train", str(prepared_dataset), "--recipe", "paper", "-o", str(tmp_path)]) == 1
    assert "--recipe paper is the published fine-tuning of --model hicmae" in capsys.readouterr().err


def test_a_paper_recipe_run_trains_and_saves(prepared_dataset, tmp_path, monkeypatch):
    seen = {}
    original = recipe_module.paper_optimizer

    def spy(model, total_batch, steps_per_epoch, recipe=PAPER):
        seen.update(total_batch=total_batch, steps_per_epoch=steps_per_epoch)
        return original(model, total_batch, steps_per_epoch, recipe)

    monkeypatch.setattr(recipe_module, "paper_optimizer", spy)
    argv = ["train", str(prepared_dataset), "--model", "hicmae", "--recipe", "paper", "--fold", "none",
            "--max-steps", "2", "--num-workers", "0", "-o", str(tmp_path)]
    assert main(argv) == 0
    assert seen["total_batch"] == 32 and seen["steps_per_epoch"] >= 1
    model_dir = tmp_path / "final" / "model"
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "processor_config.json").is_file()
    assert json.loads((model_dir / "config.json").read_text())["drop_path_rate"] == 0.1
    # blemore predict reads a HiCMAE folder too: a valid submission for the test split
    assert main(["predict", str(model_dir), str(prepared_dataset), "--split", "test", "--num-workers", "0",
                 "-o", str(tmp_path / "predict")]) == 0
    assert (tmp_path / "predict" / "submission.zip").is_file()
    # ... and with --faces, from aligned-face folders (here: flat grey faces, so the probabilities change)
    from PIL import Image

    from blemore_toolkit.data.loading import load_split
    from blemore_toolkit.evaluation.probabilities import read_probabilities

    clip_ids = list(load_split(str(prepared_dataset), "default", "test")["clip_id"])
    for clip_id in clip_ids:
        folder = tmp_path / "faces" / f"{clip_id}_aligned"
        folder.mkdir(parents=True)
        for i in range(8):
            Image.fromarray(np.full((16, 16, 3), 128, dtype=np.uint8)).save(folder / f"frame_det_00_{i + 1:06d}.bmp")
    assert main(["predict", str(model_dir), str(prepared_dataset), "--split", "test", "--num-workers", "0",
                 "--faces", str(tmp_path / "faces"), "-o", str(tmp_path / "predict_faces")]) == 0
    _, whole, _ = read_probabilities(tmp_path / "predict" / "probabilities.csv")
    _, faces, _ = read_probabilities(tmp_path / "predict_faces" / "probabilities.csv")
    assert whole.shape == faces.shape and np.abs(whole - faces).max() > 1e-4


def test_faces_replace_the_frames_and_a_missing_folder_names_the_clip(tmp_path):
    from PIL import Image

    from blemore import BlemoreError
    from blemore_toolkit.modeling.processing_hicmae import HicmaeProcessor
    from blemore_toolkit.training.hicmae import HicmaeClipDecoder

    faces = tmp_path / "faces" / "A102_ang_int1_ver1_aligned"  # OpenFace's folder name for the clip
    faces.mkdir(parents=True)
    for i in range(30):
        Image.fromarray(np.full((112, 112, 3), 4 * i, dtype=np.uint8)).save(faces / f"frame_det_00_{i + 1:06d}.bmp")
    processor = HicmaeProcessor(num_frames=4, image_size=32, audio_length=64, num_mel_bins=32)
    decoder = HicmaeClipDecoder(processor, with_labels=False, faces_dir=str(tmp_path / "faces"))
    audio = {"array": np.sin(np.arange(32000) / 7.0).astype(np.float32), "sampling_rate": 16000}
    out = decoder({"clip_id": ["A102_ang_int1_ver1"], "video": [None], "audio": [audio]})
    frames = out["pixel_values_videos"][0]
    indices, _, _ = processor.window(30)
    assert frames.shape == (4, 3, 32, 32)
    assert torch.allclose((frames[:, 0, 16, 16] * 0.229 + 0.485) * 255, torch.tensor([4.0 * i for i in indices]),
                          atol=1e-3)
    with pytest.raises(BlemoreError, match=r"^clip A103_sad_int2_ver1: no face folder .*A103_sad_int2_ver1"):
        decoder({"clip_id": ["A103_sad_int2_ver1"], "video": [None], "audio": [audio]})


def test_faces_is_checked_before_training(prepared_dataset, tmp_path, capsys):
    argv = ["train", str(prepared_dataset), "--model", "hicmae", "--faces", str(tmp_path / "none"),
            "-o", str(tmp_path)]
    assert main(argv) == 1
    assert "--faces" in capsys.readouterr().err


def test_a_hicmae_folder_without_model_hicmae_is_named(prepared_dataset, tmp_path, capsys):
    from blemore_toolkit.modeling.modeling_hicmae import HicmaeForBlendedEmotionRecognition

    HicmaeForBlendedEmotionRecognition(tiny_hicmae_config()).save_pretrained(tmp_path / "hicmae")
    assert main(["train", str(prepared_dataset), "--init-from", str(tmp_path / "hicmae"), "-o", str(tmp_path)]) == 1
    assert "a HiCMAE model; train it with --model hicmae" in capsys.readouterr().err
