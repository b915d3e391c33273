"""Reward-model training: Bradley-Terry on preference pairs, on align.training's step/loop/checkpoints.

    summary = run_rm_training(RMConfig(output_dir="runs/rm", model=ModelOptions(spec="runs/sft/export"), ...))

The backbone comes from any model spec (typically the SFT export); a spec that is itself a reward
model export continues from its head. Run directory, resume and skip rules are those of the SFT
pipeline (pipelines/stages/sft.py): checkpoints/, metrics.jsonl, tb/, eval_before.json, export/ (a HF
sequence-classification directory), summary.json (written last; a finished run is not redone).
"""

from __future__ import annotations

import dataclasses
import functools
import logging

import numpy as np
from flax import nnx

from align.config_io import to_dict
from align.checks import FieldError
from align.model.heads import POOLS as HEAD_POOLS
from align.data import DataOrder, batches, preference_batch
from align.hub import ModelOptions, load_model
from align.reward import (
    HEAD_BIAS,
    backbone_of,
    build_reward_model,
    is_reward_model_dir,
    load_reward_model,
    pair_rewards,
    save_reward_model,
)
from align.training import OptimConfig, make_optimizer
from align.training.optim import excluding, learning_rate_schedule, trainable_filter
from align.training.options import MeshOptions, TrainOptions, make_run_mesh
from align.training.feed import local_rows
from align.training.run import prepare_run, with_lora
from align.training.stage import FitResult, LoopFit, StageData, StageSpec, run_stage
from reward_models.data import RMData, RMDataOptions, load_pairs
from reward_models.evaluate import evaluate_reward_model, reward_report
from reward_models.losses import bradley_terry_loss
from reward_models.features import FEATURE_POOL, POOLS, FeatureCache, weights_key
from reward_models.probe import DEFAULT_L2_GRID, fit_probe, head_features

log = logging.getLogger("align.rm")


@dataclasses.dataclass(frozen=True)
class ProbeOptions:
    """fit=probe: l2 picked from `l2_grid` by `folds`-fold cross-validation on the training pairs.

    The head reads the final layer pooled by `head_pool`, a ScoreModel pool (align.model.heads.POOLS):
    "last" (the last token; what transformers' sequence classifier computes from the export) or
    "response_mean" (the mean over the response tokens; with a cache_dir, "mean" must be in `pools`).
    The feature pass (reward_models.probe.head_features) runs `batch_size` pairs per forward, each batch
    padded to a multiple of `bucket` tokens. With a cache_dir it stores every pair's features there,
    keyed by the weights and tokens, so a rerun or another head reads them instead of running the
    model; `pools` and `layers` say what it computes and stores besides (for heads fitted off-line on
    the cache; without a cache_dir only the head's features are computed)."""

    l2_grid: tuple[float, ...] = DEFAULT_L2_GRID
    folds: int = 5
    batch_size: int = 8  # pairs per feature forward
    cache_dir: str | None = None
    pools: tuple[str, ...] = ("last",)  # subset of reward_models.features.POOLS; "last" always included
    layers: tuple[int, ...] = ()  # 1-based blocks; () = the final one (always included)
    bucket: int = 64  # each feature batch padded to a multiple of this many tokens
    head_pool: str = "last"  # the exported ScoreModel's pool: last | response_mean

    def __post_init__(self):
        if "last" not in self.pools or not set(self.pools) <= set(POOLS):
            raise ValueError(f"probe.pools={self.pools}: expected 'last' and others of {POOLS}")
        if self.head_pool not in HEAD_POOLS:
            raise FieldError("head_pool", f"{self.head_pool!r} is not one of {', '.join(HEAD_POOLS)}")
        if self.cache_dir and self.feature_pool not in self.pools:
            raise FieldError(
                "head_pool", f"{self.head_pool} reads the {self.feature_pool!r} features: add it to pools"
            )

    @property
    def feature_pool(self) -> str:
        """The reward_models.features pool the head reads."""
        return FEATURE_POOL[self.head_pool]


@dataclasses.dataclass(frozen=True)
class RMConfig:
    output_dir: str
    model: ModelOptions = ModelOptions()
    data: RMDataOptions = RMDataOptions()
    optim: OptimConfig = OptimConfig()  # optim.total_steps is the run length
    train: TrainOptions = TrainOptions()
    mesh: MeshOptions = MeshOptions()
    margin: float = 0.0  # the chosen reward must win by this much (Llama 2's margin loss)
    center_coef: float = 0.0  # weight of mean((r_c + r_r)^2)
    export: bool = True
    fit: str = "finetune"  # finetune: the training loop below | probe: head only, frozen backbone (probe.py)
    probe: ProbeOptions = ProbeOptions()

    def __post_init__(self):
        if self.fit not in ("finetune", "probe"):
            raise ValueError(f"fit={self.fit!r}: expected finetune or probe")


def _cut(data) -> tuple:
    return data.split, data.limit, data.heldout.heldout_fraction, data.heldout.seed


def warn_if_heldout_overlaps(sft, rm, name: str) -> None:
    """Warn when reward model `name` (data section `rm`) reads the SFT data file (`sft`) with another
    held-out cut. heldout_split is a function of (rows, fraction, seed): on the SFT file, a reward
    model cut any other way holds out pairs whose chosen responses SFT trained on, which inflates its
    held-out accuracy (and the reward normalisation PPO takes from it)."""
    if sft.path == rm.path and _cut(sft) != _cut(rm):
        log.warning(
            "reward_models.%s reads the SFT data file %s with a different held-out cut (split, limit, "
            "heldout_fraction, seed: %s against SFT's %s), so some of its held-out pairs were SFT "
            "training rows; give both the same values",
            name,
            rm.path,
            _cut(rm),
            _cut(sft),
        )


def rm_loss(margin: float = 0.0, center_coef: float = 0.0):
    """loss_fn(model, batch, rng): Bradley-Terry on the batch's [B, P] rewards (every row a real pair)."""

    def loss_fn(model, batch, rng):
        del rng
        r = pair_rewards(model, batch)  # [B, P]
        loss, metrics = bradley_terry_loss(r[:, 0], r[:, 1], margin if margin else None, center_coef)
        return loss, {**metrics, "n_pairs": float(r.shape[0])}

    return loss_fn


def rm_trainable(kind: str):
    """What trains: the backbone per `kind`, the head's weight always, the head's bias never."""
    backbone = trainable_filter(kind)
    if kind == "lora":
        backbone = nnx.Any(nnx.LoRAParam, nnx.All(nnx.Param, nnx.PathContains("head")))
    return excluding(backbone, HEAD_BIAS)


def load_reward_backbone(config: RMConfig):
    """(ScoreModel, Tokenizer): continue an exported reward model, or a fresh head on a decoder."""
    if is_reward_model_dir(config.model.spec):
        param_dtype, dtype = config.model.dtypes()
        model, tokenizer = load_reward_model(config.model.spec, param_dtype=param_dtype, dtype=dtype)
        model.backbone.remat = config.model.remat
        model.backbone = with_lora(model.backbone, config.train)
        return model, tokenizer
    backbone, tokenizer = load_model(config.model)
    return build_reward_model(with_lora(backbone, config.train), seed=config.model.seed), tokenizer


def _evaluator(data: RMData, config: RMConfig, pad_id: int, batch_size: int, of_state: bool, mesh):
    """evaluate(state or model): pairwise accuracy, reward statistics and the length-only baseline on
    the held-out pairs, scored on `mesh` (every process gets the same report)."""

    def evaluate(x):
        return evaluate_reward_model(
            x.model() if of_state else x,
            data.heldout,
            batch_size=batch_size,
            length=config.data.max_length,
            pad_id=pad_id,
            progress=config.train.progress,
            lengths=data.heldout_lengths,
            tolerance=config.data.length_tolerance,
            files=data.heldout_files,
            mesh=mesh,
        )

    return evaluate if data.heldout else None


def _prepare_finetune(config: RMConfig, model, tokenizer, data: StageData) -> LoopFit:
    """The run (resumed when possible) with the Bradley-Terry loss; the head's bias stays frozen."""
    run = prepare_run(
        model,
        make_optimizer(config.optim),
        rm_loss(config.margin, config.center_coef),
        run_dir=config.output_dir,
        train=config.train,
        mesh=make_run_mesh(config.mesh),
        trainable=rm_trainable(config.train.trainable),
        learning_rate=learning_rate_schedule(config.optim),
        manifest={"config": to_dict(config), "model_config": model.backbone.config},
    )
    rows, length, pad = config.train.batch_size, config.data.max_length, tokenizer.pad_id
    order = DataOrder(len(data.train), seed=config.train.seed)
    take = local_rows(run.mesh, rows)  # this process's rows of every batch
    collate = lambda b: preference_batch(b, length, rows=take.stop - take.start, pad_id=pad)  # noqa: E731
    make_batches = lambda position: batches(data.train, order, position, rows, collate, take=take)  # noqa: E731
    evaluate = _evaluator(data, config, pad, rows, of_state=True, mesh=run.mesh)
    return LoopFit(run, make_batches, config.optim.total_steps, evaluate)


class ProbeFit:
    """fit=probe: one feature pass over the training pairs and the head solved exactly (no steps).

    The held-out pairs are evaluated by the model's forward; with probe.cache_dir, by their features
    through the cache instead (reward = w . h, bias 0, which is what the ScoreModel computes from the
    same features pooled as its `pool`: the head is linear)."""

    def __init__(self, config: RMConfig, model, tokenizer, data: StageData):
        self.config, self.model, self.pad_id, self.data = config, model, tokenizer.pad_id, data
        model.pool = config.probe.head_pool  # the fitted head reads its features so pooled, as does eval
        self.start, self.start_step = model, 0
        self._heldout = None
        if config.probe.cache_dir:
            self.evaluate = self._evaluate if data.heldout else None
        else:
            mesh = make_run_mesh(config.mesh)
            self.evaluate = _evaluator(data, config, self.pad_id, config.probe.batch_size, False, mesh)

    def finished(self, result: FitResult) -> bool:
        return True

    def run(self) -> FitResult:
        model, report = self.fit()
        log.info("probe: %s", report)
        return FitResult(
            step=None,
            stopped="done",
            final=model,
            model=lambda: model,
            summary={"fit": "probe", "probe": report},
        )

    @functools.cached_property
    def _features(self) -> dict:
        """head_features' arguments: the cache and what it stores besides the head's features (nothing
        without a cache, where nothing else would be kept). Built once: the cache key hashes every
        backbone weight, and fitting the head leaves them unchanged."""
        probe = self.config.probe
        cache = None
        if probe.cache_dir:
            cache = FeatureCache(probe.cache_dir, key=weights_key(backbone_of(self.model)))
        return dict(
            batch_size=probe.batch_size,
            bucket=probe.bucket,
            pad_id=self.pad_id,
            cache=cache,
            pools=probe.pools if cache else (),
            layers=probe.layers if cache else (),
            mesh=make_run_mesh(self.config.mesh),
        )

    def _bar(self, pairs, desc: str):
        from tqdm.auto import tqdm

        quiet = not self.config.train.progress
        return tqdm(total=len(pairs), desc=desc, unit="pair", disable=quiet, dynamic_ncols=True)

    def _evaluate(self, model):
        if self._heldout is None:
            with self._bar(self.data.heldout, "rm held-out features") as bar:
                self._heldout = head_features(model, self.data.heldout, progress=bar.update, **self._features)
        w = np.asarray(model.head.w[...], np.float64)
        b = float(np.asarray(model.head.b[...]))
        data, tolerance = self.data, self.config.data.length_tolerance
        return reward_report(self._heldout @ w + b, data.heldout_lengths, data.heldout_files, tolerance)

    def fit(self):
        """(the model with its solved head, the probe report)."""
        probe = self.config.probe
        with self._bar(self.data.train, "rm probe features") as bar:
            return fit_probe(
                self.model,
                self.data.train,
                l2_grid=probe.l2_grid,
                folds=probe.folds,
                seed=self.config.train.seed,
                progress=bar.update,
                **self._features,
            )


def _prepare(config: RMConfig, model, tokenizer, data: StageData):
    if config.fit == "probe":
        return ProbeFit(config, model, tokenizer, data)
    return _prepare_finetune(config, model, tokenizer, data)


RM_STAGE = StageSpec(
    load=lambda config: load_reward_backbone(config),
    data=lambda config, tokenizer: load_pairs(config.data, tokenizer),
    prepare=_prepare,
    export=lambda model, tokenizer, path: save_reward_model(model, path, tokenizer=tokenizer),
)


def run_rm_training(config: RMConfig) -> dict:
    """Train (or resume, or skip if finished) a reward model; returns the summary (summary.json)."""
    return run_stage(config, RM_STAGE, log)
