#!/usr/bin/env bash
# Create (or reuse) .venv and install genfair into it, torch first.
#
# torch==2.13.0 goes in before anything that depends on torch: on this project's machines it is
# a CPU build on local disk, while an unpinned `torch` would pull a multi-GB CUDA build.
# The faces extra (dlib-bin and its models, 126 MB) gives `audit run --identity`; its tests skip without it.
# Re-running is cheap: the install is skipped while pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

stamp="$VENV/.genfair-installed"
want="torch==$TORCH_VERSION $(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

echo "setup: installing torch==$TORCH_VERSION, then genfair[dev,faces] (a few minutes the first time)"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[dev,faces]"
echo "$want" > "$stamp"
