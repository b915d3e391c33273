"""Imports flow one way (docs/architecture.md): a small AST check over every module, lazy imports included."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# module prefix -> prefixes it must never import
FORBIDDEN = {
    "align": ["reward_models", "safety_evals", "pipelines"],
    "align.model": ["align.data", "align.training", "align.sampling", "align.rl", "align.hub"],
    "align.data": ["align.model", "align.training", "align.sampling", "align.rl", "align.hub", "jax", "flax"],
    "align.training": ["align.rl", "align.sampling", "align.hub"],
    "align.sampling": ["align.rl", "align.training", "align.hub"],
    "align.rl": ["align.hub"],
    "reward_models": ["pipelines", "safety_evals"],
    "safety_evals": ["align.training", "align.rl", "reward_models", "pipelines"],
}


def _modules():
    for pkg in ("align", "reward_models", "safety_evals", "pipelines"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            yield name, path


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("module,path", list(_modules()), ids=lambda x: str(x) if isinstance(x, str) else "")
def test_imports_respect_layers(module, path):
    bad = []
    for imported in _imports(path):
        for owner, forbidden in FORBIDDEN.items():
            if _matches(module, owner):
                bad += [f"{module} imports {imported} (forbidden: {f})" for f in forbidden
                        if _matches(imported, f)]
    assert not bad, "\n".join(bad)
