"""align.training: losses on log-probs, optimizer, train state, the jitted step, checkpoints, host loop.

    optimizer = make_optimizer(OptimConfig(learning_rate=1e-4, total_steps=100))
    state = create_train_state(model, optimizer, trainable=trainable_filter("all"))
    step = make_train_step(loss_fn, optimizer, grad_accum=2)  # loss_fn(model, batch, rng) -> (loss, metrics)
    with Checkpointer(run_dir / "checkpoints") as ckpt:
        result = train_loop(step, state, batches, LoopConfig(total_steps=100), checkpointer=ckpt)

Sections: log-probs and losses (logprobs, fused_nll, losses, distill, fused_divergence)
| optimizer and trainable filters (optim)
| state, step and metrics (state, step, metrics) | checkpoints and the host loop (checkpoint, loop)
| LoRA (lora) | run plumbing shared by pipelines (options: train and mesh sections; run: resume-or-start,
fit; stage: the one body of an SFT, DPO or reward-model run). Model specs and ModelOptions are align.hub's,
the train / held-out cut align.data.splits'.
"""

from align.training.checkpoint import CheckpointWriteFailed, Checkpointer, Restored
from align.training.distill import chunked_token_divergence, sparse_topk_kl, teacher_topk, token_divergence
from align.training.fused_divergence import chunked_weighted_divergence
from align.training.fused_nll import chunked_weighted_nll
from align.training.logprobs import chunked_token_logprobs, sequence_logprob, token_entropy, token_logprobs
from align.training.loop import LoopConfig, LoopResult, NonFiniteLoss, count_tokens, sigterm_flag, train_loop
from align.training.lora import LoRAConfig, LoRADecoder, add_lora, merge_lora
from align.training.losses import nll_loss
from align.training.metrics import MeanTracker, MetricsWriter, finalize, read_metrics, weighted_sums
from align.training.optim import (
    OptimConfig,
    excluding,
    learning_rate_schedule,
    make_optimizer,
    trainable_filter,
)
from align.training.options import MeshOptions, TrainOptions, make_run_mesh
from align.training.run import fit, prepare_run
from align.training.stage import FitResult, LoopFit, StageData, StageSpec, run_stage
from align.training.state import (
    TrainState,
    abstract_train_state,
    create_train_state,
    shard_train_state,
    sharded_train_state,
    split_model,
    train_state_shardings,
)
from align.training.step import accumulate_gradients, make_eval_step, make_train_step, split_micro_batches

__all__ = [  # noqa: RUF022  (grouped by section, as the imports)
    "chunked_token_logprobs", "chunked_weighted_nll", "sequence_logprob", "token_entropy", "token_logprobs",
    "nll_loss",
    "chunked_token_divergence", "chunked_weighted_divergence", "sparse_topk_kl", "teacher_topk",
    "token_divergence",
    "OptimConfig", "excluding", "learning_rate_schedule", "make_optimizer", "trainable_filter",
    "TrainState", "abstract_train_state", "create_train_state", "shard_train_state", "sharded_train_state",
    "split_model", "train_state_shardings",
    "accumulate_gradients", "make_eval_step", "make_train_step", "split_micro_batches",
    "MeanTracker", "MetricsWriter", "finalize", "read_metrics", "weighted_sums",
    "Checkpointer", "CheckpointWriteFailed", "Restored",
    "LoopConfig", "LoopResult", "NonFiniteLoss", "count_tokens", "sigterm_flag", "train_loop",
    "LoRAConfig", "LoRADecoder", "add_lora", "merge_lora",
    "MeshOptions", "TrainOptions", "make_run_mesh", "fit", "prepare_run",
    "FitResult", "LoopFit", "StageData", "StageSpec", "run_stage",
]  # fmt: skip
