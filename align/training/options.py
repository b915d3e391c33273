"""The option sections every training config shares: `train` (batching, logging, evaluation,
checkpoints, what trains) and `mesh` (how the devices are laid out)."""

from __future__ import annotations

import dataclasses

import jax

from align import checks
from align.model.sharding import MeshConfig, make_mesh
from align.training.lora import LoRAConfig
from align.training.metrics import check_report_to


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
    report_to: tuple[str, ...] = ("jsonl", "tensorboard")  # of jsonl | tensorboard | wandb (metrics.py)

    def __post_init__(self):
        check_report_to(self.report_to)
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
