"""The pipeline's last word: the before/after comparison, then the release gate on every variant.

Comparison (safety_evals.review.compare), per prompting group (pipelines/stages/evaluate.py): the base
model, the SFT model and the group's variants, each metric with its interval and the paired change from
the base:

    compare/comparison.json, comparison.md             every variant, when all share one prompting
    compare/<variant>/comparison.json, comparison.md   one per variant: base, sft, the variant

Gate (safety_evals.review.gate, the code of `align gate`): each variant's results under its policy
(`gate.per_variant`, else `gate.policy`), with the base model's results under the same prompting as the
baseline of the regression rules:

    gate/<variant>/verdict.json   {"variant", "passed", "failed", "checks": [...]}
    gate/<variant>/junit.xml, summary.md

Both run on every pipeline run (they only read results files), so a changed policy is applied on a
rerun. `align pipeline` exits 1 when a variant fails its gate.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from align.errors import InvalidInput, MissingInput
from align.fileio import write_text_atomic


@dataclasses.dataclass(frozen=True)
class GateSection:
    """`gate:` of a pipeline config; no policy: no gate (the comparison is still written)."""

    policy: str | None = None  # e.g. configs/gates/release.yaml, for every variant not in per_variant
    per_variant: dict[str, str] = dataclasses.field(default_factory=dict)  # variant -> policy file

    def policy_for(self, variant: str) -> str | None:
        return self.per_variant.get(variant, self.policy)

    @property
    def enabled(self) -> bool:
        return self.policy is not None or bool(self.per_variant)


def check(pipeline) -> None:
    """Unknown variants, missing or invalid policy files fail before any training."""
    from safety_evals.review.policy import load_policy

    section, source = pipeline.config.gate, pipeline.source
    if not section.enabled:
        return
    if not pipeline.config.eval.enabled:
        raise InvalidInput(f"{source}: gate: the gate reads the eval stage's results; set eval.enabled")
    names = [v.name for v in pipeline.variants]
    unknown = sorted(set(section.per_variant) - set(names))
    if unknown:
        raise InvalidInput(
            f"{source}: gate.per_variant: unknown variants {unknown}; the variants are {names}"
        )
    for name in names:
        path = section.policy_for(name)
        if path is not None and not Path(path).is_file():
            raise MissingInput(f"{source}: gate: policy file {path} (variant {name}) does not exist")
        if path is not None:
            load_policy(path)  # a PolicyError (InputError) names the file and the field


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)


def write_comparisons(pipeline) -> dict[str, dict]:
    """Write the comparison files; returns {variant: the comparison document its card shows}."""
    from pipelines.stages.evaluate import prompting_groups
    from safety_evals.review.compare import compare_documents, comparison_markdown
    from safety_evals.review.documents import load_results

    out, per_variant = pipeline.out / "compare", {}
    groups = prompting_groups(pipeline.variants)
    for group, members in groups.items():
        base = load_results(pipeline.base_results(group))
        sft = load_results(pipeline.sft_results(group))
        docs = {v.name: load_results(pipeline.results_file(v.name)) for v in members}
        for name, doc in docs.items():
            per_variant[name] = compare_documents(base, {"sft": sft, name: doc})
            _write(out / name / "comparison.json", json.dumps(per_variant[name], indent=1))
            _write(out / name / "comparison.md", comparison_markdown(per_variant[name]))
        if len(groups) == 1:
            combined = compare_documents(base, {"sft": sft, **docs})
            _write(out / "comparison.json", json.dumps(combined, indent=1))
            _write(out / "comparison.md", comparison_markdown(combined))
    if len(groups) > 1:  # no one base serves every variant: the per-variant tables, one after another
        text = [f"## {name}\n\n" + comparison_markdown(doc) for name, doc in per_variant.items()]
        _write(out / "comparison.md", "\n".join(text))
    return per_variant


def run_gates(pipeline) -> dict[str, dict]:
    """Gate every variant that has a policy; returns {variant: verdict}."""
    from safety_evals.review import gate
    from safety_evals.review.documents import load_results
    from safety_evals.review.policy import load_policy

    verdicts = {}
    for v in pipeline.variants:
        path = pipeline.config.gate.policy_for(v.name)
        if path is None:
            continue
        policy = load_policy(path)
        results = load_results(pipeline.results_file(v.name))
        baseline = load_results(pipeline.base_results(pipeline.group_of(v.name)))
        checks = gate.evaluate(results, policy, baseline)
        failed = sum(c.status == "fail" for c in checks)
        verdicts[v.name] = {
            "variant": v.name,
            "passed": failed == 0,
            "failed": failed,
            "policy": path,
            "checks": [dataclasses.asdict(c) for c in checks],
        }
        out = pipeline.out / "gate" / v.name
        _write(out / "verdict.json", json.dumps(verdicts[v.name], indent=1))
        _write(out / "junit.xml", gate.junit_xml(checks, results))
        _write(out / "summary.md", gate.summary_markdown(checks, results, policy, baseline))
    return verdicts


def compare_and_gate(pipeline) -> dict:
    """The comparison, then the gates; the verdicts are also what `pipeline.json` reports."""
    comparisons = write_comparisons(pipeline)
    verdicts = run_gates(pipeline)
    pipeline.card_inputs = {"comparisons": comparisons, "verdicts": verdicts}
    summary = {name: {"passed": v["passed"], "failed": v["failed"]} for name, v in verdicts.items()}
    _write(pipeline.out / "gate" / "verdicts.json", json.dumps(summary, indent=1))
    return summary
