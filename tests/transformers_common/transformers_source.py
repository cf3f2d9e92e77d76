"""Find transformers' own common model tests (`ModelTesterMixin`, `ConfigTester`) in its source release.

The tests are not part of the installed wheel: `.ci/transformers_common.sh` downloads the source release of the
installed version from the package registry and unpacks its `tests/` folder under `.venv/transformers-src/`
(`BLEMORE_TRANSFORMERS_SOURCE` may point elsewhere). The folder is imported as the package `transformers_tests`.

The 5.24.0 source release holds `tests/test_modeling_common.py` and `tests/test_configuration_common.py`, but not
three modules they import (`tests/exporters/`, `tests/generation/`, `tests/utils/` are left out of it), nor the
empty `tests/__init__.py`. Where a module is missing, a stand-in of ours takes its place (see `MISSING_MODULES`); a
release that ships them uses its own.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
#: Set to "required" (as `.ci/run` does) to fail instead of skip when the source release is absent.
REQUIRED_VARIABLE = "BLEMORE_TRANSFORMERS_COMMON"
SOURCE_VARIABLE = "BLEMORE_TRANSFORMERS_SOURCE"
PACKAGE = "transformers_tests"


def _export_mixin():
    class ExportTesterMixin:
        """Stand-in: transformers' export tests are not in its source release. BLEMORE's own export test is
        tests/test_modeling_conventions.py::test_torch_export."""

    return {"ExportTesterMixin": ExportTesterMixin}


def _generation_mixin():
    class GenerationTesterMixin:
        """Stand-in: BLEMORE models do not generate; ModelTesterMixin only checks that testers of models that
        cannot generate do not inherit the real one."""

    return {"GenerationTesterMixin": GenerationTesterMixin}


def _configuration_kwargs():
    # Read by ConfigTester.check_config_arguments_init only, which returns before using it for composite configs
    # (those with sub_configs), as BlemoreConfig is.
    return {"config_common_kwargs": {}}


#: module (relative to tests/) → what our stand-in provides, used only when the release lacks the file.
MISSING_MODULES = {
    "exporters.test_export": _export_mixin,
    "generation.test_utils": _generation_mixin,
    "utils.test_configuration_utils": _configuration_kwargs,
}


def transformers_version() -> str:
    import transformers

    return transformers.__version__


def source_tests_folder() -> Path:
    given = os.environ.get(SOURCE_VARIABLE)
    if given:
        return Path(given) / "tests"
    return REPOSITORY / ".venv" / "transformers-src" / f"transformers-{transformers_version()}" / "tests"


def absent_reason() -> str | None:
    """Why the common tests cannot run here (None when they can)."""
    folder = source_tests_folder()
    wanted = [folder / "test_modeling_common.py", folder / "test_configuration_common.py"]
    if all(path.is_file() for path in wanted):
        return None
    return (f"transformers' source release {transformers_version()} is not unpacked at {folder.parent} "
            "(run `bash .ci/transformers_common.sh` to fetch it)")


def load_common_tests():
    """`(ModelTesterMixin, ConfigTester, module)` from the unpacked source release."""
    folder = source_tests_folder()
    # transformers' repository has an empty tests/__init__.py, which test_configuration_common.py opens (through
    # direct_transformers_import); the source release leaves it out.
    init = folder / "__init__.py"
    if not init.is_file():
        init.write_text("")
    if PACKAGE not in sys.modules:
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(folder)]
        sys.modules[PACKAGE] = package
        for dotted, make in MISSING_MODULES.items():
            parts = dotted.split(".")
            if (folder.joinpath(*parts[:-1]) / f"{parts[-1]}.py").is_file():
                continue
            for depth in range(1, len(parts)):
                name = ".".join([PACKAGE, *parts[:depth]])
                if name not in sys.modules:
                    sub = types.ModuleType(name)
                    sub.__path__ = []
                    sys.modules[name] = sub
            module = types.ModuleType(f"{PACKAGE}.{dotted}")
            module.__dict__.update(make())
            sys.modules[module.__name__] = module
    modeling = importlib.import_module(f"{PACKAGE}.test_modeling_common")
    configuration = importlib.import_module(f"{PACKAGE}.test_configuration_common")
    return modeling.ModelTesterMixin, configuration.ConfigTester, modeling
