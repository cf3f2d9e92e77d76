#!/usr/bin/env bash
# transformers' own common model tests (ModelTesterMixin, ConfigTester) ship in its source release, not in its wheel.
# Fetch the source release of the installed transformers from the package registry and unpack its tests/ under
# .venv/transformers-src/ (git-ignored), where tests/transformers_common/ finds it. Idempotent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash run setup
version=$(.venv/bin/python -c "import transformers; print(transformers.__version__)")
target=.venv/transformers-src/transformers-$version
if [ ! -f "$target/tests/test_modeling_common.py" ]; then
  echo "transformers_common: fetching the transformers $version source release" >&2
  download=$(mktemp -d)
  trap 'rm -rf "$download"' EXIT
  .venv/bin/python -m pip download -q --no-binary :all: --no-deps "transformers==$version" -d "$download"
  mkdir -p .venv/transformers-src
  tar -xzf "$download/transformers-$version.tar.gz" -C .venv/transformers-src "transformers-$version/tests"
fi
for file in test_modeling_common.py test_configuration_common.py; do
  [ -f "$target/tests/$file" ] || { echo "transformers_common: $target/tests/$file is missing" >&2; exit 1; }
done
