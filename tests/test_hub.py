"""The Hub path, through the real huggingface_hub / datasets / transformers clients against a local stand-in Hub.

Pushing happens in this process; loading back happens in fresh subprocesses whose only link to the pushed folder is
``HF_ENDPOINT`` (and empty caches), as it would for someone on another machine.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf
from huggingface_hub import DatasetCardData, HfApi
from local_hub import TOKEN, run_client

import blemore
from blemore_toolkit.data.hub import check_dataset_folder, check_model_folder, push_dataset, push_model_folder

FOLDS = (0, 1, 2)
# huggingface_hub's own LFS upload hands httpx2 a file object, which httpx2 flags as deprecated; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


# ---------------------------------------------------------------------------------------------------------------
# A small prepared dataset folder in the shape `blemore prepare` writes (parquet with embedded audio + README)
# ---------------------------------------------------------------------------------------------------------------


def _wav_bytes(seed: int, seconds: float = 0.25) -> bytes:
    rng = np.random.default_rng(seed)
    samples = (0.1 * rng.standard_normal(int(blemore.AUDIO_SAMPLING_RATE * seconds))).astype("float32")
    buffer = io.BytesIO()
    sf.write(buffer, samples, blemore.AUDIO_SAMPLING_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


FEATURES = datasets.Features({
    "clip_id": datasets.Value("string"),
    "audio": datasets.Audio(sampling_rate=blemore.AUDIO_SAMPLING_RATE, num_channels=1),
    "actor_id": datasets.Value("string"),
    "split": datasets.Value("string"),
    "fold": datasets.Value("int8"),
    "emotions": datasets.List(datasets.ClassLabel(names=list(blemore.EMOTIONS))),
    "salience": datasets.List(datasets.Value("int32")),
    "outcome": datasets.ClassLabel(names=list(blemore.OUTCOME_NAMES)),
})


def _row(clip_id: str, fold: int | None, seed: int) -> dict:
    audio = {"bytes": _wav_bytes(seed), "path": f"{clip_id}.wav"}
    if blemore.is_test_clip(clip_id):
        return {"clip_id": clip_id, "audio": audio, "actor_id": None, "split": "test", "fold": None, "emotions": [],
                "salience": [], "outcome": None}
    label = blemore.parse_clip_name(clip_id)
    return {"clip_id": clip_id, "audio": audio, "actor_id": label.actor_id, "split": "train", "fold": fold,
            "emotions": list(label.emotions), "salience": list(label.salience), "outcome": label.outcome}


def _write_shards(folder: Path, split_name: str, rows: list[dict], num_shards: int = 1) -> None:
    dataset = datasets.Dataset.from_list(rows, features=FEATURES)
    # Media bytes go into the parquet file itself, which is what makes the folder portable (and pushable).
    dataset = dataset.with_format("arrow").map(datasets.table.embed_table_storage, batched=True).with_format(None)
    for index in range(num_shards):
        shard = dataset.shard(num_shards, index, contiguous=True)
        shard.to_parquet(folder / "data" / f"{split_name}-{index:05d}-of-{num_shards:05d}.parquet")


def make_dataset_folder(folder: Path, fold0_shards: int = 1) -> Path:
    """Three train folds (one actor each) and an unlabelled test split; configs default and fold0..fold2."""
    from datasets.info import DatasetInfo, DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs

    (folder / "data").mkdir(parents=True)
    for fold in FOLDS:
        actor = f"A{100 + fold}"
        clips = [f"{actor}_ang_int1_ver1", f"{actor}_mix_ang_hap_30_70_ver1", f"{actor}_neu_sit2_ver1"]
        rows = [_row(clip, fold, seed=10 * fold + i) for i, clip in enumerate(clips)]
        _write_shards(folder, f"fold{fold}", rows, fold0_shards if fold == 0 else 1)
    _write_shards(folder, "test", [_row("test_0001", None, 90), _row("test_0002", None, 91)])

    configs = {"default": {"data_files": [{"split": "train", "path": "data/fold*"},
                                          {"split": "test", "path": "data/test-*"}], "default": True}}
    for k in FOLDS:
        configs[f"fold{k}"] = {"data_files": [
            {"split": "train", "path": [f"data/fold{j}-*" for j in FOLDS if j != k]},
            {"split": "validation", "path": f"data/fold{k}-*"},
            {"split": "test", "path": "data/test-*"},
        ]}
    card = DatasetCardData(license="other")
    MetadataConfigs(configs).to_dataset_card_data(card)
    DatasetInfosDict({name: DatasetInfo(features=FEATURES, config_name=name) for name in configs}
                     ).to_dataset_card_data(card)
    (folder / "README.md").write_text(f"---\n{card.to_yaml()}\n---\n\n# BLEMORE (tiny test copy)\n")
    return folder


LOAD_FROM_HUB = """
    import sys, datasets
    repo, out, configs = sys.argv[1], sys.argv[2], sys.argv[3:]
    for config in configs:
        name = None if config == "-" else config
        datasets.load_dataset(repo, name).save_to_disk(f"{out}/{config}")
"""


def assert_same_data(local: datasets.DatasetDict, from_hub: datasets.DatasetDict) -> None:
    assert sorted(local) == sorted(from_hub)
    for split in local:
        assert from_hub[split].features == local[split].features
        assert from_hub[split].data.table.equals(local[split].data.table), f"split {split} differs"


# ---------------------------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------------------------


def test_pushed_dataset_loads_from_the_hub_like_the_folder(hub, tmp_path, capsys):
    folder = make_dataset_folder(tmp_path / "blemore")

    assert blemore.main(["push", str(folder), "me/blemore-tiny", "--endpoint", hub.url]) == 0
    sha = capsys.readouterr().out.split("at commit ")[1].split()[0]
    assert sha == hub.branch_head("me/blemore-tiny", "dataset")
    # parquet shards went up as LFS objects, the card as a plain file
    assert [r for r in hub.requests if r[1] == "lfs-upload"] and hub.unrouted == []

    out = tmp_path / "from_hub"
    run_client(hub, tmp_path / "hf_home_reader", LOAD_FROM_HUB, "me/blemore-tiny", str(out), "-", "fold1")
    cache = tmp_path / "local_cache"
    assert_same_data(datasets.load_dataset(str(folder), cache_dir=str(cache)), datasets.load_from_disk(out / "-"))
    local_fold1 = datasets.load_dataset(str(folder), "fold1", cache_dir=str(cache))
    assert sorted(local_fold1) == ["test", "train", "validation"] and local_fold1["validation"].num_rows == 3
    assert_same_data(local_fold1, datasets.load_from_disk(out / "fold1"))
    assert datasets.load_from_disk(out / "-")["train"].features["audio"].sampling_rate == 16_000


def test_prepared_blemore_folder_round_trips_through_the_hub(hub, prepared_dataset, tmp_path):
    """The real `blemore prepare` output (video and audio bytes embedded, five folds) survives push and load."""
    info = push_dataset(prepared_dataset, "me/blemore", endpoint=hub.url)

    out = tmp_path / "from_hub"
    run_client(hub, tmp_path / "hf_home_reader", LOAD_FROM_HUB, "me/blemore", str(out), "-", "fold2")
    cache = tmp_path / "local_cache"
    assert_same_data(datasets.load_dataset(str(prepared_dataset), cache_dir=str(cache)),
                     datasets.load_from_disk(out / "-"))
    assert_same_data(datasets.load_dataset(str(prepared_dataset), "fold2", cache_dir=str(cache)),
                     datasets.load_from_disk(out / "fold2"))
    assert info.oid == hub.branch_head("me/blemore", "dataset")
    # The pushed card's examples load the repo; the folder keeps its own card.
    repo = hub.repo("me/blemore", "dataset")
    _, files = repo.files("main")
    pushed_card = repo.read(files["README.md"]["sha256"]).decode()
    local_card = (prepared_dataset / "README.md").read_text()
    assert 'load_dataset("me/blemore")' in pushed_card and 'load_dataset("me/blemore", "fold2")' in pushed_card
    assert 'load_dataset("blemore"' not in pushed_card and 'load_dataset("blemore")' in local_card
    assert pushed_card.split("---")[1] == local_card.split("---")[1]  # the YAML header (configs) is the folder's


def test_private_push_is_invisible_without_a_token(hub, tmp_path):
    from huggingface_hub.errors import RepositoryNotFoundError

    push_dataset(make_dataset_folder(tmp_path / "blemore"), "me/blemore-private", private=True, endpoint=hub.url)
    assert HfApi(endpoint=hub.url, token=TOKEN).dataset_info("me/blemore-private").private
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.url, token=False).dataset_info("me/blemore-private")


def test_repush_mirrors_the_folder_and_old_revisions_stay_readable(hub, tmp_path):
    first = push_dataset(make_dataset_folder(tmp_path / "v1"), "me/blemore-tiny", endpoint=hub.url)
    # Re-prepared with fold0 in two shards: the old single shard must go, or `data/fold0-*` would match it too.
    folder = make_dataset_folder(tmp_path / "v2", fold0_shards=2)
    second = push_dataset(folder, "me/blemore-tiny", endpoint=hub.url, commit_message="reshard fold0")

    api = HfApi(endpoint=hub.url, token=TOKEN)
    files = api.list_repo_files("me/blemore-tiny", repo_type="dataset")
    assert sorted(files) == sorted(check_dataset_folder(folder) + [".gitattributes"])
    assert "data/fold0-00000-of-00001.parquet" in api.list_repo_files(
        "me/blemore-tiny", repo_type="dataset", revision=first.oid)
    titles = [c.title for c in api.list_repo_commits("me/blemore-tiny", repo_type="dataset")]
    assert titles == ["reshard fold0", "Upload BLEMORE dataset from v1", "initial commit"]
    assert second.oid != first.oid

    branch = push_dataset(folder, "me/blemore-tiny", endpoint=hub.url, revision="candidate")
    assert hub.branch_head("me/blemore-tiny", "dataset", "candidate") == branch.oid


def last_stderr_line(capsys) -> str:
    """The error line, after the upload progress bars (which redraw with carriage returns); never a traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.splitlines()[-1]


def test_failed_push_is_one_clear_line_leaves_the_repo_unchanged_and_can_be_retried(hub, tmp_path, capsys):
    folder = make_dataset_folder(tmp_path / "blemore")
    argv = ["push", str(folder), "me/blemore-tiny", "--endpoint", hub.url]
    api = HfApi(endpoint=hub.url, token=TOKEN)

    hub.fail("lfs-upload", status=507, after=1)  # the second parquet upload dies
    capsys.readouterr()
    assert blemore.main(argv) == 1
    error = last_stderr_line(capsys)
    assert error.startswith("blemore push: error: pushing") and "507" in error and "again" in error
    assert api.list_repo_files("me/blemore-tiny", repo_type="dataset") == [".gitattributes"]

    hub.fail("commit", status=500)  # every object arrives, then the commit itself fails
    assert blemore.main(argv) == 1
    error = last_stderr_line(capsys)
    assert error.startswith("blemore push: error: pushing") and "500" in error and "commit" in error
    assert [c.title for c in api.list_repo_commits("me/blemore-tiny", repo_type="dataset")] == ["initial commit"]

    hub.requests.clear()
    assert blemore.main(argv) == 0
    assert not [r for r in hub.requests if r[1] == "lfs-upload"], "objects stored by the failed attempts re-sent"
    assert sorted(api.list_repo_files("me/blemore-tiny", repo_type="dataset")) == sorted(
        check_dataset_folder(folder) + [".gitattributes"])


def test_incomplete_dataset_folders_are_refused_before_any_upload(hub, tmp_path):
    folder = make_dataset_folder(tmp_path / "blemore")
    shard = folder / "data" / "fold1-00000-of-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(blemore.BlemoreError, match="fold1-00000-of-00001.parquet: not a complete parquet"):
        push_dataset(folder, "me/blemore-tiny", endpoint=hub.url)
    shard.unlink()
    with pytest.raises(blemore.BlemoreError, match="names 'data/fold1-\\*' but no file"):
        push_dataset(folder, "me/blemore-tiny", endpoint=hub.url)
    (folder / "README.md").write_text("# no header\n")
    with pytest.raises(blemore.BlemoreError, match="lists no `configs`"):
        push_dataset(folder, "me/blemore-tiny", endpoint=hub.url)
    (folder / "README.md").unlink()
    with pytest.raises(blemore.BlemoreError, match="README.md: missing"):
        push_dataset(folder, "me/blemore-tiny", endpoint=hub.url)
    assert hub.requests == []


# ---------------------------------------------------------------------------------------------------------------
# Models with remote code
# ---------------------------------------------------------------------------------------------------------------

CONFIGURATION_CODE = '''
from transformers import PretrainedConfig


class TinyBlendConfig(PretrainedConfig):
    model_type = "tinyblend"

    def __init__(self, input_size=12, hidden_size=16, num_emotions=6, **kwargs):
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_emotions = num_emotions
        super().__init__(**kwargs)
'''

MODELING_CODE = '''
import torch
from transformers import PreTrainedModel

from .configuration_tinyblend import TinyBlendConfig


class TinyBlendModel(PreTrainedModel):
    config_class = TinyBlendConfig

    def __init__(self, config):
        super().__init__(config)
        self.encoder = torch.nn.Linear(config.input_size, config.hidden_size)
        self.head = torch.nn.Linear(config.hidden_size, config.num_emotions)
        self.post_init()

    def forward(self, features):
        return self.head(torch.tanh(self.encoder(features)))
'''

LOAD_MODEL_FROM_HUB = """
    import json, sys, torch
    from transformers import AutoModel
    repo, pinned = sys.argv[1], sys.argv[2]
    inputs = torch.linspace(-1, 1, 2 * 12).reshape(2, 12)
    logits = {}
    for revision in (pinned, "main"):
        model = AutoModel.from_pretrained(repo, trust_remote_code=True, revision=revision).eval()
        with torch.no_grad():
            logits[revision] = model(inputs).tolist()
    print(json.dumps({"class": type(model).__name__, "logits": logits}))
"""


def save_remote_code_model(tmp_path: Path, monkeypatch, name: str, seed: int):
    """Save a tiny custom-code model as a Hub remote-code folder; return (folder, its logits on fixed inputs)."""
    import importlib

    import torch

    package = tmp_path / "tinyblend_code"
    if not package.exists():
        package.mkdir()
        (package / "__init__.py").write_text("")
        (package / "configuration_tinyblend.py").write_text(CONFIGURATION_CODE)
        (package / "modeling_tinyblend.py").write_text(MODELING_CODE)
        monkeypatch.syspath_prepend(str(tmp_path))
    configuration = importlib.import_module("tinyblend_code.configuration_tinyblend")
    modeling = importlib.import_module("tinyblend_code.modeling_tinyblend")
    configuration.TinyBlendConfig.register_for_auto_class()
    modeling.TinyBlendModel.register_for_auto_class("AutoModel")
    torch.manual_seed(seed)
    model = modeling.TinyBlendModel(configuration.TinyBlendConfig()).eval()
    folder = tmp_path / name
    model.save_pretrained(folder)
    (folder / "README.md").write_text("---\nlibrary_name: transformers\ntags: [blemore]\n---\n\n# tiny test model\n")
    with torch.no_grad():
        logits = model(torch.linspace(-1, 1, 2 * 12).reshape(2, 12))
    return folder, logits


def test_pushed_remote_code_model_loads_at_a_pinned_revision(hub, tmp_path, monkeypatch):
    import torch

    folder, logits = save_remote_code_model(tmp_path, monkeypatch, "model_v1", seed=0)
    assert {"configuration_tinyblend.py", "modeling_tinyblend.py", "model.safetensors"} <= set(
        check_model_folder(folder))
    first = push_model_folder(folder, "me/tinyblend", endpoint=hub.url)
    retrained, new_logits = save_remote_code_model(tmp_path, monkeypatch, "model_v2", seed=1)
    push_model_folder(retrained, "me/tinyblend", endpoint=hub.url)
    assert not torch.equal(logits, new_logits)

    out = json.loads(run_client(hub, tmp_path / "hf_home_reader", LOAD_MODEL_FROM_HUB, "me/tinyblend", first.oid))
    assert out["class"] == "TinyBlendModel"
    assert torch.equal(torch.tensor(out["logits"][first.oid]), logits)  # the pinned commit, bit for bit
    assert torch.equal(torch.tensor(out["logits"]["main"]), new_logits)
    assert hub.unrouted == []


def test_model_folder_missing_its_remote_code_is_refused(hub, tmp_path, monkeypatch):
    folder, _ = save_remote_code_model(tmp_path, monkeypatch, "model", seed=0)
    (folder / "modeling_tinyblend.py").unlink()
    with pytest.raises(blemore.BlemoreError, match="needs modeling_tinyblend.py"):
        push_model_folder(folder, "me/tinyblend", endpoint=hub.url)
    (folder / "model.safetensors").unlink()
    with pytest.raises(blemore.BlemoreError, match="no model.safetensors"):
        push_model_folder(folder, "me/tinyblend", endpoint=hub.url)
    assert hub.requests == []
