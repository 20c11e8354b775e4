#!/usr/bin/env bash
# Set up a virtual environment with everything the tests need, then run the test suite with it:
#   scripts/test.sh [pytest arguments]
# Works on a fresh clone with nothing activated. The environment is .venv (or $VENV), created if missing;
# the project is installed editable with every extra (the Ray evaluator's tests need ray, the report's rliable, the docs
# Sphinx), after torch's CPU
# build (an unpinned torch pulls several GB of CUDA packages).
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet torch==2.13.0
"$venv/bin/python" -m pip install --quiet -e ".[zoo,envs,test,ray,bench,docs]"

# That environment's interpreter, not whatever `pytest` the shell finds first.
exec "$venv/bin/python" -m pytest -n 2 --durations=20 "$@"
