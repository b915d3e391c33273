"""Imports flow one way (docs/architecture.md): a small AST check over every module, lazy imports included,
and the import-linter contracts of pyproject.toml (`lint-imports`, which follows the real import graph)."""

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("align", "reward_models", "safety_evals", "pipelines")

_ABOVE_SUITES = ["safety_evals.api", "safety_evals.cli"]
_REVIEW = ["safety_evals.review"]
_MODEL_CODE = ["jax", "flax", "transformers", "torch", "align.hub", "align.model", "align.sampling"]

# module prefix -> prefixes it must never import
FORBIDDEN = {
    "align": ["reward_models", "safety_evals", "pipelines"],
    "align.model": [
        "align.data",
        "align.training",
        "align.sampling",
        "align.rl",
        "align.hub",
        "align.reward",
    ],
    "align.data": [
        "align.model",
        "align.training",
        "align.sampling",
        "align.rl",
        "align.hub",
        "align.reward",
        "jax",
        "flax",
    ],
    "align.training": ["align.rl", "align.sampling", "align.hub", "align.reward"],
    "align.sampling": ["align.rl", "align.training", "align.hub", "align.reward"],
    "align.rl": ["align.hub"],
    # architecture.md: "`align.hub` sits on model and data" (align.load: model + tokenizer)
    "align.hub": ["align.training", "align.sampling", "align.rl", "align.reward"],
    # the reward model's home: model + data + LoRA merging (training); RL adapts it, never the reverse
    "align.reward": ["align.rl", "align.sampling", "align.hub"],
    "reward_models": ["pipelines", "safety_evals"],
    "safety_evals": ["align.training", "align.rl", "reward_models", "pipelines"],
    # Inside safety_evals (safety_evals/__init__.py): api and cli on top, suites/ below them, lm/,
    # results and bootstrap at the bottom; review/ reads results documents only.
    "safety_evals.api": ["safety_evals.cli", *_REVIEW],
    "safety_evals.suites": [*_ABOVE_SUITES, *_REVIEW],
    "safety_evals.lm": ["safety_evals.suites", *_ABOVE_SUITES, *_REVIEW],
    "safety_evals.results": ["safety_evals.suites", "safety_evals.lm", *_ABOVE_SUITES, *_REVIEW],
    "safety_evals.bootstrap": ["safety_evals.suites", "safety_evals.lm", *_ABOVE_SUITES, *_REVIEW],
    "safety_evals.review": ["safety_evals.suites", "safety_evals.lm", *_ABOVE_SUITES, *_MODEL_CODE],
    # the formulas both suites/ and review/ call: numpy only
    "safety_evals.metrics": [
        "align",
        "safety_evals.suites",
        "safety_evals.lm",
        "safety_evals.judges",
        "safety_evals.results",
        "safety_evals.bootstrap",
        *_ABOVE_SUITES,
        *_REVIEW,
        *_MODEL_CODE,
    ],
}


def _modules():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            yield name, path


def _is_module(name: str) -> bool:
    """Whether `name` is a module or package of this repository (align.training, align.hub, ...)."""
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of `from <level dots><name> import ...` written in `module`."""
    if level == 0:
        return name
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([name] if name else []))


def _imports(module: str, path: Path):
    """Every module `path` imports: `import a.b`, `from a import b` (a.b when b is a submodule, else a),
    relative imports resolved against `module`, and importlib.import_module / __import__ of a literal.
    A dynamic import of a computed name is yielded as "<dynamic>" so a rule can refuse it."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, is_package, node.level, node.module)
            yield source
            for alias in node.names:
                if alias.name != "*" and _is_module(f"{source}.{alias.name}"):
                    yield f"{source}.{alias.name}"
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called in ("import_module", "__import__") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    package = next(
                        (
                            k.value.value
                            for k in node.keywords
                            if k.arg == "package" and isinstance(k.value, ast.Constant)
                        ),
                        None,
                    )
                    name = arg.value
                    if name.startswith(".") and package:
                        dots = len(name) - len(name.lstrip("."))
                        name = _resolve(package, True, dots, name.lstrip(".") or None)
                    yield name
                else:
                    yield "<dynamic>"


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _violations(module: str, path: Path) -> list[str]:
    bad = []
    for imported in _imports(module, path):
        for owner, forbidden in FORBIDDEN.items():
            if _matches(module, owner):
                if imported == "<dynamic>":
                    bad.append(f"{module} imports a computed module name (cannot be checked against {owner})")
                bad += [
                    f"{module} imports {imported} (forbidden: {f})"
                    for f in forbidden
                    if _matches(imported, f)
                ]
    return bad


@pytest.mark.parametrize("module,path", list(_modules()), ids=lambda x: str(x) if isinstance(x, str) else "")
def test_imports_respect_layers(module, path):
    bad = _violations(module, path)
    assert not bad, "\n".join(bad)


def test_the_checker_sees_every_import_form(tmp_path):
    """Each form below names a forbidden module; the old checker (node.module only, level 0) missed all
    but the first."""
    (tmp_path / "align" / "model").mkdir(parents=True)
    path = tmp_path / "align" / "model" / "probe.py"
    path.write_text(
        "import align.training.loop\n"
        "from align import training\n"  # a submodule imported by name
        "from .. import hub\n"  # relative, two levels up
        "from ..sampling.sampler import generate\n"
        "import importlib\n"
        "importlib.import_module('align.rl.ppo')\n"
        "importlib.import_module('..data', package='align.model')\n"
        "__import__(name)\n"
    )
    found = list(_imports("align.model.probe", path))
    assert found[0] == "align.training.loop"
    for name in (
        "align.training",
        "align.hub",
        "align.sampling.sampler",
        "align.rl.ppo",
        "align.data",
        "<dynamic>",
    ):
        assert name in found, (name, found)
    assert "align.load" not in list(_imports("align.rl.x", _write(tmp_path, "from align import load\n")))
    bad = _violations("align.model.probe", path)
    assert len([b for b in bad if "forbidden" in b]) == 6 and any("computed module name" in b for b in bad)


def test_safety_evals_wings_are_checked(tmp_path):
    """lm/ must not import suites/, suites/ must not import review/, review/ must not load models."""
    cases = {
        "safety_evals.lm.probe": ("from safety_evals.suites import data\n", ["safety_evals.suites"]),
        "safety_evals.suites.probe": ("from safety_evals.review import gate\n", ["safety_evals.review"]),
        "safety_evals.review.probe": (
            "import torch\nfrom safety_evals.lm import jax_lm\nfrom safety_evals import api\n",
            ["torch", "safety_evals.lm", "safety_evals.api"],
        ),
        "safety_evals.results": ("from safety_evals.lm.protocol import TokenScores\n", ["safety_evals.lm"]),
        "safety_evals.metrics": (
            "import jax\nfrom safety_evals.results import Metric\n",
            ["jax", "safety_evals.results"],
        ),
    }
    for module, (text, forbidden) in cases.items():
        bad = _violations(module, _write(tmp_path, text))
        assert {b.rsplit("forbidden: ", 1)[1].rstrip(")") for b in bad} == set(forbidden), (module, bad)
    assert not _violations("safety_evals.api", _write(tmp_path, "from safety_evals.suites import bbq\n"))
    # review recomputes metrics with the suites' own formulas, from the bottom layer
    assert not _violations("safety_evals.review.x", _write(tmp_path, "from safety_evals import metrics\n"))


def _write(tmp_path, text):
    path = tmp_path / "snippet.py"
    path.write_text(text)
    return path


def test_import_linter_contracts_are_kept():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert len(contracts) >= 4
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run(
        [str(lint), "--no-cache", "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    for c in contracts:
        assert f"{c['name']} KEPT" in proc.stdout, proc.stdout[-4000:]
    assert f"Contracts: {len(contracts)} kept, 0 broken." in proc.stdout
