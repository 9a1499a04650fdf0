#!/usr/bin/env bash
# Install mmcv 2.1.0 with its compiled ops into the venv of $1 (default .venv); run from the repo root.
#
# mmcv 2.1.0 has no wheel for Python 3.11 / torch 2.14, so pip builds the sdist; two fixes make that
# build work (see README, "Install"): torch 2.14's headers need C++20 while mmcv's setup.py asks for
# C++17, and torch must be importable during the build (no build isolation), or setup.py silently
# builds a wheel without the ops. The built wheel is kept in a cache outside the repo, keyed by the
# mmcv, torch and Python versions, so later set-ups (and CI on the same machine) install it in seconds.
set -euo pipefail
PY="${1:-.venv}/bin/python"
MMCV=2.1.0
key=$("$PY" -c "import sys, torch; print(f'cp{sys.version_info[0]}{sys.version_info[1]}-torch{torch.__version__.split(\"+\")[0]}')")
cache="${PDARTS_WILD_CACHE:-$HOME/.cache/pdarts-wild}/mmcv-$MMCV-$key"
if ! ls "$cache"/mmcv-$MMCV-*.whl >/dev/null 2>&1; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    "$PY" -m pip download -q --no-deps --no-build-isolation --no-binary :all: -d "$work" "mmcv==$MMCV"
    tar -xzf "$work"/mmcv-$MMCV.tar.gz -C "$work"
    sed -i 's/-std=c++17/-std=c++20/g' "$work/mmcv-$MMCV/setup.py"
    echo "building mmcv $MMCV with compiled ops (about 10-15 minutes on 2 cores, once per machine)..."
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" "$PY" -m pip wheel -q --no-build-isolation --no-deps -w "$work/wheel" "$work/mmcv-$MMCV"
    mkdir -p "$cache"
    cp "$work"/wheel/mmcv-*.whl "$cache"/
fi
# From the cached wheel, with its dependencies resolved under the project's constraints.
"$PY" -m pip install -q -c constraints.txt --find-links "$cache" "mmcv==$MMCV"
"$PY" -c "from mmcv.ops import nms, RoIAlign" || { echo "mmcv was installed without its compiled ops" >&2; exit 1; }
