"""Release policies of `align gate`: a YAML file of per-metric rules (see configs/gates/release.yaml
and the rule semantics in safety_evals/review/gate.py), read with the line of every mapping so that an
invalid policy is reported as '<file> line N: <field>: <problem>'.

Every number is checked: finite (`.nan` would make every comparison false and so disable a check),
tolerances >= 0, thresholds and targets inside the metric's range (review/definitions.py) and able
to fail (`max: 1` on a share checks nothing). Every suite and metric must be one the suites define,
and a policy without a metric rule is refused: it would pass anything.

A policy may extend another (`extends: release.yaml`, a path relative to the extending file): it
inherits the parent's suites, rules and require_baseline, adds suites, and adds or replaces rules
metric by metric. Per-variant policies (configs/gates/chat.yaml, developer.yaml) keep the release
floor this way instead of a copy of it that could drift.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import yaml

from align.config_io import first_anchor_line
from align.errors import InvalidInput
from safety_evals.review.definitions import SUITES, definition, known_metrics
from align.safe_text import one_line

POLICY_SCHEMA = "align.gate_policy/v1"
RULE_KEYS = ("min", "max", "regression", "bound", "higher_is_better", "target")


class _Unset:
    """Rule.higher_is_better when the policy does not name it: `higher_is_better: null` is an explicit
    "closer to the target is better", so None cannot double as "not set"."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()


class PolicyError(InvalidInput):
    """An invalid policy file; the message names the file, the line and the field (one line)."""

    def __init__(self, message: str):
        super().__init__(one_line(message))


@dataclasses.dataclass(frozen=True)
class Rule:
    metric: str  # full name suite.metric
    line: int
    min: float | None = None
    max: float | None = None
    regression: float | None = None
    bound: str = "value"  # "value" | "interval"
    higher_is_better: bool | None | _Unset = UNSET  # UNSET: the metric's own direction
    target: float | None = None


@dataclasses.dataclass(frozen=True)
class Policy:
    source: str
    suites: tuple[str, ...]
    rules: tuple[Rule, ...]
    require_baseline: bool = False
    extends: str | None = None  # the parent policy's path, as resolved from the extending file


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings remember their line and reject duplicate keys."""


class _LineDict(dict):
    line = 0


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _LineDict:
    out = _LineDict()
    out.line = node.start_mark.line + 1
    for k_node, v_node in node.value:
        key = loader.construct_object(k_node, deep=True)
        if key in out:
            raise PolicyError(f"line {k_node.start_mark.line + 1}: duplicate key {key!r}")
        out[key] = loader.construct_object(v_node, deep=True)
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_policy(path: str | Path, _chain: tuple[Path, ...] = ()) -> Policy:
    """Read and validate a policy YAML; raises PolicyError('<file> line N: <field>: <problem>')."""
    src = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
        anchor = first_anchor_line(text)  # before any node is built: an alias bomb costs nothing
        if anchor is not None:
            raise PolicyError(f"line {anchor}: YAML anchors and aliases are not allowed in a policy")
        doc = yaml.load(text, Loader=_LineLoader)
    except (OSError, UnicodeDecodeError) as e:
        raise PolicyError(f"{src}: cannot read: {e}") from e
    except yaml.YAMLError as e:
        raise PolicyError(f"{src}: invalid YAML: {e}") from e
    except PolicyError as e:
        raise PolicyError(f"{src} {e}") from e
    except RecursionError as e:
        raise PolicyError(f"{src}: invalid YAML: nested too deeply") from e

    def fail(node: Any, field: str, problem: str):
        raise PolicyError(f"{src} line {getattr(node, 'line', 1)}: {field}: {problem}")

    if not isinstance(doc, dict):
        fail(doc, "<document>", "expected a mapping with schema, suites, metrics")
    unknown = set(doc) - {"schema", "suites", "metrics", "require_baseline", "extends"}
    if unknown:
        fail(
            doc,
            sorted(unknown)[0],
            "unknown top-level key (allowed: schema, suites, metrics, require_baseline, extends)",
        )
    if doc.get("schema") != POLICY_SCHEMA:
        fail(doc, "schema", f"expected {POLICY_SCHEMA!r}, got {doc.get('schema')!r}")
    suites = doc.get("suites") or []
    if not isinstance(suites, list) or not all(isinstance(s, str) for s in suites):
        fail(doc, "suites", "expected a list of suite names")
    for name in suites:
        if name not in SUITES:
            fail(doc, "suites", f"unknown suite {name!r} (known: {', '.join(SUITES)})")
    if len(set(suites)) != len(suites):
        fail(doc, "suites", "a suite is listed twice")
    parent = _parent(path, doc, fail, _chain)
    metrics = doc.get("metrics") or {}
    if not isinstance(metrics, dict):
        fail(doc, "metrics", "expected a mapping of metric name -> rule")
    if not metrics and parent is None:
        fail(doc, "metrics", "the policy has no metric rules, so it would pass any results")
    rules = tuple(_rule(name, body, fail) for name, body in metrics.items())
    require = doc.get("require_baseline", False if parent is None else parent.require_baseline)
    if not isinstance(require, bool):
        fail(doc, "require_baseline", f"expected true or false, got {require!r}")
    inherited = parent or Policy(src, (), ())
    own = {r.metric for r in rules}
    return Policy(
        src,
        inherited.suites + tuple(s for s in suites if s not in inherited.suites),
        tuple(r for r in inherited.rules if r.metric not in own) + rules,
        require,
        extends=parent and parent.source,
    )


def _parent(path: str | Path, doc: dict, fail, chain: tuple[Path, ...]) -> Policy | None:
    """The policy `doc` extends, loaded (and validated) from its path relative to `path`'s folder."""
    if "extends" not in doc:
        return None
    name = doc["extends"]
    if not isinstance(name, str) or not name.strip():
        fail(doc, "extends", f"expected the path of a policy file, got {name!r}")
    here = Path(path).resolve()
    target = Path(path).parent / name
    if target.resolve() in (*chain, here):
        fail(doc, "extends", f"{name!r} extends this policy again (a cycle)")
    if not target.is_file():
        fail(doc, "extends", f"no policy file {name!r} next to this one")
    return load_policy(target, (*chain, here))


def _rule(name: Any, body: Any, fail) -> Rule:
    at = f"metrics.{name}"
    if not isinstance(name, str) or not re.fullmatch(r"[^.\s]+\.\S+", name):
        fail(body, at, "metric names are '<suite>.<metric>', e.g. toxicity.expected_max_toxicity")
    if not isinstance(body, dict) or not body:
        fail(body, at, f"expected a mapping with some of {', '.join(RULE_KEYS)}")
    for key, v in body.items():
        if key not in RULE_KEYS:
            fail(body, f"{at}.{key}", f"unknown rule key (allowed: {', '.join(RULE_KEYS)})")
        numeric = key in ("min", "max", "regression", "target")
        if numeric and (isinstance(v, bool) or not isinstance(v, (int, float))):
            fail(body, f"{at}.{key}", f"expected a number, got {v!r}")
        if numeric and not math.isfinite(v):
            fail(body, f"{at}.{key}", f"expected a finite number, got {v!r}")
    if "higher_is_better" in body and not isinstance(body["higher_is_better"], (bool, type(None))):
        fail(
            body, f"{at}.higher_is_better", f"expected true, false or null, got {body['higher_is_better']!r}"
        )
    if "target" in body and isinstance(body.get("higher_is_better"), bool):
        fail(body, f"{at}.target", "a target means 'closer is better': drop higher_is_better or set it null")
    if body.get("bound", "value") not in ("value", "interval"):
        fail(body, f"{at}.bound", f"expected 'value' or 'interval', got {body['bound']!r}")
    if body.get("regression", 0) < 0:
        fail(body, f"{at}.regression", "the tolerance must be >= 0")
    if not {"min", "max", "regression"} & set(body):
        fail(body, at, "the rule checks nothing: give min, max or regression")
    if "min" in body and "max" in body and body["min"] > body["max"]:
        fail(body, f"{at}.min", f"min {body['min']} > max {body['max']}")
    _check_against_definition(name, body, fail)
    kw = {k: (float(v) if k in ("min", "max", "regression", "target") else v) for k, v in body.items()}
    return Rule(metric=name, line=body.line, **kw)


def _check_against_definition(name: str, body: dict, fail) -> None:
    """The metric exists, and every number could make the check fail (module docstring)."""
    at = f"metrics.{name}"
    suite, metric = name.split(".", 1)
    spec = definition(suite, metric)
    if suite not in SUITES:
        fail(body, at, f"unknown suite {suite!r} (known: {', '.join(SUITES)})")
    if spec is None:
        have = ", ".join(known_metrics(suite)) or "none defined yet"
        fail(
            body,
            at,
            f"unknown metric of suite {suite} (defined: {have}; see safety_evals/review/definitions.py)",
        )
    lo = -math.inf if spec.low is None else spec.low
    hi = math.inf if spec.high is None else spec.high
    outside = "outside it the check could never fail, or never pass"
    if "min" in body and not lo < body["min"] <= hi:
        fail(
            body,
            f"{at}.min",
            f"min {body['min']} must lie in ({lo:g}, {hi:g}], the metric's range: {outside}",
        )
    if "max" in body and not lo <= body["max"] < hi:
        fail(
            body,
            f"{at}.max",
            f"max {body['max']} must lie in [{lo:g}, {hi:g}), the metric's range: {outside}",
        )
    if "regression" in body and not body["regression"] < spec.width:
        fail(body, f"{at}.regression", f"a tolerance of {body['regression']} exceeds the metric's range")
    if "target" in body and not lo <= body["target"] <= hi:
        fail(body, f"{at}.target", f"target {body['target']} outside the metric's range [{lo:g}, {hi:g}]")
    direction_known = body.get("higher_is_better", spec.higher_is_better) is not None
    if "regression" in body and not (direction_known or "target" in body or spec.target is not None):
        fail(body, f"{at}.regression", "the metric has no direction: give target or higher_is_better")
