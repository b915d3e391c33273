"""pyproject.toml declares what the code imports: every third-party module imported anywhere (packages,
tests, scripts, benchmarks; lazy imports inside functions included) belongs to a distribution named in
`dependencies` or an extra, and what the four packages import at module level is a core dependency
(`pip install -e .` must import them), except in the one module that adapts an extra."""

import ast
import functools
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

from tests.paths import ROOT

PACKAGES = ("align", "reward_models", "safety_evals", "pipelines")
# the scripts' modules, imported by name with their folder on sys.path (e.g. scripts/lm_eval_tasks.py)
SCRIPTS = {f.stem for d in ("scripts", "benchmarks") for f in (ROOT / d).glob("*.py")}
FIRST_PARTY = {*PACKAGES, "tests", "scripts", "benchmarks", *SCRIPTS}
# module -> the extra it adapts: imported only by the command that needs that extra
ADAPTERS = {"safety_evals/lm/lm_eval_model.py": "lm-eval"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> tuple[set[str], dict[str, set[str]]]:
    """(core distributions, {extra: distributions}) named in pyproject.toml, names normalised."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(reqs):
        return {_norm(re.match(r"[A-Za-z0-9._-]+", r).group()) for r in reqs}

    extras = {k: names(v) for k, v in project["optional-dependencies"].items()}
    return names(project["dependencies"]), extras


def third_party_imports(path: Path, module_level_only: bool = False) -> set[str]:
    """Top-level names of the non-stdlib, non-first-party modules `path` imports (a sibling module
    imported by name is first-party)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else ast.walk(tree)
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods = [node.module]
        else:
            continue
        for m in mods:
            top = m.split(".")[0]
            if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                if not (path.parent / f"{top}.py").exists():
                    out.add(top)
    return out


@functools.cache
def _installed() -> dict[str, list[str]]:
    return md.packages_distributions()  # reads every installed distribution's file list: once


def distributions(module: str) -> set[str]:
    """The installed distributions that provide top-level module `module`, names normalised."""
    return {_norm(d) for d in _installed().get(module, [])}


def python_files(*dirs: str) -> list[Path]:
    return [f for d in dirs for f in sorted((ROOT / d).rglob("*.py"))]


def test_every_imported_distribution_is_declared():
    core, extras = declared()
    everything = core.union(*extras.values())
    missing = {}
    for f in python_files(*PACKAGES, "tests", "scripts", "benchmarks"):
        for module in third_party_imports(f):
            dists = distributions(module)
            if not dists & everything:
                missing.setdefault(module, []).append(str(f.relative_to(ROOT)))
    assert not missing, f"imported but declared nowhere in pyproject.toml: {missing}"


def test_module_level_imports_of_the_packages_are_core_dependencies():
    core, extras = declared()
    wrong = {}
    for f in python_files(*PACKAGES):
        rel = str(f.relative_to(ROOT))
        allowed = core | extras.get(ADAPTERS.get(rel, ""), set())
        for module in third_party_imports(f, module_level_only=True):
            if not distributions(module) & allowed:
                wrong.setdefault(rel, []).append(module)
    assert not wrong, f"imported at module level but not a core dependency: {wrong}"


def test_the_checks_see_lazy_imports_and_sibling_scripts(tmp_path):
    (tmp_path / "helper.py").write_text("")
    (tmp_path / "m.py").write_text(
        "import os\nimport helper\nimport numpy\ndef f():\n    import sklearn.tree\n"
    )
    assert third_party_imports(tmp_path / "m.py") == {"numpy", "sklearn"}
    assert third_party_imports(tmp_path / "m.py", module_level_only=True) == {"numpy"}
    assert distributions("sklearn") == {"scikit-learn"} and distributions("yaml") == {"pyyaml"}
