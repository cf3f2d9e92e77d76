"""Register the pytest markers that transformers' common tests carry (the project runs with --strict-markers)."""

import re

from transformers_common import transformers_source

_BUILTIN = {"parametrize", "skip", "skipif", "xfail", "usefixtures", "filterwarnings", "slow"}


def pytest_configure(config):
    import transformers.testing_utils

    folder = transformers_source.source_tests_folder()
    sources = [transformers.testing_utils.__file__, folder / "test_modeling_common.py",
               folder / "test_configuration_common.py"]
    names = set()
    for path in sources:
        try:
            names.update(re.findall(r"\bmark\.([A-Za-z_][A-Za-z_0-9]*)", open(path, encoding="utf-8").read()))
        except OSError:  # the source release is absent: the tests are skipped (or fail, where required)
            continue
    for name in sorted(names - _BUILTIN):
        config.addinivalue_line("markers", f"{name}: a marker of transformers' own tests")
