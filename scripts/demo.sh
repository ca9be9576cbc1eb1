#!/usr/bin/env bash
# Install napari-sam-peft and open napari with the plugin, the bundled demo model and sample data.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install.sh
export QT_API=pyqt6
exec .venv/bin/napari-sam-peft demo "$@"
