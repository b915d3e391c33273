"""Read `align.eval_results/v1` documents (docs/results_schema.md): the one validating reader behind
the gate, the dashboard, the history and the model cards. lm-evaluation-harness results files are
read too, as the v1 documents review/lm_eval_results.py makes of them.

A consumer-side loader, independent of the producer in `safety_evals/results.py`, so that a bug in
the writer cannot hide itself from the reader. Tolerant where the schema is optional (`target`,
`description`, `examples`, unknown extra keys) and strict where consumers rely on the value: a wrong
type, a missing required field, a duplicate key anywhere (JSON keeps the last one silently, so
`"status": "failed", "status": "ok"` would read as ok) or a document that contradicts itself
(review/consistency.py: a value outside its own interval, counts that do not add up, a direction that
is not the suite's) raises `ResultsError` naming the file and the JSON path
(`suites.toxicity.metrics.expected_max_toxicity.ci_low`); malformed JSON names the line and column.

A metric's direction and target come from the suite's definition (review/definitions.py), never
from the document under judgement.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
from pathlib import Path
from typing import Any

from align.errors import InvalidInput
from safety_evals.review import consistency, lm_eval_results
from safety_evals.review.definitions import definition
from safety_evals.review.labels import run_label
from align.safe_text import one_line

SCHEMA = "align.eval_results/v1"
SUITE_STATUSES = ("ok", "failed")
MAX_DEPTH = 64  # nesting deeper than any document the producer writes
MAX_INT = 2**63 - 1  # what the SQLite history can store


class ResultsError(InvalidInput):
    """An unusable results document; the message names the file and where in it (one line: text
    copied from the document is escaped, so it cannot forge lines of a CI log)."""

    def __init__(self, message: str):
        super().__init__(one_line(message))


@dataclasses.dataclass(frozen=True)
class MetricReading:
    """One metric of one suite as read from a document; `value`/`ci_*` are None when the producer
    wrote null. `higher_is_better`/`target` are the suite's definition (None, None when the metric
    is not `defined` in review/definitions.py), not what the document claims."""

    suite: str
    name: str  # name inside the suite, e.g. "pct_stereotype/gender"
    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int | None
    higher_is_better: bool | None  # None: closer to `target` is better
    target: float | None = None
    description: str = ""
    ci_method: str = "bootstrap"  # the JSON's "interval": "wilson" for a proportion, else the bootstrap
    defined: bool = True  # False: a metric review/definitions.py does not know (listed, never gated)

    @property
    def full_name(self) -> str:
        return f"{self.suite}.{self.name}"

    def interval(self) -> tuple[float, float] | None:
        """The 95% interval, or None when either end is missing."""
        if self.ci_low is None or self.ci_high is None:
            return None
        return (self.ci_low, self.ci_high)


@dataclasses.dataclass(frozen=True)
class Example:
    """One per-example record; `prompt`/`output` are untrusted model text."""

    id: str
    metric: str | None
    prompt: str
    output: str
    score: float | None
    label: str | None
    extra: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class SuiteReading:
    name: str
    status: str  # "ok" | "failed"
    version: str | None
    error: str | None
    metrics: dict[str, MetricReading]  # short name -> MetricReading
    examples: tuple[Example, ...] = ()
    data: dict = dataclasses.field(default_factory=dict)
    seconds: float | None = None
    judges: dict = dataclasses.field(default_factory=dict)  # role -> {"name", "sha256"}; {}: none

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclasses.dataclass(frozen=True)
class Model:
    name: str
    path: str | None
    sha256: str | None
    variant: str | None
    step: int | None


@dataclasses.dataclass(frozen=True)
class Results:
    """A parsed results document; `source` is the file (or db row) it came from, for messages."""

    run_id: str
    created: dt.datetime  # timezone-aware UTC
    model: Model
    config: dict
    suites: dict[str, SuiteReading]
    source: str = "<memory>"
    raw: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def metrics(self) -> dict[str, MetricReading]:
        """Full name (`suite.metric`) -> MetricReading, over suites in document order."""
        return {m.full_name: m for s in self.suites.values() for m in s.metrics.values()}

    @property
    def label(self) -> str:
        """Short human label: `name · variant · step N` (labels.run_label: no path, no unknown step)."""
        return run_label(self.model.name, self.model.variant, self.model.step)


def load_results(path: str | Path) -> Results:
    """Read and validate one results file; raises ResultsError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ResultsError(f"{path}: cannot read: {e}") from e
    return parse_results(text, str(path))


def parse_results(text: str, source: str) -> Results:
    """Parse JSON text; NaN/Infinity are rejected because the schema says null, duplicate keys
    because JSON would keep only the last."""
    try:
        obj = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_Object)
    except json.JSONDecodeError as e:
        raise ResultsError(f"{source}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from e
    except _ConstantError as e:
        obj = json.loads(text, parse_constant=lambda token: None, object_pairs_hook=_Object)
        if lm_eval_results.is_lm_eval(obj):  # lm-eval writes NaN for an empty breakdown: no value
            _check_duplicates(obj, source)
            return from_json(obj, source)
        line, col = _locate(text, e.token)
        raise ResultsError(
            f"{source}: invalid JSON at line {line} column {col}: {e.token} is not allowed (schema: use null)"
        ) from e
    except RecursionError as e:
        raise ResultsError(f"{source}: invalid JSON: nested too deeply") from e
    except ValueError as e:  # an integer literal past Python's digit limit
        raise ResultsError(f"{source}: invalid JSON: {e}") from e
    _check_duplicates(obj, source)
    return from_json(obj, source)


class _Object(dict):
    """A decoded JSON object that remembers the keys it saw more than once."""

    def __init__(self, pairs: list[tuple[str, Any]]):
        super().__init__(pairs)
        seen: set[str] = set()
        self.duplicates = [k for k, _ in pairs if k in seen or seen.add(k)]


def _check_duplicates(obj: Any, source: str) -> None:
    """The JSON path of the first object with a repeated key, walked without recursion."""
    stack = [(obj, "", 0)]
    while stack:
        node, at, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ResultsError(f"{source}: {at}: nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, dict):
            if getattr(node, "duplicates", None):
                key = node.duplicates[0]
                raise ResultsError(
                    f"{source}: {at or '<document>'}: duplicate key {key!r} (JSON would keep only the last)"
                )
            stack += [(v, f"{at}.{k}" if at else str(k), depth + 1) for k, v in reversed(node.items())]
        elif isinstance(node, list):
            stack += [(v, f"{at}[{i}]", depth + 1) for i, v in reversed(list(enumerate(node)))]


def from_json(obj: Any, source: str) -> Results:
    """Validate a decoded document."""
    r = _Reader(source)
    doc = r.mapping(obj, "")
    if lm_eval_results.is_lm_eval(doc):  # lm-evaluation-harness's layout, read as ours
        doc = lm_eval_results.to_document(doc, r.fail)
    schema = doc.get("schema")
    if schema != SCHEMA:
        raise ResultsError(f"{source}: schema: unknown schema {schema!r}; this reader understands {SCHEMA!r}")
    model = r.mapping(r.get(doc, "model", ""), "model")
    suites_obj = r.mapping(r.get(doc, "suites", ""), "suites")
    step = r.opt_int(model.get("step"), "model.step")
    if step is not None and step < 0:
        r.fail("model.step", f"expected a step >= 0, got {step}")
    results = Results(
        run_id=r.string(r.get(doc, "run_id", ""), "run_id"),
        created=_parse_time(r.string(r.get(doc, "created", ""), "created"), source),
        model=Model(
            name=r.string(r.get(model, "name", "model"), "model.name"),
            path=r.opt_string(model.get("path"), "model.path"),
            sha256=r.opt_string(model.get("sha256"), "model.sha256"),
            variant=r.opt_string(model.get("variant"), "model.variant"),
            step=step,
        ),
        config=r.mapping(doc.get("config", {}), "config"),
        suites={name: _suite(r, name, s) for name, s in suites_obj.items()},
        source=source,
        raw=doc,
    )
    consistency.check_config(r, results.config)
    return results


def _suite(r: _Reader, name: str, obj: Any) -> SuiteReading:
    at = f"suites.{name}"
    s = r.mapping(obj, at)
    status = r.get(s, "status", at)
    if status not in SUITE_STATUSES:
        r.fail(f"{at}.status", f"expected one of {SUITE_STATUSES}, got {_kind(status)}")
    metrics = r.mapping(s.get("metrics", {}), f"{at}.metrics")
    examples = s.get("examples") or []
    if not isinstance(examples, list):
        r.fail(f"{at}.examples", f"expected a list, got {_kind(examples)}")
    version = s.get("version")
    if version is not None and not isinstance(version, (str, int)) or isinstance(version, bool):
        r.fail(f"{at}.version", f"expected a string, got {_kind(version)}")
    data = s.get("data")
    suite = SuiteReading(
        name=name,
        status=status,
        version=None if version is None else str(version),
        error=r.opt_string(s.get("error"), f"{at}.error"),
        metrics={m: _metric(r, name, m, v) for m, v in metrics.items()},
        examples=tuple(_example(r, f"{at}.examples[{i}]", e) for i, e in enumerate(examples)),
        data=r.mapping(data, f"{at}.data") if data is not None else {},
        seconds=r.opt_number(s.get("seconds"), f"{at}.seconds"),
        judges=consistency.judges(r, s.get("judges"), f"{at}.judges"),
    )
    consistency.check_suite(r, suite, at)
    return suite


def _metric(r: _Reader, suite: str, name: str, obj: Any) -> MetricReading:
    at = f"suites.{suite}.metrics.{name}"
    m = r.mapping(obj, at)
    hib = r.get(m, "higher_is_better", at)
    if hib is not None and not isinstance(hib, bool):
        r.fail(f"{at}.higher_is_better", f"expected true, false or null, got {_kind(hib)}")
    n = r.opt_int(r.get(m, "n", at), f"{at}.n")
    target = r.opt_number(m.get("target"), f"{at}.target")
    spec = definition(suite, name)
    if spec is not None:
        consistency.check_direction(r, spec, hib, target, at, suite)
    metric = MetricReading(
        suite=suite,
        name=name,
        value=r.opt_number(r.get(m, "value", at), f"{at}.value"),
        ci_low=r.opt_number(m.get("ci_low"), f"{at}.ci_low"),
        ci_high=r.opt_number(m.get("ci_high"), f"{at}.ci_high"),
        n=n,
        higher_is_better=spec.higher_is_better if spec else None,
        target=spec.target if spec else None,
        description=r.opt_string(m.get("description"), f"{at}.description") or "",
        ci_method=r.opt_string(m.get("interval"), f"{at}.interval") or "bootstrap",
        defined=spec is not None,
    )
    consistency.check_metric(r, metric, spec, at)
    return metric


def _example(r: _Reader, at: str, obj: Any) -> Example:
    e = r.mapping(obj, at)
    extra = e.get("extra")
    return Example(
        id=str(e.get("id", "")),
        metric=r.opt_string(e.get("metric"), f"{at}.metric"),
        prompt=_text(e.get("prompt")),
        output=_text(e.get("output")),
        score=r.opt_number(e.get("score"), f"{at}.score"),
        label=None if e.get("label") is None else str(e.get("label")),
        extra=extra if isinstance(extra, dict) else {},
    )


def _text(v: Any) -> str:
    """Prompts may be chat message lists in some suites: show them as JSON rather than fail."""
    if v is None:
        return ""
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


class _Reader:
    """Type checks that raise ResultsError('<file>: <json.path>: <problem>')."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, at: str, problem: str):
        raise ResultsError(f"{self.source}: {at or '<document>'}: {problem}")

    def get(self, obj: dict, key: str, at: str) -> Any:
        if key not in obj:
            self.fail(f"{at}.{key}" if at else key, "required field is missing")
        return obj[key]

    def mapping(self, v: Any, at: str) -> dict:
        if not isinstance(v, dict):
            self.fail(at, f"expected an object, got {_kind(v)}")
        return v

    def string(self, v: Any, at: str) -> str:
        if not isinstance(v, str) or not v:
            self.fail(at, f"expected a non-empty string, got {_kind(v)}")
        return v

    def opt_string(self, v: Any, at: str) -> str | None:
        if v is not None and not isinstance(v, str):
            self.fail(at, f"expected a string or null, got {_kind(v)}")
        return v

    def opt_number(self, v: Any, at: str) -> float | None:
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.fail(at, f"expected a number or null, got {_kind(v)}")
        # NaN/inf reach here from documents decoded elsewhere (the history db) or from literals that
        # overflow a float (1e999); the schema writes null for them
        try:
            x = float(v)
        except OverflowError:  # an integer literal too large for a float
            x = math.inf
        if not math.isfinite(x):
            self.fail(at, f"expected a finite number or null, got {_kind(v)} (schema: use null)")
        return x

    def opt_int(self, v: Any, at: str) -> int | None:
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            self.fail(at, f"expected an integer or null, got {_kind(v)}")
        if v is not None and abs(v) > MAX_INT:
            self.fail(at, f"integer out of range: {_kind(v)}")
        return v


def _kind(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 100:
        return f"int of {v.bit_length()} bits"  # the repr of a huge literal is long (or refused)
    return "null" if v is None else f"{type(v).__name__} {v!r}"[:80]


def _parse_time(text: str, source: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        # naive stamps are read as UTC (the schema says UTC); offsets are normalised so stamps sort
        return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)
    except (ValueError, OverflowError) as e:  # OverflowError: year 9999 with a negative offset
        raise ResultsError(f"{source}: created: not an ISO-8601 UTC timestamp: {text[:80]!r}") from e


class _ConstantError(ValueError):
    def __init__(self, token: str):
        super().__init__(token)
        self.token = token


def _reject_constant(token: str):
    raise _ConstantError(token)


def _locate(text: str, token: str) -> tuple[int, int]:
    """Line/column of the first bare `token` (NaN, Infinity) outside a string, best effort."""
    for m in re.finditer(r'"(?:\\.|[^"\\])*"|' + re.escape(token), text):
        if not m.group(0).startswith('"'):
            line = text.count("\n", 0, m.start()) + 1
            return line, m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
    return 0, 0
