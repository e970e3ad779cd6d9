#!/usr/bin/env bash
# Check the import contracts in pyproject.toml ([tool.importlinter]).
#
# import-linter needs `genfair` as a real folder on sys.path, but the editable install maps the
# top-level folders to `genfair.*` with an import hook; so lint a tree of links instead.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
tree=build/lint-imports
rm -rf "$tree"
mkdir -p "$tree/genfair"
for package in audit datasets models reports; do
    ln -s "$PWD/$package" "$tree/genfair/$package"
done
PYTHONPATH="$PWD/$tree" exec "$VENV/bin/lint-imports"
