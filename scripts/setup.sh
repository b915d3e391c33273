#!/usr/bin/env bash
# Fresh-machine set-up: a virtualenv in .venv with align and its test/torch extras, plus Debian's chromium
# for the dashboard's browser test. Safe to re-run: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch==2.13.0 is the CPU wheel (pinned in the torch extra); any other torch spec pulls a CUDA build.
.venv/bin/python -m pip install -q -e '.[torch,dev]'
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "setup: could not install chromium; the browser test will be skipped" >&2
fi
echo "setup: ok ($(.venv/bin/python -c 'import jax, flax; print("jax", jax.__version__, "flax", flax.__version__)'))"
