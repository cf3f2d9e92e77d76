"""The commands users wait on start fast: ``import blemore``, ``blemore --help``, ``score``, ``validate`` and
``baseline`` never import ``datasets``, ``torch``, ``transformers`` (about a second or more each) or numpy.

Each case runs in a fresh interpreter and lists the heavy modules left in ``sys.modules`` after the command.
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import blemore

REPO_ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("datasets", "torch", "transformers", "pandas", "pyarrow", "huggingface_hub", "numpy")

_PROBE = """
import sys
import blemore
try:
    code = blemore.main(sys.argv[1:]) if len(sys.argv) > 1 else 0
except SystemExit as stop:  # argparse's --help
    code = stop.code
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


def _heavy_after(*argv: str) -> tuple[list[str], subprocess.CompletedProcess]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", _PROBE.format(heavy=HEAVY), *argv], capture_output=True, text=True,
                         env=env, cwd=REPO_ROOT, timeout=120)
    line = next(line for line in run.stderr.splitlines() if line.startswith("HEAVY="))
    return [m for m in line.removeprefix("HEAVY=").split(",") if m], run


@pytest.fixture(scope="module")
def submission_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("startup")
    key = folder / "answer_key.csv"
    with open(key, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "emotion_1", "emotion_2", "emotion_1_salience", "emotion_2_salience"])
        writer.writerow(["test_0001", "hap", "", "", ""])
        writer.writerow(["test_0002", "ang", "hap", "70", "30"])
    predictions = {"test_0001.mov": [{"emotion": "hap", "salience": 100.0}],
                   "test_0002.mov": [{"emotion": "ang", "salience": 30.0}, {"emotion": "hap", "salience": 70.0}]}
    path = folder / "submission.json"
    path.write_text(json.dumps({"predictions": predictions}))
    return key, path


def test_import_blemore_is_light():
    heavy, run = _heavy_after()
    assert run.returncode == 0, run.stderr
    assert heavy == []


@pytest.mark.parametrize("argv", [["--help"], ["score", "--help"], ["prepare", "--help"]])
def test_help_is_light(argv):
    heavy, run = _heavy_after(*argv)
    assert run.returncode == 0, run.stderr
    assert "usage" in run.stdout
    assert heavy == []


def test_score_validate_baseline_are_light(submission_files):
    key, path = submission_files
    heavy, run = _heavy_after("score", str(path), "--references", str(key), "--details")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert (result["acc_presence"], result["acc_salience"]) == (1.0, 0.0)
    assert heavy == []

    heavy, run = _heavy_after("validate", str(path), "--against", str(key))
    assert run.returncode == 0, run.stderr
    assert heavy == []

    manifest = blemore.reference_path("blemore_manifest.csv")
    heavy, run = _heavy_after("baseline", "--references", str(manifest))
    assert run.returncode == 0, run.stderr
    assert heavy == []


def test_builder_is_still_there_when_asked_for():
    """The lazy builder: ``blemore.Blemore`` is a ``datasets`` builder, made on first access."""
    import datasets

    assert issubclass(blemore.Blemore, datasets.GeneratorBasedBuilder)
    assert blemore.Blemore.BUILDER_CONFIG_CLASS is blemore.BlemoreBuilderConfig
    assert [c.name for c in blemore.Blemore.BUILDER_CONFIGS] == blemore.config_names()
    assert "Blemore" in dir(blemore)
    with pytest.raises(AttributeError):
        blemore.NoSuchThing  # noqa: B018
