"""A tiny training job for test_resume.py: `python resume_job.py RUN_DIR TOTAL_STEPS KILL_AT OUT.npz`.

Resumes from RUN_DIR's latest checkpoint when there is one. With KILL_AT > 0 it SIGKILLs itself right
after step KILL_AT (no cleanup, an async checkpoint may be half written). On completion it writes the
final trainable params to OUT.npz and prints one JSON line, {"resumed_from": step or null, "steps": [the
steps this process ran]}, so the test can tell a resume from a deterministic rerun from step 0.
"""

import json
import os
import signal
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import numpy as np
from flax import nnx

jax.config.update("jax_default_matmul_precision", "highest")

from align.data import DataOrder, Tokenized, batches, pad_batch
from align.model import Decoder, ModelConfig
from align.training import LoopConfig, OptimConfig, make_optimizer
from align.training.options import MeshOptions, TrainOptions, make_run_mesh
from align.training.run import fit, prepare_run
from pipelines.stages.sft import sft_loss

V, T, ROWS = 64, 16, 4


def dataset(n=24, seed=0):
    rs = np.random.default_rng(seed)
    return [
        Tokenized(rs.integers(3, V, k).astype(np.int32), rs.random(k) < 0.8) for k in rs.integers(5, T, n)
    ]


def main(run_dir: str, total: int, kill_at: int, out: str | None) -> dict:
    config = ModelConfig.tiny(V).replace(num_layers=1, layer_types=("global",))
    model = Decoder(config, rngs=nnx.Rngs(0))
    optim = OptimConfig(learning_rate=1e-2, warmup_steps=2, total_steps=total)
    train = TrainOptions(
        batch_size=ROWS,
        grad_accum=2,
        checkpoint_every=2,
        keep_checkpoints=3,
        log_every=1,
        progress=False,
        seed=0,
    )
    run = prepare_run(
        model,
        make_optimizer(optim),
        sft_loss(chunk_size=16),
        run_dir=run_dir,
        train=train,
        mesh=make_run_mesh(MeshOptions(devices=1)),
    )
    data = dataset()
    order = DataOrder(len(data), seed=0)

    def make_batches(position):
        return batches(data, order, position, ROWS, lambda b: pad_batch(b, T, rows=ROWS))

    steps = []

    def on_step(step, state):
        steps.append(step)
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    loop = LoopConfig(total_steps=total, log_every=1, checkpoint_every=2, progress=False)
    result = fit(run, make_batches, loop, on_step=on_step)
    run.checkpointer.close()
    params = {str(i): np.asarray(x) for i, x in enumerate(jax.tree.leaves(result.state.params))}
    if out:
        np.savez(out, **params)
    return {"params": params, "resumed_from": run.resumed_from, "step": result.step, "steps": steps}


if __name__ == "__main__":
    done = main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else None)
    print(json.dumps({"resumed_from": done["resumed_from"], "steps": done["steps"]}))
