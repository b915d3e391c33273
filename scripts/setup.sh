#!/usr/bin/env bash
# Fresh-machine set-up: a virtualenv in .venv with align and every extra the test suite uses (toxicity,
# reference, lm-eval, dev; see pyproject.toml), plus Debian's chromium for the dashboard's browser test.
# Safe to re-run: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# One pip call for all extras, so their one torch spec (torch==2.13.0, the CPU wheel) holds for all of them.
.venv/bin/python -m pip install -q -e '.[toxicity,reference,lm-eval,wandb,dev]'
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "setup: could not install chromium; the browser test will be skipped" >&2
fi
echo "setup: ok ($(.venv/bin/python -c 'import jax, flax; print("jax", jax.__version__, "flax", flax.__version__)'))"
