"""TRL's config names, accepted as aliases in the stage configs (SFT, DPO, reward model, RLHF).

TRL's configs are flat (`max_steps: 100`); ours are sectioned (`optim: {total_steps: 100}`). An alias
is written where TRL writes it: at the top level of a stage config file (or of a stage's mapping in a
pipeline config), or as a `name=value` override. `TRL_NAMES` is the one table; a row maps a TRL name to
our dotted key, and a name with several rows takes the first whose key exists in the config class
(`beta` is `dpo.beta` in DPO, `grpo.beta` in RLHF). `{algorithm}` in a key is the config's algorithm
(ppo | grpo). Values TRL spells differently are converted (`max_grad_norm: 0` is no clipping, i.e.
`clip_norm: null`); one that has no counterpart is a ConfigError naming the ones that do.

`per_device_train_batch_size` is per device and per micro-batch, ours is global per optimizer step:
    train.batch_size = per_device_train_batch_size * grad_accum * data-parallel devices
with the data-parallel devices the mesh's `data * fsdp` (mesh.data -1: all that fsdp and tensor leave
of mesh.devices, or of every device when that is 0). In RLHF the same product is
`{algorithm}.minibatch_size` (its train.batch_size counts prompts per rollout).

An alias and our own key for the same thing in one place (the file, or the overrides) is an error;
an override (either name) replaces the file's value, as overrides do. Every alias used is reported
(`Resolved.notes`), and `--print-config` prints the notes above the resolved config.
"""

from __future__ import annotations

import dataclasses
import logging
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from align.config_io import ConfigError, parse_override, where_is

log = logging.getLogger("align.config")


@dataclasses.dataclass(frozen=True)
class Alias:
    trl: str  # TRL's name
    ours: str  # our dotted key ("{algorithm}" = the config's algorithm)
    convert: Callable[[Any, str], Any] | None = None  # (TRL value, where) -> ours
    stated: str = ""  # what the docs table says besides the key


def _choices(mapping: Mapping[Any, Any]) -> Callable[[Any, str], Any]:
    def convert(value, where):
        key = value[0] if isinstance(value, list) and len(value) == 1 else value  # DPO's loss_type: a list
        if isinstance(key, (list, dict)) or key not in mapping:
            names = ", ".join(repr(k) for k in mapping)
            raise ConfigError(f"{where}: {value!r} has no counterpart here; accepted: {names}")
        return mapping[key]

    return convert


def _no_clip_at_zero(value, where):
    return None if value == 0 else value  # transformers' Trainer clips only when max_grad_norm > 0


def _report_list(value, where):
    if value in ("none", None):
        return []
    return [value] if isinstance(value, str) else value


PER_DEVICE = "per_device_train_batch_size"
_OPTIM = [
    Alias("max_steps", "optim.total_steps"),
    Alias("learning_rate", "optim.learning_rate"),
    Alias("warmup_steps", "optim.warmup_steps"),
    Alias("weight_decay", "optim.weight_decay"),
    Alias("adam_beta1", "optim.b1"),
    Alias("adam_beta2", "optim.b2"),
    Alias("adam_epsilon", "optim.eps"),
    Alias("max_grad_norm", "optim.clip_norm", _no_clip_at_zero, "0 -> null (no clipping)"),
    Alias(
        "lr_scheduler_type",
        "optim.schedule",
        _choices(
            {
                "cosine": "cosine",
                "linear": "linear",
                "constant": "constant",
                "constant_with_warmup": "constant",
            }
        ),
        "constant_with_warmup -> constant (ours always warms up over warmup_steps)",
    ),
]
_TRAIN = [
    Alias("gradient_accumulation_steps", "train.grad_accum"),
    Alias("gradient_accumulation_steps", "{algorithm}.grad_accum"),
    # RLHF first: its train.batch_size counts prompts per rollout, not rows per update
    Alias(PER_DEVICE, "{algorithm}.minibatch_size", stated="RLHF: n x grad_accum x data-parallel devices"),
    Alias(
        PER_DEVICE,
        "train.batch_size",
        stated="n x grad_accum x data-parallel devices (mesh.data x mesh.fsdp)",
    ),
    Alias("logging_steps", "train.log_every"),
    Alias("eval_steps", "train.eval_every"),
    Alias("save_steps", "train.checkpoint_every"),
    Alias("save_total_limit", "train.keep_checkpoints"),
    Alias("seed", "train.seed"),
    Alias("report_to", "train.report_to", _report_list, "a name -> [name]; none -> []"),
    Alias("model_name_or_path", "model.spec"),
]
_DATA_AND_LOSSES = [
    Alias("max_length", "data.max_length"),
    Alias("packing", "data.packing"),
    Alias("beta", "dpo.beta"),
    Alias("beta", "grpo.beta"),
    Alias("loss_type", "dpo.loss_type", _choices({"sigmoid": "sigmoid", "ipo": "ipo"})),
    Alias(
        "loss_type",
        "grpo.aggregation",
        _choices({"grpo": "sequence", "dapo": "token"}),
        "grpo -> sequence, dapo -> token",
    ),
    Alias("label_smoothing", "dpo.label_smoothing"),
    Alias("center_rewards_coefficient", "center_coef"),
]
_RL = [
    # PPO: the names of TRL's PPOConfig (trl <= 0.2x; TRL 1.x dropped PPO)
    Alias("num_ppo_epochs", "ppo.ppo_epochs"),
    Alias("cliprange", "ppo.clip_eps"),
    Alias("cliprange_value", "ppo.clip_value"),
    Alias("vf_coef", "ppo.vf_coef"),
    Alias("gamma", "ppo.gamma"),
    Alias("lam", "ppo.lam"),
    Alias("kl_coef", "ppo.kl_coef"),
    Alias("whiten_rewards", "ppo.whiten_rewards"),
    Alias("response_length", "ppo.rollout.sampling.max_new_tokens"),
    Alias("num_generations", "grpo.group_size"),
    Alias("num_iterations", "grpo.num_iterations"),
    Alias("epsilon", "grpo.clip_eps"),
    Alias("epsilon_high", "grpo.clip_eps_high"),
    Alias("max_completion_length", "grpo.rollout.sampling.max_new_tokens"),
    Alias(
        "scale_rewards",
        "grpo.normalize_std",
        _choices({"group": True, True: True, "none": False, False: False}),
    ),
    Alias("temperature", "{algorithm}.rollout.sampling.temperature"),
    Alias("missing_eos_penalty", "{algorithm}.missing_eos_penalty"),
]
TRL_NAMES: tuple[Alias, ...] = tuple(_OPTIM + _TRAIN + _DATA_AND_LOSSES + _RL)

# TRL names that exist in a config class under another meaning: refused, with what to write instead.
# (RLHF's optim.total_steps is derived from train.iterations; TRL's GRPO max_steps counts updates.)
REFUSED: dict[tuple[str, str], str] = {
    ("max_steps", "train.iterations"): "RLHF runs train.iterations rollouts (optim.total_steps is derived); "
    "set train.iterations",
}


def field_type(cls, path: str):
    """The type of dotted field `path` of dataclass `cls` (Optional stripped), else None."""
    tp = cls
    for name in path.split("."):
        tp = _unwrap(tp)
        if not dataclasses.is_dataclass(tp) or name not in {f.name for f in dataclasses.fields(tp)}:
            return None
        tp = typing.get_type_hints(tp)[name]
    return tp


def _unwrap(tp):
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) in (typing.Union, _UNION) and len(args) == 1 else tp


_UNION = type(int | None)


def lookup(cls, data: Mapping, path: str) -> Any:
    """The value at dotted `path`: from `data` when set there, else the config class's default."""
    node: Any = data
    for name in path.split("."):
        if not isinstance(node, Mapping) or name not in node:
            return _default(cls, path)
        node = node[name]
    return node


def _default(cls, path: str) -> Any:
    value: Any = None
    tp = cls
    for name in path.split("."):
        tp = _unwrap(tp)
        field = {f.name: f for f in dataclasses.fields(tp)}[name]
        if value is not None:
            value = getattr(value, name)
        elif field.default is not dataclasses.MISSING:
            value = field.default
        elif field.default_factory is not dataclasses.MISSING:
            value = field.default_factory()
        else:
            return None
        tp = typing.get_type_hints(tp)[name]
    return value


def has_key(data: Mapping, path: str) -> bool:
    node: Any = data
    for name in path.split("."):
        if not isinstance(node, Mapping) or name not in node:
            return False
        node = node[name]
    return True


def set_key(data: dict, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = data
    for name in parents:
        child = node.get(name)
        node[name] = dict(child) if isinstance(child, Mapping) else {}
        node = node[name]
    node[last] = value


def target(cls, data: Mapping, name: str, where: str) -> Alias | None:
    """The row of TRL name `name` that applies to config class `cls`; None when `name` is no alias.

    A TRL name with no counterpart in `cls`, or refused there, is a ConfigError saying so."""
    rows = [a for a in TRL_NAMES if a.trl == name]
    if not rows or field_type(cls, name) is not None:  # a field of our own is never renamed
        return None
    for (trl, marker), reason in REFUSED.items():
        if trl == name and field_type(cls, marker) is not None:
            raise ConfigError(f"{where}: TRL's {name} is not accepted here: {reason}")
    algorithm = str(lookup(cls, data, "algorithm")) if field_type(cls, "algorithm") else ""
    for row in rows:
        ours = row.ours.replace("{algorithm}", algorithm)
        if field_type(cls, ours) is not None:
            return dataclasses.replace(row, ours=ours)
    raise ConfigError(
        f"{where}: TRL's {name} has no counterpart in {cls.__name__} (it would be "
        f"{' or '.join(r.ours for r in rows)})"
    )


@dataclasses.dataclass
class Resolved:
    """What `resolve` did: the notes name each alias used and the key it set."""

    notes: list[str] = dataclasses.field(default_factory=list)
    per_device: str | None = None  # our key holding a PerDevice value, finished at the end


@dataclasses.dataclass(frozen=True)
class PerDevice:
    """A per-device batch size in the data tree until grad_accum and the mesh are known."""

    value: Any
    where: str


def rename(cls, data: Mapping, source: str, resolved: Resolved) -> dict:
    """`data` (one layer: a file's top level) with TRL names replaced by our keys; an error in a
    renamed value is then reported at the TRL name's line."""
    out = dict(data)
    lines = getattr(source, "lines", None)
    for name in [k for k in data if isinstance(k, str)]:
        where = where_is(source, name)
        row = target(cls, out, name, where)
        if row is None:
            continue
        if has_key(out, row.ours):
            raise ConfigError(
                f"{where}: {name} (TRL's name for {row.ours}) and {row.ours} are both given; keep one"
            )
        _put(out, row, out.pop(name), where, resolved)
        if lines is not None and name in lines:
            lines[row.ours] = lines[name]
    return out


def _put(data: dict, row: Alias, value: Any, where: str, resolved: Resolved) -> None:
    if row.trl == PER_DEVICE:
        resolved.per_device = row.ours
        set_key(data, row.ours, PerDevice(value, where))  # `finish` turns it into our global batch
        return
    ours = row.convert(value, where) if row.convert else value
    set_key(data, row.ours, ours)
    shown = "" if ours == value else f" ({value!r} -> {ours!r})"
    resolved.notes.append(f"{row.trl} -> {row.ours}{shown}  [{where}]")


def split_overrides(
    cls, data: Mapping, overrides: Sequence[str]
) -> tuple[list[str], list[tuple[Alias, Any, str]]]:
    """(our overrides as they are, [(row, value, text)] of the TRL-named ones)."""
    plain, named = [], []
    for text in overrides:
        keys, value = parse_override(text)
        row = target(cls, data, keys[0], f"override {text!r}") if len(keys) == 1 else None
        if row is None:
            plain.append(text)
        else:
            named.append((row, value, text))
    given = {".".join(parse_override(t)[0]) for t in plain}
    for row, _, text in named:
        if row.ours in given:
            raise ConfigError(
                f"override {text!r}: TRL's name for {row.ours}, which another override sets; keep one"
            )
    return plain, named


def apply_named(data: dict, named, resolved: Resolved) -> dict:
    data = dict(data)
    for row, value, text in named:
        _put(data, row, value, f"override {text!r}", resolved)
    return data


def finish(cls, data: dict, resolved: Resolved, device_count: Callable[[], int] | None = None) -> dict:
    """`per_device_train_batch_size` turned into our global batch (see the module docstring)."""
    ours = resolved.per_device
    marker = lookup(cls, data, ours) if ours else None
    if not isinstance(marker, PerDevice):  # none given, or an override of our own key replaced it
        return data
    value, where = marker.value, marker.where
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: {PER_DEVICE} must be an integer >= 1, got {value!r}")
    accum_key = ours.rsplit(".", 1)[0] + ".grad_accum"
    accum = lookup(cls, data, accum_key)
    devices, how = _data_parallel(cls, data, device_count)
    data = dict(data)
    set_key(data, ours, value * accum * devices)
    resolved.notes.append(
        f"{PER_DEVICE} -> {ours} = {value} per device x {accum_key} {accum} x {devices} data-parallel "
        f"device(s) ({how}) = {value * accum * devices}  [{where}]"
    )
    return data


def _data_parallel(cls, data: Mapping, device_count: Callable[[], int] | None) -> tuple[int, str]:
    if field_type(cls, "mesh") is None:
        return 1, "runs on one device"
    data_axis, fsdp, tensor = (lookup(cls, data, f"mesh.{k}") for k in ("data", "fsdp", "tensor"))
    if data_axis != -1:
        return data_axis * fsdp, f"mesh.data {data_axis} x mesh.fsdp {fsdp}"
    n = lookup(cls, data, "mesh.devices")
    if not n and device_count is None:
        raise ConfigError(f"{PER_DEVICE} with mesh.data -1 needs the device count here: set mesh.devices")
    n = n or device_count()
    return max(n // (fsdp * tensor), 1) * fsdp, f"mesh.data -1: {n} device(s) / mesh.tensor {tensor}"


def build_stage(cls, mapping: Mapping, source: str, device_count=None, **fixed) -> Any:
    """A stage's typed config from a mapping (a pipeline config's stage section) with TRL's names
    accepted, each alias used logged, and the caller's values for the `fixed` keys."""
    from align.config_io import build

    resolved = Resolved()
    data = {**rename(cls, mapping, source, resolved), **fixed}
    config = build(cls, finish(cls, data, resolved, device_count), source=source)
    for note in resolved.notes:
        log.info("%s: TRL name %s", source, note)
    return config


def markdown_table() -> str:
    """The table as docs/trl_names.md shows it (tests/pipelines/test_trl_names.py keeps them equal)."""
    rows = ["| TRL name | our key (first that exists in the stage's config) | value |", "|---|---|---|"]
    for name in dict.fromkeys(a.trl for a in TRL_NAMES):
        ours = " or ".join(f"`{a.ours}`" for a in TRL_NAMES if a.trl == name)
        stated = "; ".join(a.stated for a in TRL_NAMES if a.trl == name and a.stated)
        rows.append(f"| `{name}` | {ours} | {stated} |")
    refused = [
        f"| `{trl}` | refused where `{marker}` exists | {why} |" for (trl, marker), why in REFUSED.items()
    ]
    return "\n".join(rows + refused) + "\n"
