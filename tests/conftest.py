"""Shared fixtures: one small synthetic download and its prepared dataset, made once per test session."""

import atexit
import os
import shutil
import tempfile

import pytest

from blemore_toolkit.data.prepare import prepare_dataset

# Tests never reach the network and never touch the user's caches: the library caches live in a temporary folder
# made before any test module imports datasets/transformers (they read these variables at import time). Hub access
# only happens against the local stand-in that the Hub tests start.
_HF_HOME = tempfile.mkdtemp(prefix="blemore-tests-hf-")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_DATASETS_CACHE"] = os.path.join(_HF_HOME, "datasets")
os.environ["HF_MODULES_CACHE"] = os.path.join(_HF_HOME, "modules")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# Under pytest-xdist (`bash run tests` starts one worker per core) each worker is already one of as many processes
# as there are cores: torch's intra-op thread pool on top makes the tiny test models' threads wait on each other
# (tens of times slower on two contended cores). One thread each, inherited by the processes the tests start.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(scope="session")
def synthetic_raw(tmp_path_factory):
    """A synthetic download: one actor per fold and one test actor, small pictures (a few seconds to make)."""
    from blemore_toolkit.data.synth import synthesize

    raw = tmp_path_factory.mktemp("synthetic") / "raw"
    synthesize(raw, actors_per_fold=1, test_actors=1, seed=0, width=64, height=48, durations=(1.0, 3.0),
               progress=False)
    return raw


@pytest.fixture(scope="session")
def prepared_dataset(synthetic_raw, tmp_path_factory):
    """``blemore prepare`` output for ``synthetic_raw``."""

    out = tmp_path_factory.mktemp("prepared") / "blemore"
    prepare_dataset(synthetic_raw, out, clips_per_shard=16, progress=False)
    return out


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A local Hub, with this process's clients pointed at nothing real: tmp caches, dummy token, no Xet."""
    import huggingface_hub.constants
    from local_hub import TOKEN, run_local_hub

    with run_local_hub(tmp_path) as hub:
        for key, value in hub.environment(tmp_path / "hf_home_pusher", token=TOKEN).items():
            monkeypatch.setenv(key, value)
        # huggingface_hub reads HF_HUB_DISABLE_XET once, at import; the stand-in speaks plain LFS only.
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
        yield hub


@pytest.fixture(scope="module")
def tiny_model_folder(tmp_path_factory):
    """A saved tiny random BLEMORE model with its processor (4 frames of 32 px, 2 s of audio), one per test module."""
    from blemore_toolkit.training.tiny import tiny_model, tiny_processor

    folder = tmp_path_factory.mktemp("model") / "model"
    tiny_model(4, 32).save_pretrained(folder)
    tiny_processor(4, 32, 2.0).save_pretrained(folder)
    return folder
