#!/usr/bin/env bash
# Run the whole test suite headless: installs what it needs (Xvfb included) into a fresh ./.venv from
# requirements-lock.txt, checks lint, format, core's types and the declared dependencies, then runs pytest
# under a virtual X server. Extra arguments go to pytest.
#   --quick    the edit-test loop: skip the tests marked slow (processes, training, real models)
#   --newest   the next break, before a user finds it: install the newest versions pyproject.toml's ranges
#              allow into ./.venv-newest (ignoring the lock) and run the quick suite plus the export,
#              cluster and volume tests
# Tests run in parallel (pytest-xdist), one worker per core up to 4, each with its share of the cores
# for torch; "-n 0" as an extra argument runs them in one process.
set -euo pipefail
selection=()
venv=.venv
install=(--test)
case "${1:-}" in
    --quick) shift; selection=(-m "not slow") ;;
    --newest) shift; selection=(-m "not slow or export or cluster or volume"); venv=.venv-newest; install=(--newest) ;;
esac
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install.sh "${install[@]}"
if [ "$venv" = .venv ]; then
    # the habits that keep the code readable fail CI too (the newest mode looks for breaks a user meets)
    echo "Checking lint (ruff), format (ruff format) and the types of core and the session (mypy) ..."
    $venv/bin/ruff check src tests benchmarks scripts
    $venv/bin/ruff format --check src tests benchmarks scripts
    $venv/bin/mypy
fi
echo "Checking that every import of src/ is a declared dependency, and every dependency is used (deptry) ..."
$venv/bin/deptry src
export QT_API=pyqt6 PYTEST_QT_API=pyqt6
export MPLBACKEND=Agg
cores=$($venv/bin/python -c "import os; print(len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count())")
workers=$(( cores < 4 ? cores : 4 ))
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(( cores / workers > 0 ? cores / workers : 1 ))}"
exec xvfb-run -a -s "-screen 0 1600x1000x24" $venv/bin/python -m pytest -p no:cacheprovider -n "$workers" \
    --dist worksteal "${selection[@]}" "$@"
