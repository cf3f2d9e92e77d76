"""The toolkit as a user installs it: a built wheel in a fresh virtual environment, run from a folder that holds a
prepared ``./blemore`` dataset, a ``./modeling/`` folder and a ``metrics.py`` of the user's own.

The wheel must hold everything the installed toolkit reads (the dataset card template among it) and nothing named
``modeling`` or ``metrics`` at the top of site-packages. The fresh environment takes its dependencies from the one
running the tests (a ``.pth`` file pointing at its site-packages; a line in a ``.pth`` file adds a folder to
``sys.path`` without running the ``.pth`` files inside it, so the editable install there stays out); only the
wheel is installed, with ``--no-deps``. Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import blemore
from blemore_toolkit.data.synth_encoding import write_clip

REPO = Path(__file__).resolve().parents[1]
#: What the wheel is built from (the rest of the repository is not part of the package).
SOURCES = ("pyproject.toml", "README.md", "blemore.py", "dataset_card.md", "blemore_toolkit", "modeling", "metrics")
NAMES = ("A102_mix_ang_hap_30_70_ver1", "A102_sad_int2_ver1")


def dependencies_folder() -> Path:
    """The site-packages folder the toolkit's dependencies are installed in."""
    import datasets

    return Path(datasets.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``pip wheel .`` of a copy of the package's sources (the checkout itself gets no build folder)."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(REPO / name, source / name)
    dist = tmp_path_factory.mktemp("dist")
    # The build backend comes from where the dependencies are installed (a light venv's own setuptools may be too
    # old for pyproject.toml's SPDX licence); no build isolation, so nothing is downloaded.
    env = {**os.environ, "PYTHONPATH": str(dependencies_folder())}
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-q", "-w", str(dist), str(source)], capture_output=True, text=True, timeout=300, env=env)
    assert build.returncode == 0, build.stderr[-3000:]
    (path,) = dist.glob("blemore-*.whl")
    return path


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel installed, dependencies borrowed from this one."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "zz_dependencies.pth").write_text(f"{dependencies_folder()}\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                              "--no-index", "-q", str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory) -> Path:
    """A folder holding ``./blemore`` (a dataset folder, no ``__init__.py``), ``./modeling/`` and ``metrics.py``
    that fail loudly when imported, a two-clip download and a scored submission's files."""
    folder = tmp_path_factory.mktemp("user")
    (folder / "blemore" / "data").mkdir(parents=True)
    (folder / "blemore" / "README.md").write_text("a dataset folder of the user's\n")
    (folder / "modeling").mkdir()
    (folder / "modeling" / "__init__.py").write_text("raise ImportError('the user\\'s own modeling was imported')\n")
    (folder / "metrics.py").write_text("raise ImportError('the user\\'s own metrics.py was imported')\n")
    (folder / "raw").mkdir()
    for i, name in enumerate(NAMES):
        label = blemore.parse_clip_name(name)
        write_clip(folder / "raw" / f"{name}.mov", label.emotions, label.salience, width=48, height=32,
                   duration_s=0.6, seed=i)
    (folder / "answer_key.csv").write_text(
        "filename,emotion_1,emotion_2,emotion_1_salience,emotion_2_salience\n"
        "test_0001.mov,ang,hap,70,30\ntest_0002.mov,sad,,,\n")
    (folder / "submission.json").write_text(json.dumps({"predictions": {
        "test_0001.mov": [{"emotion": "ang", "salience": 70.0}, {"emotion": "hap", "salience": 30.0}],
        "test_0002.mov": [{"emotion": "hap", "salience": 100.0}]}}))
    return folder


def run_in(venv: Path, folder: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    return subprocess.run([str(venv / "bin" / "python"), *args], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_wheel_holds_the_package_and_nothing_named_modeling_or_metrics(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"blemore.py", "blemore_toolkit"}, tops
    for needed in ("blemore_toolkit/data/dataset_card.md", "blemore_toolkit/reference/blemore_manifest.csv",
                   "blemore_toolkit/modeling/pipeline_blemore.py", "blemore_toolkit/modeling/processing_blemore.py",
                   "blemore_toolkit/metrics/blemore/blemore.py", "blemore_toolkit/metrics/blemore/challenge.py",
                   "blemore_toolkit/metrics/blemore/requirements.txt"):
        assert needed in names, needed
    shipped = zipfile.ZipFile(wheel).read("blemore_toolkit/data/dataset_card.md")
    assert shipped == (REPO / "dataset_card.md").read_bytes()  # the template itself, not a stale copy


def test_the_installed_module_wins_over_a_blemore_folder(venv, user_folder):
    found = run_in(venv, user_folder, "-c", "import blemore, blemore_toolkit; print(blemore.__file__); "
                                            "print(blemore_toolkit.__file__)")
    assert found.returncode == 0, found.stderr[-2000:]
    for line in found.stdout.split():
        assert Path(line).is_relative_to(venv), found.stdout  # the wheel's files, not the checkout or ./blemore


def test_python_m_blemore_and_torchrun_score_from_a_folder_holding_blemore(venv, user_folder):
    for launcher in (["-m", "blemore"], ["-m", "torch.distributed.run", "--nproc_per_node", "1", "-m", "blemore"]):
        result = run_in(venv, user_folder, *launcher, "score", "submission.json", "--references", "answer_key.csv")
        assert result.returncode == 0, (launcher, result.stderr[-2000:])
        scores = json.loads(result.stdout)
        assert (scores["acc_presence"], scores["acc_salience"], scores["n_clips"]) == (0.5, 1.0, 2)


def test_an_installed_toolkit_prepares_a_dataset_with_its_card(venv, user_folder):
    result = run_in(venv, user_folder, "-m", "blemore", "prepare", "raw", "prepared", "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    card = (user_folder / "prepared" / "README.md").read_text()
    assert card.startswith("---\n") and "pretty_name: BLEMORE" in card and "configs:" in card
    loaded = run_in(venv, user_folder, "-c", "import datasets; print(len(datasets.load_dataset('prepared', "
                                             "split='train')))")
    assert loaded.returncode == 0 and loaded.stdout.split()[-1] == "2", loaded.stderr[-2000:]


def test_the_editable_route_is_not_what_the_venv_holds(venv):
    """The fresh environment runs the wheel's copy: no editable finder and no path back to the checkout."""
    site = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    assert not list(site.glob("__editable__*")) and not list(site.glob("*.egg-link"))
    assert (site / "blemore_toolkit" / "data" / "dataset_card.md").is_file()
