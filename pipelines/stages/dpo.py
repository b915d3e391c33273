"""Direct preference optimisation: `align dpo --config configs/dpo/<name>.yaml [key=value ...]`.

Run directory (`output_dir`), as for SFT:
    config.yaml, checkpoints/<step>/, metrics.jsonl, tb/
    eval_before.json     held-out pairs at the start (loss = ln 2, accuracy 0, by construction)
    export/              the trained policy as a Hugging Face directory (+ tokenizer files)
    summary.json         written last: its presence means the run is finished and is not redone

The frozen reference is the starting model. Its log-probs are either precomputed once for every pair
(`precompute_reference: true`, one forward pass over the data, then none per step) or computed for
each batch (`false`: cheaper when the run sees less than one epoch). Resumes like SFT.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from align.data import (
    DataOrder,
    batches,
    preference_batch,
)
from align.data.preference import PreferenceDataOptions, load_preference_pairs
from align import distributed
from align.hub import ModelOptions, load_model
from align.model.sharding import shard_model
from align.rl.dpo import DPOConfig, dpo_loss_fn, precompute_reference, with_reference
from align.training import OptimConfig, make_optimizer
from align.training.optim import learning_rate_schedule
from align.training.options import MeshOptions, TrainOptions, make_run_mesh
from align.training.feed import Zipped, chunk_rows, encode_by_process, local_rows, to_global
from align.training.run import prepare_run, with_lora
from align.training.stage import LoopFit, StageData, StageSpec, held_out_eval, run_stage
from align.config_io import to_dict
from pipelines.commands.config import add_config_arguments, run_config_command
from pipelines.stages.sft import export_model

log = logging.getLogger("align.dpo")


@dataclasses.dataclass(frozen=True)
class DPORunConfig:
    output_dir: str
    model: ModelOptions = ModelOptions()  # the starting policy, also the frozen reference
    data: PreferenceDataOptions = PreferenceDataOptions()
    dpo: DPOConfig = DPOConfig()
    optim: OptimConfig = OptimConfig(learning_rate=5e-7)
    train: TrainOptions = TrainOptions()
    mesh: MeshOptions = MeshOptions()
    precompute_reference: bool = True
    export: bool = True


def load_pairs(options: PreferenceDataOptions, tokenizer) -> StageData:
    """Train and held-out pairs with a report (align.data.preference.load_preference_pairs); several
    processes share the training pairs' tokenizing (align.training.feed.encode_by_process)."""
    share = encode_by_process if distributed.process_count() > 1 else None
    return StageData(*load_preference_pairs(options, tokenizer, share))


def frozen_copy(model):
    """A copy of `model` with its own buffers: the jitted step donates the trained weights' buffers."""
    graphdef, state = nnx.split(model)
    return nnx.merge(graphdef, jax.tree.map(jnp.copy, state))


def _collate(rows: int, length: int, pad_id: int, with_ref: bool):
    """Items are (pair, ref_logps [P] or None) -> a [B, P, T] batch (+ ref_logps [B, P] when with_ref).

    A short batch (the held-out set's last) is padded to `rows`; pair_mask [B] marks the real pairs so
    that the padding rows count in no loss or metric (align.rl.dpo.dpo_loss_fn). `rows` is this
    process's share of a batch (align.training.feed.local_rows), which may hold no pair at all.
    """

    def collate(items):
        batch = preference_batch([p for p, _ in items], length, rows=rows, pad_id=pad_id)
        batch["pair_mask"] = (np.arange(rows) < len(items)).astype(np.float32)
        if with_ref:
            ref = np.zeros((rows, 2), np.float32)
            ref[: len(items)] = np.asarray([r for _, r in items], np.float32).reshape(-1, 2)
            batch["ref_logps"] = ref
        return batch

    return collate


def _with_ref(pairs, reference, config: DPORunConfig, pad_id: int, precompute: bool, mesh) -> Zipped:
    """(pair, ref_logps [P]) items with the reference's log-probs when `precompute`, else (pair, None).

    The reference reads `rows` pairs at a time, each process collating only its rows of them
    (chunk_rows), so a process tokenizes only its share; every process gets all the log-probs."""
    if not precompute or not pairs:
        return Zipped(pairs, None)
    rows, length = config.train.batch_size, config.data.max_length
    take = local_rows(mesh, rows)
    collate = _collate(take.stop - take.start, length, pad_id, with_ref=False)
    chunks = (
        to_global(collate([(pairs[k], None) for k in mine]), mesh, rows)
        for mine in chunk_rows(len(pairs), rows, take)
    )
    ref = precompute_reference(reference, chunks, config.dpo.logprob_chunk)  # [N rounded up, P]
    return Zipped(pairs, ref[: len(pairs)])


def _reference(model, mesh):
    """The frozen reference: a copy of the starting policy. Spread over the mesh on several processes
    (a model on one local device cannot read a batch whose rows live on other hosts); on one process
    where it loaded, as always."""
    reference = frozen_copy(model)
    return shard_model(reference, mesh) if distributed.process_count() > 1 else reference


def _prepare(config: DPORunConfig, model, tokenizer, data: StageData) -> LoopFit:
    """The run (resumed when possible) with the DPO loss and the frozen reference wired in."""
    mesh = make_run_mesh(config.mesh)
    reference = _reference(model, mesh)
    pad, rows, length = tokenizer.pad_id, config.train.batch_size, config.data.max_length
    train_items = _with_ref(data.train, reference, config, pad, config.precompute_reference, mesh)
    # The eval step never sees the reference: held-out pairs always carry precomputed log-probs.
    held_items = _with_ref(data.heldout, reference, config, pad, True, mesh)
    run = prepare_run(
        with_lora(model, config.train),
        make_optimizer(config.optim),
        functools.partial(dpo_loss_fn, config=config.dpo),
        run_dir=config.output_dir,
        train=config.train,
        mesh=mesh,
        learning_rate=learning_rate_schedule(config.optim),
        manifest={"config": to_dict(config), "model_config": model.config},
    )
    if not config.precompute_reference:
        run.step_fn = with_reference(run.step_fn, reference, config.dpo.logprob_chunk)
    take = local_rows(run.mesh, rows)  # this process's rows of every batch
    mine = take.stop - take.start
    held_collate = _collate(mine, length, pad, with_ref=True)
    held = lambda: (  # noqa: E731
        held_collate([held_items[k] for k in ks]) for ks in chunk_rows(len(held_items), rows, take)
    )
    evaluate = held_out_eval(run, held, config.train.eval_batches) if held_items else None
    order = DataOrder(len(train_items), seed=config.train.seed)
    collate = _collate(mine, length, pad, with_ref=config.precompute_reference and bool(train_items))
    make_batches = lambda pos: batches(train_items, order, pos, rows, collate, take=take)  # noqa: E731
    return LoopFit(run, make_batches, config.optim.total_steps, evaluate)


def _load(config: DPORunConfig):
    return load_model(config.model)


DPO_STAGE = StageSpec(
    load=_load,
    data=lambda config, tokenizer: load_pairs(config.data, tokenizer),
    prepare=_prepare,
    export=lambda model, tokenizer, path: export_model(model, tokenizer, path),
)


def run_dpo(config: DPORunConfig) -> dict:
    """Train (or resume, or skip if finished); returns the summary written to summary.json."""
    return run_stage(config, DPO_STAGE, log)


# ---- CLI -------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "dpo", "dpo.beta=0.1 dpo.loss_type=ipo optim.total_steps=50")


def run(args) -> int:
    return run_config_command(args, DPORunConfig, run_dpo, ("step", "eval_before", "eval_after", "export"))
