"""The pipeline's run loop: run each unfinished stage in order, skip finished ones, report timings.

A stage is finished when its output exists (summary.json, a results file, a model card), so running
the same command again after a crash continues where it stopped. What the stages are, and where their
outputs go, is the plan in pipelines/pipeline.py; this module only runs a list of them.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from align import distributed
from align.errors import RunStopped, stop_exit_code


@dataclasses.dataclass
class Stage:
    name: str
    output: Path  # what exists when the stage is finished
    run: Any  # () -> the stage's summary (a dict with "stopped" for training stages) or None
    describe: str = ""
    always: bool = False  # runs on every pipeline run (it only reads other stages' outputs)


class StageStopped(RunStopped):
    """A stage ended without writing its output (e.g. SIGTERM); running the pipeline again resumes it."""

    def __init__(self, stage: str, output: Path, reason: str | None):
        self.exit_code = stop_exit_code(reason)
        super().__init__(
            f"stage {stage} stopped early ({reason or 'see its log'}) without writing {output}; "
            "run the same command again to resume it"
        )


def run_stages(stages: list[Stage], out: Path, *, stream=sys.stderr) -> dict:
    """Run every unfinished stage in order; returns {stage: {"output", "status", "seconds"}} (plus
    "gate" from the compare stage and "total_seconds"), also written to out/pipeline.json."""
    from align.training.loop import sigterm_stops  # imports JAX: not for `--help`

    report, t_all = {}, time.perf_counter()
    for i, stage in enumerate(stages, 1):
        head = f"[{i}/{len(stages)}] {stage.name:<18} {stage.describe}"
        if stage.output.exists() and not stage.always:
            print(f"{head}: done already ({stage.output})", file=stream, flush=True)
            report[stage.name] = {"output": str(stage.output.parent), "status": "skipped", "seconds": 0.0}
            continue
        print(f"{head} ...", file=stream, flush=True)
        t0 = time.perf_counter()
        with sigterm_stops(f"running the {stage.name} stage"):  # its training loop takes SIGTERM over
            result = stage.run()
        if not stage.output.exists():
            why = result.get("stopped") if isinstance(result, dict) else None  # a training summary's
            raise StageStopped(stage.name, stage.output, why)
        seconds = time.perf_counter() - t0
        report[stage.name] = {"output": str(stage.output.parent), "status": "ran", "seconds": seconds}
        if stage.name == "compare":
            report["gate"] = result  # {variant: {"passed", "failed"}}
        print(f"{head}: finished in {seconds:.0f}s -> {stage.output.parent}", file=stream, flush=True)
    report["total_seconds"] = time.perf_counter() - t_all
    if distributed.is_primary():
        (out / "pipeline.json").write_text(json.dumps(report, indent=2))
    distributed.barrier("pipeline-report")
    return report


def print_report(report: dict, out: Path, stream=sys.stdout) -> None:
    print(f"\npipeline finished in {report['total_seconds'] / 60:.1f} min; outputs:", file=stream)
    for name, row in report.items():
        if isinstance(row, dict) and "status" in row:
            print(f"  {name:<20} {row['status']:<8} {row['seconds']:7.0f}s  {row['output']}", file=stream)
    print(f"  variants (HF dirs with README.md model cards): {out / 'variants'}", file=stream)
    if (out / "compare" / "comparison.md").exists():
        print(f"  before/after comparison: {out / 'compare' / 'comparison.md'}", file=stream)
    for name, v in report.get("gate", {}).items():
        verdict = "PASS" if v["passed"] else f"FAIL ({v['failed']} checks failed)"
        print(f"  release gate {name}: {verdict}; see {out / 'gate' / name / 'summary.md'}", file=stream)
