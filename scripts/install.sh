#!/usr/bin/env bash
# Install napari-sam-peft from this checkout, with the system libraries Qt needs.
#
#   bash scripts/install.sh            # ./.venv: the versions in requirements-lock.txt, which CI tests
#   bash scripts/install.sh --test     # the same, plus Xvfb (a virtual screen) for the tests
#   bash scripts/install.sh --newest   # ./.venv-newest: the newest versions pyproject.toml's ranges allow,
#                                      # ignoring the lock (scripts/test.sh --newest runs the tests on it)
#
# The virtual environment never sees the interpreter's own packages: what runs is what the lock (or, with
# --newest, pip's resolution) says, as on a user's fresh machine. Works on a fresh Debian/Ubuntu machine
# (uses sudo when not root) and on machines without apt-get (macOS, other Linux), where it only does the
# Python part. Refresh the lock with scripts/lock.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

WITH_TESTS=0
NEWEST=0
for arg in "$@"; do
  case "$arg" in
    --test) WITH_TESTS=1 ;;
    --newest) NEWEST=1; WITH_TESTS=1 ;;
    *) echo "install.sh: unknown option $arg (use --test or --newest)" >&2; exit 2 ;;
  esac
done
LOCK=requirements-lock.txt
VENV=.venv
[ "$NEWEST" = 1 ] && VENV=.venv-newest

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

# A venv made by an earlier install.sh saw the interpreter's own packages (--system-site-packages), so it
# ran on whatever this machine carries: make it anew.
if [ -f "$VENV/pyvenv.cfg" ] && grep -q "include-system-site-packages = true" "$VENV/pyvenv.cfg"; then
  echo "Making $VENV anew: it saw this machine's own Python packages, not the tested ones."
  rm -rf "$VENV"
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
# pip's own progress (one line per package) unless CI asked for quiet logs
QUIET=()
[ "${CI:-}" = "true" ] && QUIET=(--quiet)
EXTRAS=""
[ "$WITH_TESTS" = 1 ] && EXTRAS="[test]"

# the lock and pyproject.toml this venv was installed from: nothing to do when neither changed
stamp_file="$VENV/.napari-sam-peft-installed"
stamp="$(cat "$LOCK" pyproject.toml | "$PYTHON" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
if [ "$NEWEST" = 0 ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ] \
    && "$VENV/bin/python" -c "import napari_sam_peft" >/dev/null 2>&1; then
  echo "napari-sam-peft is installed in $(pwd)/$VENV (the versions of $LOCK)."
  exit 0
fi

"${PIP[@]}" install --quiet --upgrade pip >/dev/null 2>&1 || true
started=$(date +%s)
if "$VENV/bin/python" -c "import torch, napari, micro_sam" >/dev/null 2>&1; then
  echo "Updating $VENV ..."
else
  echo "Installing napari-sam-peft, napari, PyTorch and micro_sam into ./$VENV."
  echo "The first time this downloads about 3 GB and takes 5-15 minutes; pip shows what it is fetching."
fi

run_pip() {
  set +e
  "${PIP[@]}" install "${QUIET[@]}" --progress-bar off "$@" 2>&1 \
    | grep -v -E --line-buffered "^(Requirement already satisfied|WARNING: Location|  Attempting|  Found existing|  Uninstalling|    Successfully uninstalled)"
  local status=${PIPESTATUS[0]}
  set -e
  [ "$status" = 0 ] || { echo "pip install failed (exit $status): see the messages above." >&2; exit 1; }
}

if [ "$NEWEST" = 1 ]; then
  # What pip gives a user today: the newest releases the ranges allow. PIP_CONSTRAINT=/dev/null sets aside
  # any constraints file this machine's pip configuration names (some machines cap torch there).
  PIP_CONSTRAINT=/dev/null run_pip --upgrade --upgrade-strategy eager -e ".${EXTRAS}"
  PIP_CONSTRAINT=/dev/null SAM2_BUILD_CUDA=0 run_pip --upgrade --no-build-isolation "sam2>=1.1"
  echo "Resolved (newest the ranges allow):"
  "${PIP[@]}" list 2>/dev/null | grep -i -E "^(pydantic|bioimageio\.spec|bioimageio\.core|torch|torchvision|napari|micro.sam|dask|distributed|zarr|numpy) " \
    | sed 's/^/  /'
else
  # exactly the tested versions, each checked against the lock's hashes; the test tools come with them
  # (one lock for users and CI: the set a user gets is the set CI ran)
  # sam2 (SAM 2.1) is a source distribution that builds against torch: everything else first, then sam2
  # against the installed torch, without its optional CUDA extension (see pyproject.toml)
  awk -v rest="$VENV/.lock-rest.txt" -v sam2="$VENV/.lock-sam2.txt" \
    'BEGIN { out = rest } /^[A-Za-z0-9]/ { out = ($1 ~ /^sam2==/) ? sam2 : rest } { print > out }' "$LOCK"
  run_pip --require-hashes -r "$VENV/.lock-rest.txt"
  SAM2_BUILD_CUDA=0 run_pip --require-hashes --no-deps --no-build-isolation -r "$VENV/.lock-sam2.txt"
  run_pip --quiet --no-deps -e .
  echo "$stamp" > "$stamp_file"
fi
echo "napari-sam-peft is installed in $(pwd)/$VENV ($(( $(date +%s) - started )) s)"
