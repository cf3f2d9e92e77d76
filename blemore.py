"""BLEMORE: blended emotion expressions with relative salience (arXiv 2601.13225).

This module is the dataset's one source of truth:

* the label schema (emotion codes, blend pairs, salience levels, the 36 outcomes) and the clip-name grammar;
* ``BlemoreBuilder``, a ``datasets.GeneratorBasedBuilder`` that reads the authors' download (or ``blemore synth``);
* ``prepare_dataset``, which turns a download into a portable, Hub-native folder that ``load_dataset`` reads offline;
* ``main``, the ``blemore`` command line, a thin layer over the plain functions here and in ``blemore_toolkit``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib
import importlib.util
import itertools
import json
import math
import os
import re
import shutil
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

_CITATION = """\
@misc{blemore2026,
  title         = {BLEMORE: A Multimodal Dataset of Blended Emotion Expressions with Relative Salience},
  author        = {{The BLEMORE authors}},
  year          = {2026},
  eprint        = {2601.13225},
  archivePrefix = {arXiv},
}
"""

_DESCRIPTION = """\
BLEMORE holds 3,050 acted video clips with audio from 58 actors: six single emotions (anger, disgust, fear,
happiness, sadness at four intensities; neutral in four situations) and the ten pairs of the five non-neutral
emotions blended at 50/50, 70/30 and 30/70 relative salience. The task is to tell which emotions are present in
a clip and, for blends, which one dominates.
"""

_HOMEPAGE = "https://arxiv.org/abs/2601.13225"

_LICENSE = "other"

# ---------------------------------------------------------------------------------------------------------------
# Label schema
# ---------------------------------------------------------------------------------------------------------------

#: The official short codes, in the order used by every vector (presence, soft target, logits).
EMOTIONS: tuple[str, ...] = ("ang", "disg", "fea", "hap", "sad", "neu")
EMOTION_NAMES: dict[str, str] = {
    "ang": "anger",
    "disg": "disgust",
    "fea": "fear",
    "hap": "happiness",
    "sad": "sadness",
    "neu": "neutral",
}
#: Neutral never occurs in a blend.
BLENDABLE_EMOTIONS: tuple[str, ...] = EMOTIONS[:5]
#: The ten pairs, each in the order the clip names use (alphabetical).
BLEND_PAIRS: tuple[tuple[str, str], ...] = tuple(itertools.combinations(BLENDABLE_EMOTIONS, 2))
#: Saliences of (first, second) emotion of a pair, in percent.
SALIENCE_LEVELS: tuple[tuple[int, int], ...] = ((50, 50), (70, 30), (30, 70))
INTENSITY_LEVELS: tuple[int, ...] = (1, 2, 3, 4)
SITUATIONS: tuple[int, ...] = (1, 2, 3, 4)
SPLITS: tuple[str, ...] = ("train", "test")
NUM_FOLDS = 5
VIDEO_EXTENSIONS: tuple[str, ...] = (".mov", ".mp4")
AUDIO_SAMPLING_RATE = 16_000


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One of the 36 mutually exclusive answers: a single emotion, or a pair with its saliences (percent)."""

    emotions: tuple[str, ...]
    salience: tuple[int, ...]

    @property
    def name(self) -> str:
        """``ang`` for a single emotion, ``mix_ang_hap_70_30`` for a blend (the clip-name spelling)."""
        if len(self.emotions) == 1:
            return self.emotions[0]
        return "mix_{}_{}_{}_{}".format(*self.emotions, *self.salience)

    @property
    def is_blend(self) -> bool:
        return len(self.emotions) == 2

    def as_prediction(self) -> list[dict]:
        """The challenge's ``[{"emotion", "salience"}]`` form."""
        return [{"emotion": e, "salience": float(s)} for e, s in zip(self.emotions, self.salience)]


OUTCOMES: tuple[Outcome, ...] = tuple(Outcome((e,), (100,)) for e in EMOTIONS) + tuple(
    Outcome(pair, levels) for pair in BLEND_PAIRS for levels in SALIENCE_LEVELS
)
OUTCOME_NAMES: tuple[str, ...] = tuple(o.name for o in OUTCOMES)
#: The 16 presence outcomes: six single emotions and ten pairs.
PRESENCE_NAMES: tuple[str, ...] = EMOTIONS + tuple(f"{a}+{b}" for a, b in BLEND_PAIRS)


def canonical_label(emotions: Sequence[str], salience: Sequence[float]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Put a label in canonical order (pair order of the clip names) with integer percent saliences."""
    pairs = sorted(zip(emotions, salience), key=lambda item: EMOTIONS.index(item[0]))
    return tuple(e for e, _ in pairs), tuple(int(round(float(s))) for _, s in pairs)


def outcome_index(emotions: Sequence[str], salience: Sequence[float]) -> int:
    """Index into ``OUTCOMES`` of a label given in any order; raises ``ValueError`` for a label outside the 36."""
    key = Outcome(*canonical_label(emotions, salience))
    try:
        return OUTCOMES.index(key)
    except ValueError:
        raise ValueError(f"not one of the 36 BLEMORE outcomes: emotions={list(emotions)} salience={list(salience)}")


def presence_name(emotions: Sequence[str]) -> str:
    """One of the 16 presence outcomes: ``hap`` or ``ang+hap``."""
    return "+".join(sorted(emotions, key=EMOTIONS.index))


def presence_vector(emotions: Iterable[str]) -> list[float]:
    """Multi-hot over ``EMOTIONS``."""
    present = set(emotions)
    return [1.0 if e in present else 0.0 for e in EMOTIONS]


def soft_target(emotions: Sequence[str], salience: Sequence[float]) -> list[float]:
    """The paper's KL target over ``EMOTIONS``: saliences as proportions (a single emotion gets 1.0)."""
    target = [0.0] * len(EMOTIONS)
    for e, s in zip(emotions, salience):
        target[EMOTIONS.index(e)] = float(s) / 100.0
    return target


# ---------------------------------------------------------------------------------------------------------------
# Clip-name grammar: A102_ang_int1_ver1, A55_neu_sit2_ver1, A411_mix_ang_hap_30_70_ver1, test_0001
# ---------------------------------------------------------------------------------------------------------------

_CODES = "|".join(EMOTIONS)
_LABELLED_NAME = re.compile(
    rf"^(?P<actor>A\d+)_(?:"
    rf"(?P<single>{'|'.join(BLENDABLE_EMOTIONS)})_int(?P<intensity>\d+)"
    rf"|neu_sit(?P<situation>\d+)"
    rf"|mix_(?P<first>{_CODES})_(?P<second>{_CODES})_(?P<s1>\d+)_(?P<s2>\d+)"
    rf")_ver(?P<version>\d+)$"
)
_TEST_NAME = re.compile(r"^test_\d+$")


@dataclasses.dataclass(frozen=True)
class ClipLabel:
    """Everything a labelled clip name says."""

    clip_id: str
    actor_id: str
    emotions: tuple[str, ...]
    salience: tuple[int, ...]
    intensity: int | None
    situation: int | None
    version: int

    @property
    def is_blend(self) -> bool:
        return len(self.emotions) == 2

    @property
    def outcome(self) -> int:
        return outcome_index(self.emotions, self.salience)


def clip_id_from_path(path: str | os.PathLike) -> str:
    """``/x/A102_ang_int1_ver1.mov`` → ``A102_ang_int1_ver1``; also strips a ``.mov``/``.mp4`` suffix from a key."""
    name = os.path.basename(os.fspath(path))
    stem, ext = os.path.splitext(name)
    return stem if ext.lower() in VIDEO_EXTENSIONS else name


def is_test_clip(clip_id: str) -> bool:
    """True for the anonymised, unlabelled test names (``test_0001``)."""
    return bool(_TEST_NAME.match(clip_id))


def parse_clip_name(name: str) -> ClipLabel:
    """Parse a labelled BLEMORE clip name (with or without extension); ``ValueError`` names anything else."""
    clip_id = clip_id_from_path(name)
    match = _LABELLED_NAME.match(clip_id)
    if match is None:
        raise ValueError(f"{name!r} is not a BLEMORE clip name (expected e.g. A102_ang_int1_ver1, "
                         "A55_neu_sit2_ver1 or A411_mix_ang_hap_30_70_ver1)")
    g = match.groupdict()
    intensity = situation = None
    if g["single"]:
        emotions, salience = (g["single"],), (100,)
        intensity = int(g["intensity"])
        if intensity not in INTENSITY_LEVELS:
            raise ValueError(f"{name!r}: intensity int{intensity} is not one of int1-int4")
    elif g["situation"]:
        emotions, salience = ("neu",), (100,)
        situation = int(g["situation"])
        if situation not in SITUATIONS:
            raise ValueError(f"{name!r}: situation sit{situation} is not one of sit1-sit4")
    else:
        emotions, salience = (g["first"], g["second"]), (int(g["s1"]), int(g["s2"]))
        if emotions not in BLEND_PAIRS:
            raise ValueError(f"{name!r}: {emotions[0]}+{emotions[1]} is not one of the ten blend pairs "
                             "(neutral never blends; pairs are written in alphabetical order)")
        if salience not in SALIENCE_LEVELS:
            raise ValueError(f"{name!r}: salience {salience[0]}/{salience[1]} is not 50/50, 70/30 or 30/70")
    return ClipLabel(clip_id, g["actor"], emotions, salience, intensity, situation, int(g["version"]))


# ---------------------------------------------------------------------------------------------------------------
# Errors and shipped reference data
# ---------------------------------------------------------------------------------------------------------------


class BlemoreError(Exception):
    """A problem with the user's input, reported as one line (naming the file or clip) without a traceback."""


def reference_path(name: str) -> Path:
    """A file shipped in ``blemore_toolkit/reference`` (the clip manifest, the challenge's submission template)."""
    package = importlib.util.find_spec("blemore_toolkit")
    return Path(package.origin).parent / "reference" / name


@dataclasses.dataclass(frozen=True)
class ManifestEntry:
    clip_id: str
    split: str
    fold: int | None


def load_manifest(path: str | os.PathLike | None = None) -> dict[str, ManifestEntry]:
    """The 3,050 real clip names with their split and fold, keyed by clip id."""
    path = Path(path) if path is not None else reference_path("blemore_manifest.csv")
    with open(path, newline="") as f:
        return {
            row["filename"]: ManifestEntry(row["filename"], row["split"], int(row["fold"]) if row["fold"] else None)
            for row in csv.DictReader(f)
        }


# ---------------------------------------------------------------------------------------------------------------
# Command line: `blemore COMMAND ...`. Each command lives in a module that defines
# `add_<command>_arguments(parser)` and `run_<command>(args) -> int | None`; only the chosen module is imported.
# ---------------------------------------------------------------------------------------------------------------

COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("blemore_toolkit.synth", "write a synthetic BLEMORE download (clips, metadata, test answer key)"),
    "prepare": ("blemore", "turn a download into a Hub-native dataset folder that load_dataset reads"),
    "score": ("blemore_toolkit.scoring", "score a challenge submission against references"),
    "validate": ("blemore_toolkit.scoring", "check a submission against the test clips before upload"),
    "zip": ("blemore_toolkit.scoring", "write the challenge upload zip from a predictions JSON"),
    "baseline": ("blemore_toolkit.baselines", "the paper's trivial most-frequent baselines per fold and test"),
    "train": ("blemore_toolkit.training", "fine-tune a BLEMORE model with the Trainer"),
    "predict": ("blemore_toolkit.prediction", "write a challenge submission from a trained model"),
    "push": ("blemore_toolkit.hub", "push a prepared dataset folder to the Hub"),
    "features": ("blemore_toolkit.features", "extract encoder features into a dataset config"),
    "demo": ("blemore_toolkit.demo", "synth, prepare, train, predict and score, end to end on CPU"),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
        print("usage: blemore COMMAND [options]   (blemore COMMAND --help for a command's options)\n\ncommands:")
        print("\n".join(lines))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nblemore: error: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    module_name, help_ = COMMANDS[command]
    module = sys.modules[__name__] if module_name == "blemore" else importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"blemore {command}", description=help_)
    getattr(module, f"add_{command}_arguments")(parser)
    args = parser.parse_args(rest)
    try:
        return int(getattr(module, f"run_{command}")(args) or 0)
    except BlemoreError as error:
        print(f"blemore {command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"blemore {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
