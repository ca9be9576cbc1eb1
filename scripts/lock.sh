#!/usr/bin/env bash
# Refresh requirements-lock.txt: every package of the environment, at one version each, with the hashes of
# its files, for every platform and Python >= 3.11 (uv's universal resolution). scripts/install.sh installs
# exactly this set, so users and CI run what CI tested.
#
#   bash scripts/lock.sh                          # after editing pyproject.toml: keeps every pin that still fits
#   bash scripts/lock.sh --upgrade                # everything anew: the newest versions the ranges allow
#   bash scripts/lock.sh --upgrade-package NAME   # one package anew (repeatable)
#
# Then run the tests on the new set (bash scripts/test.sh installs it) and commit the lock with the change.
# `bash scripts/test.sh --newest` shows beforehand what --upgrade would bring.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install.sh --test >/dev/null  # uv comes with the test tools
# sam2 is a source distribution whose build imports torch: read its metadata against the venv's torch
# (no isolated build environment, which would download a second torch), without its CUDA extension
SAM2_BUILD_CUDA=0 exec .venv/bin/uv pip compile pyproject.toml --extra test --extra sam2 \
    --no-build-isolation-package sam2 --universal --fork-strategy fewest \
    --python-version 3.11 --generate-hashes --quiet --custom-compile-command "bash scripts/lock.sh" \
    --output-file requirements-lock.txt "$@"
