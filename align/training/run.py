"""A training run's plumbing shared by the SFT and reward-model pipelines (and anything like them).

    model, tokenizer = load_model(ModelOptions(spec="gemma3-270m"))
    run = prepare_run(model, optimizer, loss_fn, run_dir=out, train=TrainOptions(...),
                      mesh=make_run_mesh(...))
    result = fit(run, lambda position: my_batches(position), loop_config, evaluate=...)

`prepare_run` builds the state (sharded), the jitted step, the checkpointer and the metrics writer,
and resumes from the latest checkpoint when there is one (weights, Adam moments, rng, data position,
the open logging window's metric sums; metric lines past that step are dropped so the log reads as one
uninterrupted run).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from align import checks
from align.errors import InvalidInput
from align.model.sharding import MeshConfig, batch_sharding, make_mesh
from align.training.checkpoint import Checkpointer
from align.training.loop import LoopConfig, LoopResult, train_loop
from align.training.lora import LoRAConfig, add_lora
from align.training.metrics import MetricsWriter, finalize
from align.training.optim import trainable_filter
from align.training.state import TrainState, create_train_state, train_state_shardings
from align.training.step import LossFn, make_eval_step, make_train_step

log = logging.getLogger("align.training")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    spec: str = "preset:tiny"  # anything align.load accepts, or preset:<name> (random init)
    dtype: str = "float32"  # compute dtype of activations: float32 | bfloat16
    param_dtype: str = "float32"  # storage dtype of the weights (float32 keeps exact Adam updates)
    remat: bool = False  # recompute each block in the backward pass (less memory, ~1/3 more compute)
    # training-pass attention: xla (einsums, any backend) | cudnn (fused flash kernel; NVIDIA GPU,
    # bfloat16 dtype; skips masked key blocks and never writes [T, S] probs: benchmarks/RESULTS.md)
    attention: str = "xla"
    seed: int = 0  # initialisation of random presets
    tokenizer: str | None = None  # tokenizer source for presets other than tiny


def load_model(options: ModelOptions):
    """(Decoder, align.data.Tokenizer) for a model spec; `preset:tiny` pairs with the tiny test tokenizer."""
    from align.data.tokenizer import Tokenizer, load_tokenizer
    from align.model import Decoder, ModelConfig
    from align.model.config import PRESETS

    for name in (options.dtype, options.param_dtype):
        if name not in DTYPES:
            raise InvalidInput(f"model dtype {name!r}: expected one of {sorted(DTYPES)}")
    dtype, param_dtype = DTYPES[options.dtype], DTYPES[options.param_dtype]
    if options.spec.startswith("preset:"):
        name = options.spec.split(":", 1)[1]
        if name not in PRESETS:
            raise InvalidInput(f"model.spec {options.spec!r}: unknown preset; choose from {sorted(PRESETS)}")
        if name == "tiny" and options.tokenizer is None:
            from align.data.testing import TINY_VOCAB_SIZE, tiny_tokenizer

            config, tokenizer = ModelConfig.tiny(vocab_size=TINY_VOCAB_SIZE), Tokenizer(tiny_tokenizer())
        elif options.tokenizer is None:
            raise InvalidInput(
                f"model.spec {options.spec!r} needs model.tokenizer (a tokenizer file or directory)"
            )
        else:
            config, tokenizer = PRESETS[name](), load_tokenizer(options.tokenizer)
        # Built eagerly: one small cached kernel per distinct weight shape. Compiling the whole
        # initialiser as one jit took longer on CPU and, for gemma3-1b on a GPU, was still compiling
        # after minutes (benchmarks/init.py; figures in benchmarks/RESULTS.md).
        model = Decoder(config, rngs=nnx.Rngs(options.seed), param_dtype=param_dtype, dtype=dtype)
    else:
        import align

        loaded = align.load(options.spec, param_dtype=param_dtype, dtype=dtype)
        model, tokenizer = loaded.model, loaded.tokenizer
        if options.tokenizer is not None:
            tokenizer = load_tokenizer(options.tokenizer)
    model.remat = options.remat
    if options.attention == "cudnn" and options.dtype != "bfloat16":
        raise InvalidInput(f"model.attention 'cudnn' needs model.dtype bfloat16, got {options.dtype!r}")
    try:
        model.use_attention(options.attention)
    except ValueError as e:
        raise InvalidInput(f"model.attention {options.attention!r}: {e}") from None
    return model, tokenizer


@dataclasses.dataclass(frozen=True)
class MeshOptions:
    data: int = -1
    fsdp: int = 1
    tensor: int = 1
    devices: int = 0  # use the first `devices` devices; 0: all of them

    def __post_init__(self):
        if self.data != -1:
            checks.at_least(self, 1, "data")  # -1: whatever the other axes leave
        checks.at_least(self, 1, "fsdp", "tensor")
        checks.at_least(self, 0, "devices")


def make_run_mesh(options: MeshOptions = MeshOptions()):
    devices = jax.devices()
    if options.devices:
        devices = devices[: options.devices]
    return make_mesh(MeshConfig(data=options.data, fsdp=options.fsdp, tensor=options.tensor), devices)


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    batch_size: int = 8  # rows per optimizer step (all micro-batches together)
    grad_accum: int = 1  # micro-batches per step
    log_every: int = 10
    eval_every: int = 0  # 0: only before and after training
    eval_batches: int | None = None  # cap on held-out batches per evaluation
    eval_before: bool = True  # also evaluate the starting model (once, saved as eval_before.json)
    checkpoint_every: int = 0  # 0: only at the end
    keep_checkpoints: int = 2
    async_checkpoints: bool = True
    seed: int = 0  # data order and step rng
    trainable: str | None = None  # all | no_embeddings | lora; unset: "lora" with train.lora, else "all"
    lora: LoRAConfig | None = None  # adapters on the base model (only they train unless trainable says)
    progress: bool = True

    def __post_init__(self):
        # batch_size <= 0 made SFT wait forever at step 0; keep_checkpoints 0 kept nothing, though a
        # stopped run promises a resume from its last checkpoint
        checks.at_least(self, 1, "batch_size", "grad_accum", "log_every", "keep_checkpoints")
        checks.at_least(self, 0, "eval_every", "checkpoint_every", "seed")
        checks.at_least(self, 1, "eval_batches", optional=True)
        checks.one_of(self, "trainable", (None, "all", "no_embeddings", "lora"))
        if self.batch_size % self.grad_accum:
            raise ValueError(
                f"train.batch_size={self.batch_size} is not a multiple of grad_accum={self.grad_accum}"
            )
        if self.trainable is None:
            # Resolved here, so every reader of train.trainable (and the dumped config.yaml) sees the
            # choice: setting only `lora` means LoRA, not full fine-tuning plus adapters (LoRAParam is
            # an nnx.Param, so "all" would select the base weights too).
            object.__setattr__(self, "trainable", "all" if self.lora is None else "lora")


@dataclasses.dataclass
class Run:
    state: TrainState
    step_fn: Callable
    eval_fn: Callable
    checkpointer: Checkpointer
    writer: MetricsWriter
    mesh: Any
    run_dir: Path
    train: TrainOptions
    data_position: Mapping | None = None
    resumed_from: int | None = None
    metrics_window: Mapping | None = None  # the resumed log window's metric sums (train_loop)


def with_lora(model: nnx.Module, train: TrainOptions) -> nnx.Module:
    """`model` with train.lora's adapters (unchanged without)."""
    if train.lora is None:
        return model
    if train.trainable != "lora":
        # Kept, not refused: it is an explicit choice, and runs saved with it must still resume.
        log.warning(
            "train.lora with train.trainable=%r: the base weights train too (full fine-tuning "
            "plus adapters); leave trainable unset or set it to 'lora' to train only the "
            "adapters",
            train.trainable,
        )
    return add_lora(model, train.lora, seed=train.seed)


def prepare_run(
    model: nnx.Module,
    optimizer: optax.GradientTransformation,
    loss_fn: LossFn,
    *,
    run_dir: str | Path,
    train: TrainOptions,
    mesh,
    trainable=None,
    manifest: Mapping | None = None,
    learning_rate: optax.Schedule | None = None,
) -> Run:
    """State (sharded over `mesh`), jitted train/eval steps, checkpointer and writer; resumes if possible.

    trainable: an nnx filter; default trainable_filter(train.trainable).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    trainable = trainable_filter(train.trainable) if trainable is None else trainable
    state = create_train_state(model, optimizer, seed=train.seed, trainable=trainable)
    shardings = train_state_shardings(state, mesh)
    state = jax.device_put(state, shardings)
    checkpointer = Checkpointer(
        run_dir / "checkpoints",
        keep=train.keep_checkpoints,
        async_save=train.async_checkpoints,
        manifest=manifest,
    )
    run = Run(
        state=state,
        step_fn=None,
        eval_fn=None,
        checkpointer=checkpointer,
        writer=MetricsWriter(run_dir / "metrics.jsonl", run_dir / "tb"),
        mesh=mesh,
        run_dir=run_dir,
        train=train,
    )
    restored = checkpointer.restore_latest(state, shardings)
    if restored is not None:
        run.state, run.data_position, run.resumed_from = (
            restored.state,
            restored.manifest["data_position"],
            restored.step,
        )
        # Checkpoints written before the window was saved have none: that row then covers fewer steps.
        run.metrics_window = restored.manifest.get("metrics_window")
        log.info("resuming from step %d (%s)", restored.step, checkpointer.directory)
    run.writer.truncate_after(run.resumed_from or 0)
    run.step_fn = make_train_step(
        loss_fn,
        optimizer,
        grad_accum=train.grad_accum,
        shardings=(shardings, batch_sharding(mesh, 1)),
        learning_rate=learning_rate,
    )
    run.eval_fn = make_eval_step(loss_fn)
    return run


def evaluate(
    eval_fn: Callable, state: TrainState, batches: Iterable[Mapping], limit: int | None = None
) -> dict:
    """Weighted means of the loss's metrics over `batches` (at most `limit` of them)."""
    sums = None
    for i, batch in enumerate(batches):
        if limit is not None and i >= limit:
            break
        out = jax.device_get(eval_fn(state, batch))
        sums = out if sums is None else jax.tree.map(np.add, sums, out)
    if sums is None:
        return {}
    return {k: float(v) for k, v in finalize(sums).items()}


def fit(
    run: Run,
    make_batches: Callable[[Mapping | None], Iterator],
    loop: LoopConfig,
    evaluate_fn: Callable[[TrainState], Mapping] | None = None,
    on_step: Callable[[int, TrainState], None] | None = None,
) -> LoopResult:
    """train_loop from the run's (possibly resumed) state and data position."""
    try:
        result = train_loop(
            run.step_fn,
            run.state,
            make_batches(run.data_position),
            loop,
            checkpointer=run.checkpointer,
            evaluate=evaluate_fn,
            writer=run.writer,
            data_position=run.data_position,
            on_step=on_step,
            metrics_window=run.metrics_window,
        )
    finally:
        run.writer.close()
    run.state, run.data_position = result.state, result.data_position
    return result


@dataclasses.dataclass(frozen=True)
class SplitOptions:
    """A deterministic train / held-out cut of a dataset's examples."""

    heldout_fraction: float = 0.0
    seed: int = 0
    heldout_max: int | None = None  # evaluate on at most this many of the held-out examples (cost);
    #                                 the rest of the held-out part is still kept out of training
    train_max: int | None = None  # train on at most the first N training examples (file order)

    def __post_init__(self):
        checks.fraction(self, "heldout_fraction")
        checks.at_least(self, 0, "seed")
        checks.at_least(self, 0, "heldout_max", optional=True)
        checks.at_least(self, 1, "train_max", optional=True)


def heldout_split(items: list, options: SplitOptions) -> tuple[list, list]:
    """(train, held-out): a permutation by `seed`; its first round(n * fraction) examples are held out.

    A function of (n, fraction, seed) only, so the same file always gives the same cut (the SFT and RM
    configs share it, so RM held-out pairs were never SFT training data). heldout_max and train_max
    only shorten the returned lists.
    """
    n = len(items)
    k = round(n * options.heldout_fraction)
    perm = np.random.default_rng(options.seed).permutation(n)
    held = set(perm[:k].tolist())
    shown = sorted(perm[:k].tolist())
    if options.heldout_max is not None:
        shown = sorted(perm[: min(k, options.heldout_max)].tolist())
    train = [x for i, x in enumerate(items) if i not in held]
    return train[: options.train_max] if options.train_max is not None else train, [items[i] for i in shown]
