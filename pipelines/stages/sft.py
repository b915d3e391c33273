"""Supervised fine-tuning: `align sft --config configs/sft/<name>.yaml [key=value ...]`.

Run directory (`output_dir`):
    config.yaml          the resolved config
    checkpoints/<step>/  Orbax checkpoints (weights, Adam moments, rng, data position)
    metrics.jsonl, tb/   training / eval metrics (JSON lines, TensorBoard)
    eval_before.json     held-out metrics of the starting model (computed once)
    splits.json          benchmark sources' train / held-out split: seed, file hash, ids per side
    export/              the final model as a Hugging Face directory (+ tokenizer files)
    summary.json         written last: its presence means the run is finished and is not redone

A run that stopped early resumes from its latest checkpoint; a finished one returns its summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
from pathlib import Path

import jax.numpy as jnp

from align.data import (
    CompletionExample,
    DataOrder,
    PreferenceExample,
    Tokenizer,
    batches,
    encode_sft,
    load_records,
    pack_batch,
    packed_batches,
    pad_batch,
)
from align import checks
from align.data.splits import SplitOptions, heldout_split
from align.errors import InvalidInput
from align.hub import ModelOptions, load_model
from align.training import OptimConfig, chunked_weighted_nll, make_optimizer
from align.distributed import process_count
from align.training.feed import encode_by_process, local_rows
from align.training.optim import learning_rate_schedule
from align.training.options import MeshOptions, TrainOptions, make_run_mesh
from align.training.run import prepare_run, with_lora
from align.training.stage import LoopFit, StageData, StageSpec, held_out_eval, run_stage
from align.config_io import to_dict
from pipelines.commands.config import add_config_arguments, run_config_command
from pipelines.stages import training_data
from pipelines.stages.training_data import DataSource

log = logging.getLogger("align.sft")


@dataclasses.dataclass(frozen=True)
class SFTDataOptions:
    path: str = ""  # file or directory (align.data.load_records); preference rows train on `chosen`
    sources: tuple[DataSource, ...] = ()  # several sources of any format instead of `path`
    split: str = "train"  # file split inside a directory
    limit: int | None = None  # first N valid rows only
    max_length: int = 256  # T: every batch is [batch_size, max_length]
    truncation: str = "keep_start"  # keep_start | keep_end | drop | error
    packing: bool = False  # first-fit several documents per row
    skip_invalid: bool = True
    heldout: SplitOptions = SplitOptions()

    def __post_init__(self):
        checks.at_least(self, 1, "max_length")
        checks.at_least(self, 1, "limit", optional=True)
        checks.one_of(self, "truncation", ("keep_start", "keep_end", "drop", "error"))
        if self.sources and (self.path or self.limit):
            raise ValueError("data.sources replaces data.path and data.limit (each source has its own limit)")


@dataclasses.dataclass(frozen=True)
class SFTConfig:
    output_dir: str
    model: ModelOptions = ModelOptions()
    data: SFTDataOptions = SFTDataOptions()
    optim: OptimConfig = OptimConfig()  # optim.total_steps is the run length
    train: TrainOptions = TrainOptions()
    mesh: MeshOptions = MeshOptions()
    chunk_size: int = 1024  # tokens per logits tile in the loss: the [B, T, V] logits never exist whole
    export: bool = True

    def __post_init__(self):
        checks.at_least(self, 1, "chunk_size")


def sft_loss(chunk_size: int = 1024):
    """loss_fn(model, batch, rng): token-mean NLL of the batch's supervised targets, weight = token count.

        loss = sum_{b,t} -log p(targets[b,t]) * mask[b,t] / max(sum mask, 1)    (as `nll_loss`)

    The logits are formed `chunk_size` tokens at a time in float32, and since the loss is linear in
    the log-probs each tile's gradient is taken in the forward pass (`chunked_weighted_nll`: three
    unembedding matmuls per tile under `jax.grad` instead of four).
    """

    def loss_fn(model, batch, rng):
        del rng
        hidden = model.hidden(batch["tokens"], batch["positions"], batch["segment_ids"])  # [B, T, D]
        mask = batch["loss_mask"].astype(jnp.float32)
        n_tokens = jnp.sum(mask)
        loss = chunked_weighted_nll(
            hidden,
            model.unembed_matrix(),
            batch["targets"],
            mask / jnp.maximum(n_tokens, 1.0),
            chunk_size=chunk_size,
            final_softcap=model.config.final_logit_softcap,
        )
        return loss, {"loss": loss, "n_tokens": n_tokens, "weight": n_tokens}

    return loss_fn


def as_sft_example(example):
    """Preference rows train on their chosen response (prompt -> chosen); other formats pass through."""
    if isinstance(example, PreferenceExample):
        return CompletionExample(example.prompt, example.chosen, example.origin)
    return example


def read_examples(options: SFTDataOptions, out_dir: str | None = None) -> tuple[list, dict]:
    """(examples, report) of `path` or of every source; the sources' split records go to
    splits.json in `out_dir`."""
    if options.sources:
        examples, report, records = training_data.read_all(options.sources, skip_invalid=options.skip_invalid)
        if out_dir is not None and (path := training_data.write_split_records(out_dir, records)):
            report["splits"] = str(path)
        return examples, report
    if not options.path:
        raise InvalidInput(
            "data.path is empty: set it (or data.sources) in the config or with data.path=FILE"
        )
    records = load_records(
        options.path, options.split, limit=options.limit, skip_invalid=options.skip_invalid
    )
    return list(records), {"rows_loaded": len(records), "rows_skipped": records.report.skipped}


def _has_loss(seq) -> bool:
    return bool(seq.loss_mask[1:].any())


def _encode(part: list, tokenizer: Tokenizer, options: SFTDataOptions, by_process: bool):
    """(sequences with a supervised token, truncation counts); by_process: each process tokenizes its
    share and then only the rows it feeds (align.training.feed.encode_by_process), same sequences."""
    encode = functools.partial(
        encode_sft, tokenizer=tokenizer, max_length=options.max_length, truncation=options.truncation
    )
    if by_process:

        def one(i):
            seqs, stats = encode([part[i]])
            return (seqs[0] if seqs else None), stats

        return encode_by_process(len(part), one, _has_loss)
    seqs, stats = encode(part)
    return [s for s in seqs if _has_loss(s)], stats


def load_sft_data(options: SFTDataOptions, tokenizer: Tokenizer, out_dir: str | None = None) -> StageData:
    """Train and held-out sequences with a report; sequences without a loss token are dropped."""
    records, report = read_examples(options, out_dir)
    examples = [as_sft_example(e) for e in records]
    train_ex, held_ex = heldout_split(examples, options.heldout)
    out = []
    for name, part in (("train", train_ex), ("heldout", held_ex)):
        # Several processes share the training set's tokenizing; the small held-out set is whole on each.
        kept, stats = _encode(part, tokenizer, options, by_process=name == "train" and process_count() > 1)
        report[name] = {
            "examples": len(part),
            "sequences": len(kept),
            "dropped_no_loss": stats.examples - stats.dropped - len(kept),
            "truncation": dataclasses.asdict(stats),
        }
        out.append(kept)
    if not out[0]:
        raise InvalidInput(f"{options.path or 'data.sources'}: no training sequence with a supervised token")
    return StageData(out[0], out[1], report)


def _train_batches(seqs, config: SFTConfig, pad_id: int, take: slice | None = None):
    """make_batches(position): this process's `take` rows (default all) of every [batch_size,
    max_length] batch."""
    rows, length = config.train.batch_size, config.data.max_length
    take = slice(0, rows) if take is None else take
    order = DataOrder(len(seqs), seed=config.train.seed)
    if config.data.packing:
        return lambda pos: packed_batches(seqs, order, pos, rows, length, pad_id=pad_id, take=take)
    mine = take.stop - take.start
    return lambda pos: batches(
        seqs, order, pos, rows, lambda b: pad_batch(b, length, rows=mine, pad_id=pad_id), take=take
    )


def _eval_batches(seqs, config: SFTConfig, pad_id: int, take: slice | None = None):
    rows, length = config.train.batch_size, config.data.max_length
    take = slice(0, rows) if take is None else take
    for i in range(0, len(seqs), rows):
        chunk = seqs[i : i + rows]
        if config.data.packing:
            batch = pack_batch(chunk, length, rows=rows, pad_id=pad_id)
            yield {k: v[take] for k, v in batch.items()}  # packing spans the whole chunk
        else:
            yield pad_batch(chunk[take], length, rows=take.stop - take.start, pad_id=pad_id)


def _prepare(config: SFTConfig, model, tokenizer, data: StageData) -> LoopFit:
    """The run (resumed when possible) with SFT's loss, batches and held-out evaluation."""
    run = prepare_run(
        with_lora(model, config.train),
        make_optimizer(config.optim),
        sft_loss(config.chunk_size),
        run_dir=config.output_dir,
        train=config.train,
        mesh=make_run_mesh(config.mesh),
        learning_rate=learning_rate_schedule(config.optim),
        manifest={"config": to_dict(config), "model_config": model.config},
    )
    pad, take = tokenizer.pad_id, local_rows(run.mesh, config.train.batch_size)
    held = lambda: _eval_batches(data.heldout, config, pad, take)  # noqa: E731
    evaluate = held_out_eval(run, held, config.train.eval_batches) if data.heldout else None
    return LoopFit(run, _train_batches(data.train, config, pad, take), config.optim.total_steps, evaluate)


def _load(config: SFTConfig):
    return load_model(config.model)


SFT_STAGE = StageSpec(
    load=_load,
    data=lambda config, tokenizer: load_sft_data(config.data, tokenizer, config.output_dir),
    prepare=_prepare,
    export=lambda model, tokenizer, path: export_model(model, tokenizer, path),
)


def run_sft(config: SFTConfig) -> dict:
    """Train (or resume, or skip if finished); returns the summary written to summary.json."""
    return run_stage(config, SFT_STAGE, log)


def export_model(model, tokenizer: Tokenizer, path: Path) -> Path:
    """A Hugging Face directory of the (LoRA-merged) decoder with the tokenizer files."""
    from align.model.hf_io import save_hf_dir
    from align.training.lora import LoRADecoder, merge_lora

    if isinstance(model, LoRADecoder):
        model = merge_lora(model)
    return save_hf_dir(model, path, tokenizer=tokenizer.hf)


# ---- CLI -------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "sft", "optim.learning_rate=1e-4 train.batch_size=8")


def run(args) -> int:
    return run_config_command(args, SFTConfig, run_sft, ("step", "eval_before", "eval_after", "export"))
