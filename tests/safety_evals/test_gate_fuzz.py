"""Fuzz: random mutations of valid results files, policies and training configs.

Only three outcomes may ever happen: a correct verdict (exit 0/1 agreeing with an independent
reading below), exit 2 with one line, or exit 1 with the failing checks named. Never a traceback, a
hang, or a pass of a document that a stricter reading would fail. Derandomized, so the counts are
the same on every run; OUTCOMES holds them (printed with -s).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pipelines.cli import main  # noqa: E402
from safety_evals.suites import hedging  # noqa: E402
from tests.safety_evals.conftest import DEFAULT_METRICS, RELEASE_EXTRA_METRICS, make_doc  # noqa: E402
from tests.safety_evals.gate_oracle import definition, expected_pass, strict_problems  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RELEASE = yaml.safe_load((ROOT / "configs" / "gates" / "release.yaml").read_text())
OUTCOMES: dict[str, Counter] = {"results": Counter(), "policy": Counter(), "config": Counter()}
FUZZ = settings(
    max_examples=400,
    derandomize=True,
    database=None,  # the counts in the report come from the same cases on every run
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# values that have broken readers before: extremes, wrong types, text that forges log lines
ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, -1, 1, 2, 10**30, -(10**30), 2**63, 0.5, -0.0, 1e-300, 1e308, -1e308]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**6), 10**6),
    st.sampled_from(
        ["", "ok", "failed", "x\nalign gate: PASS", "::set-output name=x::1", "##vso[task]", "\x1b[32m"]
    ),
    st.lists(st.integers(0, 3), max_size=3),
    st.dictionaries(st.sampled_from(["a", "value", "n"]), st.integers(0, 3), max_size=2),
)


def _base_docs() -> tuple[dict, dict]:
    """A candidate and a baseline that pass the release policy, with a real Wilson metric."""
    answerable = np.array([True] * 70 + [False] * 31)
    hedged = np.zeros(101, bool)
    hedged[70:95] = True  # 25 of 31 unanswerable hedged
    hedged[:8] = True  # 8 of 70 answerable hedged
    docs = []
    for run_id in ("cand", "base"):
        doc = make_doc(run_id=run_id, metrics={**DEFAULT_METRICS, **RELEASE_EXTRA_METRICS})
        doc["suites"]["hedging"]["data"]["n"] = 101
        doc["suites"]["hedging"]["metrics"] = {
            k: m.to_json() for k, m in hedging.metrics(answerable, hedged).items()
        }
        docs.append(doc)
    return docs[0], docs[1]


CAND, BASE = _base_docs()


def _paths(obj, prefix=()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


def _mutate(data, obj, *, allow_dup: bool) -> tuple[object, list[tuple]]:
    """1-3 random edits of `obj`; returns it and the keys to write twice (duplicates)."""
    obj, dups = copy.deepcopy(obj), []
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(obj)
        if not paths:
            break
        numbers = [
            p for p in paths if p[-1] in ("value", "ci_low", "ci_high", "n", "min", "max", "regression")
        ]
        if numbers and data.draw(st.booleans()):  # half the edits go to the numbers verdicts rest on
            paths = numbers
        path = data.draw(st.sampled_from(paths))
        parent = obj
        for k in path[:-1]:
            parent = parent[k]
        key, old = path[-1], parent[path[-1]]
        ops = (
            ["replace", "delete"]
            + (["nudge", "scale"] if _is_num(old) else [])
            + (["dup"] if allow_dup else [])
        )
        op = data.draw(st.sampled_from(ops))
        if op == "replace":
            parent[key] = data.draw(ODD)
        elif op == "delete":
            del parent[key]
        elif op == "nudge":
            parent[key] = old + data.draw(st.sampled_from([-0.05, -0.01, -1e-9, 1e-9, 0.01, 0.05, 1.0]))
        elif op == "scale":
            parent[key] = old * data.draw(st.sampled_from([-1, 0, 0.5, 2, 100]))
        elif isinstance(parent, dict):  # dup: the key appears twice, the first copy with another value
            dups.append((path[:-1], key, data.draw(ODD)))
    return obj, dups


FORGED = "boom\nalign gate: PASS (0 failed of 22 checks)\n::error::forged\n##vso[task.complete]"


def _plausible(data, doc) -> dict:
    """1-3 edits that keep the document valid, so the verdict itself is exercised: a gated metric
    moved inside its range with a consistent interval, provenance changed, a suite failed."""
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3))):
        full = data.draw(st.sampled_from(sorted(RELEASE["metrics"])))
        suite, name = full.split(".", 1)
        s = doc["suites"][suite]
        op = data.draw(st.sampled_from(["move", "move", "move", "provenance", "fail"]))
        if op == "move" and s["status"] == "ok":
            d = definition(suite, name)
            width = d.high - d.low
            v = data.draw(st.floats(d.low, d.high))
            lo = max(d.low, v - data.draw(st.floats(0, width / 5)))
            hi = min(d.high, v + data.draw(st.floats(0, width / 5)))
            s["metrics"][name].update(value=v, ci_low=lo, ci_high=hi)
        elif op == "provenance":
            edit = data.draw(st.sampled_from(["version", "sha", "limit", "template", "system", "judges"]))
            if edit == "version":
                s["version"] = "2"
            elif edit == "sha" and s.get("data"):
                s["data"]["sha256"] = "1"
            elif edit == "limit":
                doc["config"]["limit"] = data.draw(st.sampled_from([None, 50]))
            elif edit == "template":
                doc["config"]["chat_template"] = "gemma"
            elif edit == "system":
                doc["config"]["system_prompt"] = "be safe"
            else:
                s["judges"] = {"judge": {"name": "nli", "sha256": data.draw(st.sampled_from(["1", "2"]))}}
        elif op == "fail":
            doc["suites"][suite] = {"status": "failed", "version": "1", "error": FORGED, "metrics": {}}
    return doc


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _json_text(doc, dups) -> str:
    """JSON with the given keys written twice: a marker key, renamed in the text afterwards."""
    doc = copy.deepcopy(doc)
    for i, (path, key, value) in enumerate(dups):
        node = doc
        try:
            for k in path:
                node = node[k]
        except (KeyError, IndexError, TypeError):
            continue
        if isinstance(node, dict) and key in node:
            rest = {k: v for k, v in node.items()}
            node.clear()
            node[f"@DUP{i}@"] = value
            node.update(rest)
    text = json.dumps(doc, allow_nan=True)
    for i, (_, key, _) in enumerate(dups):
        text = text.replace(f'"@DUP{i}@"', json.dumps(str(key)))
    return text


def _gate(tmp: Path, cand_text: str, base_text: str, policy_text: str) -> tuple[int, str, str]:
    (tmp / "c.json").write_text(cand_text, encoding="utf-8", errors="surrogatepass")
    (tmp / "b.json").write_text(base_text, encoding="utf-8", errors="surrogatepass")
    (tmp / "p.yaml").write_text(policy_text, encoding="utf-8", errors="surrogatepass")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(
            ["gate", str(tmp / "c.json"), "--policy", str(tmp / "p.yaml"), "--baseline", str(tmp / "b.json")]
        )
    return rc, out.getvalue(), err.getvalue()


def _check_outcome(kind: str, rc: int, out: str, err: str) -> None:
    assert "Traceback" not in out + err
    if rc == 2:
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("align gate: ") and out == "", err
        OUTCOMES[kind]["exit 2, one line"] += 1
        return
    assert rc in (0, 1), (rc, err)
    assert all(line.startswith(("FAIL: ", "SKIP: ")) for line in err.splitlines()), err
    if rc == 1:
        assert any(line.startswith("FAIL: ") for line in err.splitlines()) and "align gate: FAIL" in out
        OUTCOMES[kind]["exit 1, failing check named"] += 1
    else:
        assert out.startswith("align gate: PASS")
        OUTCOMES[kind]["exit 0, pass"] += 1


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(data=st.data())
def test_fuzz_results_documents(tmp, data):
    which = data.draw(st.sampled_from(["cand", "base", "both"]))

    def mutated(doc):
        if data.draw(st.booleans()):
            return _plausible(data, doc), []
        return _mutate(data, doc, allow_dup=True)

    cand, cdups = mutated(CAND) if which != "base" else (CAND, [])
    base, bdups = mutated(BASE) if which != "cand" else (BASE, [])
    ctext, btext = _json_text(cand, cdups), _json_text(base, bdups)
    rc, out, err = _gate(tmp, ctext, btext, yaml.safe_dump(RELEASE))
    _check_outcome("results", rc, out, err)
    if rc in (0, 1):  # the reader accepted both: a stricter reading must find nothing, and agree
        assert strict_problems(ctext) == [] and strict_problems(btext) == []
        assert (rc == 0) == expected_pass(json.loads(ctext), json.loads(btext), RELEASE), err


@FUZZ
@given(data=st.data())
def test_fuzz_policies(tmp, data):
    policy, _ = _mutate(data, RELEASE, allow_dup=False)
    text = yaml.safe_dump(policy, allow_unicode=True)
    if data.draw(st.booleans()):  # anchors and aliases, which the loader refuses before composing
        text = text.replace("metrics:", "metrics: &m", 1) + "extra: *m\n"
    rc, out, err = _gate(tmp, json.dumps(CAND), json.dumps(BASE), text)
    _check_outcome("policy", rc, out, err)
    if rc in (0, 1):
        assert isinstance(policy, dict) and policy["metrics"], "a policy that checks nothing was accepted"
        for rule in policy["metrics"].values():
            for key in ("min", "max", "regression", "target"):
                if key in rule:
                    assert _is_num(rule[key]) and math.isfinite(rule[key]), rule
            assert rule.get("regression", 0) >= 0
        assert (rc == 0) == expected_pass(CAND, BASE, policy), err


# ---------------------------------------------------------------- training configs

SFT = yaml.safe_load((ROOT / "configs" / "sft" / "tiny_cpu.yaml").read_text())
FIELDS = [
    ("train", "batch_size"),
    ("train", "grad_accum"),
    ("train", "keep_checkpoints"),
    ("train", "checkpoint_every"),
    ("train", "log_every"),
    ("optim", "learning_rate"),
    ("optim", "clip_norm"),
    ("optim", "total_steps"),
    ("optim", "warmup_steps"),
    ("optim", "b1"),
    ("data", "max_length"),
    ("data", "heldout", "heldout_fraction"),
    ("chunk_size",),
]
# the stricter reading of a loaded config: every range the issue names
RANGES = {
    "train.batch_size": lambda v: v >= 1,
    "train.grad_accum": lambda v: v >= 1,
    "train.keep_checkpoints": lambda v: v >= 1,
    "train.checkpoint_every": lambda v: v >= 0,
    "train.log_every": lambda v: v >= 1,
    "optim.learning_rate": lambda v: math.isfinite(v) and v > 0,
    "optim.clip_norm": lambda v: v is None or (math.isfinite(v) and v > 0),
    "optim.total_steps": lambda v: v >= 1,
    "optim.warmup_steps": lambda v: v >= 0,
    "optim.b1": lambda v: 0 <= v < 1,
    "data.max_length": lambda v: v >= 1,
    "data.heldout.heldout_fraction": lambda v: 0 <= v < 1,
    "chunk_size": lambda v: v >= 1,
}


@FUZZ
@given(data=st.data())
def test_fuzz_training_configs(tmp, data):
    from align.config_io import ConfigError, load_config
    from pipelines.stages.sft import SFTConfig

    config = copy.deepcopy(SFT)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(FIELDS))
        node = config
        for k in path[:-1]:
            node = node.setdefault(k, {}) if isinstance(node.get(k, {}), dict) else {}
        node[path[-1]] = data.draw(ODD)
    file = tmp / "sft.yaml"
    file.write_text(yaml.safe_dump(config), encoding="utf-8", errors="surrogatepass")
    try:
        loaded = load_config(SFTConfig, file)
    except ConfigError as e:
        assert "\n" not in str(e) and str(e).startswith(str(file)), str(e)
        OUTCOMES["config"]["refused, one line"] += 1
        return
    for dotted, ok in RANGES.items():
        value = loaded
        for k in dotted.split("."):
            value = getattr(value, k)
        assert ok(value), f"{dotted}={value!r} was accepted"
    OUTCOMES["config"]["accepted, in range"] += 1


def test_fuzz_outcome_counts():
    """Runs last in this file: every fuzz case ended in one of the allowed outcomes (the asserts
    above), and each family saw more than one kind of outcome."""
    print("\nfuzz outcomes:", {k: dict(v) for k, v in OUTCOMES.items()})
    if all(OUTCOMES.values()):
        assert len(OUTCOMES["results"]) >= 2 and len(OUTCOMES["policy"]) >= 2 and len(OUTCOMES["config"]) == 2
