"""Load a repository script (benchmarks/, scripts/) as a module, so tests can call its functions."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script(rel: str):
    """The module for ROOT/rel (e.g. "benchmarks/mfu.py"), executed once per call."""
    spec = importlib.util.spec_from_file_location(Path(rel).stem, ROOT / rel)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
