#!/usr/bin/env bash
# Install napari-sam-peft from this checkout into ./.venv, with the system libraries Qt needs.
#
#   bash scripts/install.sh          # the plugin, napari, torch, micro_sam
#   bash scripts/install.sh --test   # plus the test tools and Xvfb (a virtual screen)
#
# Works on a fresh Debian/Ubuntu machine (uses sudo when not root) and on machines
# without apt-get (macOS, other Linux), where it only does the Python part.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

WITH_TESTS=0
[ "${1:-}" = "--test" ] && WITH_TESTS=1

QT_LIBS="libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 \
libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xfixes0 libegl1 libgl1 libdbus-1-3 libfontconfig1"
PACKAGES="$QT_LIBS"
[ "$WITH_TESTS" = 1 ] && PACKAGES="$PACKAGES xvfb xauth"

if command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  missing=""
  for pkg in $PACKAGES; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
  done
  if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
    missing="$missing python3-venv"
  fi
  command -v python3 >/dev/null 2>&1 || missing="$missing python3 python3-venv python3-pip"
  if [ -n "$missing" ]; then
    echo "Installing system packages:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
  fi
fi

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "napari-sam-peft needs Python 3.11 or newer; $("$PYTHON" --version) found. Set PYTHON=python3.11 (or newer)." >&2
  exit 2
fi

# The venv sees the interpreter's own packages, so a machine that already has torch
# (several GB) does not download it again.
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv --system-site-packages .venv
fi
EXTRAS=""
[ "$WITH_TESTS" = 1 ] && EXTRAS="[test]"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
started=$(date +%s)
if .venv/bin/python -c "import napari_sam_peft, torch, napari, micro_sam" >/dev/null 2>&1; then
  echo "Updating napari-sam-peft in ./.venv ..."
else
  echo "Installing napari-sam-peft, napari, PyTorch and micro_sam into ./.venv."
  echo "The first time this downloads about 3 GB and takes 5-15 minutes; pip shows what it is fetching."
fi
# pip's own progress (one line per package) unless CI asked for quiet logs
QUIET=""
[ "${CI:-}" = "true" ] && QUIET="--quiet"
set +e
.venv/bin/python -m pip install $QUIET --disable-pip-version-check --progress-bar off -e ".${EXTRAS}" 2>&1 \
  | grep -v -E --line-buffered "^(Requirement already satisfied|WARNING: Location|  Attempting|  Found existing|  Uninstalling|    Successfully uninstalled)"
status=${PIPESTATUS[0]}
set -e
[ "$status" = 0 ] || { echo "pip install failed (exit $status): see the messages above." >&2; exit 1; }
echo "napari-sam-peft is installed in $(pwd)/.venv ($(( $(date +%s) - started )) s)"
