"""`align distill` on the tiny config for test_distill_pipeline.py: `python distill_resume_job.py RUN_DIR
KILL_AT [key=value ...]`.

With KILL_AT > 0 the process SIGKILLs itself as step KILL_AT + 1 begins (no cleanup; the async save of
step KILL_AT may be half written). Prints the summary as one JSON line when the run finishes.
"""

import json
import os
import signal
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax

jax.config.update("jax_default_matmul_precision", "highest")

from align.config_io import load_config
from pipelines.stages import distill
from tests.paths import CONFIGS


def killing_at(kill_at: int):
    """distill.with_on_policy whose step SIGKILLs the process when the state reaches step kill_at."""
    wrap = distill.with_on_policy

    def with_kill(step, options, seed, **kwargs):
        inner = wrap(step, options, seed, **kwargs)

        def step_or_die(state, batch):
            if int(jax.device_get(state.step)) == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return inner(state, batch)

        return step_or_die

    return with_kill


def main(run_dir: str, kill_at: int, overrides: list[str]) -> dict:
    if kill_at > 0:
        distill.with_on_policy = killing_at(kill_at)
    config = load_config(
        distill.DistillConfig, CONFIGS / "distill" / "tiny_cpu.yaml", [f"output_dir={run_dir}", *overrides]
    )
    return distill.run_distill(config)


if __name__ == "__main__":
    summary = main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
    print(json.dumps({k: summary.get(k) for k in ("step", "resumed_from", "on_policy_steps", "eval_after")}))
