"""TRL's config names as aliases in every stage config (align.config_aliases): each TRL name against a
hand-written expectation of our key per stage, the config it gives equal to the one our key gives,
conflicts, overrides, per-device batch sizes, --print-config notes and the pipeline's stage sections."""

import argparse
import dataclasses
import json

import pytest

from align.config_aliases import TRL_NAMES, lookup, markdown_table
from align.config_io import ConfigError, load_config, load_config_noting
from pipelines.commands.config import run_config_command
from pipelines.pipeline import Pipeline, load_quickstart
from pipelines.stages.dpo import DPORunConfig
from pipelines.stages.rlhf import RLHFConfig
from pipelines.stages.sft import SFTConfig
from reward_models.train import RMConfig
from tests.paths import ROOT

STAGES = {"sft": SFTConfig, "dpo": DPORunConfig, "rm": RMConfig, "ppo": RLHFConfig, "grpo": RLHFConfig}
ALL3 = ("sft", "dpo", "rm")
# TRL name -> {stage: our key}, written out by hand (not derived from the table); a stage not listed
# has no counterpart and must refuse the name.
EXPECTED = {
    **{
        trl: {s: ours for s in ALL3}
        for trl, ours in [
            ("max_steps", "optim.total_steps"),
            ("logging_steps", "train.log_every"),
            ("eval_steps", "train.eval_every"),
            ("max_length", "data.max_length"),
        ]
    },
    **{
        trl: {s: ours for s in STAGES}
        for trl, ours in [
            ("learning_rate", "optim.learning_rate"),
            ("warmup_steps", "optim.warmup_steps"),
            ("weight_decay", "optim.weight_decay"),
            ("adam_beta1", "optim.b1"),
            ("adam_beta2", "optim.b2"),
            ("adam_epsilon", "optim.eps"),
            ("max_grad_norm", "optim.clip_norm"),
            ("lr_scheduler_type", "optim.schedule"),
            ("save_steps", "train.checkpoint_every"),
            ("save_total_limit", "train.keep_checkpoints"),
            ("seed", "train.seed"),
            ("report_to", "train.report_to"),
            ("model_name_or_path", "model.spec"),
        ]
    },
    "gradient_accumulation_steps": {
        **{s: "train.grad_accum" for s in ALL3},
        "ppo": "ppo.grad_accum",
        "grpo": "grpo.grad_accum",
    },
    "packing": {"sft": "data.packing"},
    "beta": {"dpo": "dpo.beta", "ppo": "grpo.beta", "grpo": "grpo.beta"},
    "loss_type": {"dpo": "dpo.loss_type", "ppo": "grpo.aggregation", "grpo": "grpo.aggregation"},
    "label_smoothing": {"dpo": "dpo.label_smoothing"},
    "center_rewards_coefficient": {"rm": "center_coef"},
    **{
        trl: {"ppo": ours, "grpo": ours}
        for trl, ours in [
            ("num_ppo_epochs", "ppo.ppo_epochs"),
            ("cliprange", "ppo.clip_eps"),
            ("cliprange_value", "ppo.clip_value"),
            ("vf_coef", "ppo.vf_coef"),
            ("gamma", "ppo.gamma"),
            ("lam", "ppo.lam"),
            ("kl_coef", "ppo.kl_coef"),
            ("whiten_rewards", "ppo.whiten_rewards"),
            ("response_length", "ppo.rollout.sampling.max_new_tokens"),
            ("num_generations", "grpo.group_size"),
            ("num_iterations", "grpo.num_iterations"),
            ("epsilon", "grpo.clip_eps"),
            ("epsilon_high", "grpo.clip_eps_high"),
            ("max_completion_length", "grpo.rollout.sampling.max_new_tokens"),
            ("scale_rewards", "grpo.normalize_std"),
        ]
    },
    "temperature": {"ppo": "ppo.rollout.sampling.temperature", "grpo": "grpo.rollout.sampling.temperature"},
    "missing_eos_penalty": {"ppo": "ppo.missing_eos_penalty", "grpo": "grpo.missing_eos_penalty"},
}
# (TRL value, our value): each differs from every stage's default, so a dropped alias fails.
VALUES = {
    "max_steps": (37, 37), "logging_steps": (7, 7), "eval_steps": (9, 9), "max_length": (64, 64),
    "learning_rate": (3e-4, 3e-4), "warmup_steps": (3, 3), "weight_decay": (0.01, 0.01),
    "adam_beta1": (0.8, 0.8), "adam_beta2": (0.95, 0.95), "adam_epsilon": (1e-6, 1e-6),
    "max_grad_norm": (0, None), "lr_scheduler_type": ("constant_with_warmup", "constant"),
    "save_steps": (11, 11), "save_total_limit": (3, 3), "seed": (5, 5), "report_to": ("jsonl", ("jsonl",)),
    "model_name_or_path": ("gemma3-270m", "gemma3-270m"), "gradient_accumulation_steps": (2, 2),
    "packing": (True, True), "beta": (0.3, 0.3), "loss_type": (None, None), "label_smoothing": (0.1, 0.1),
    "center_rewards_coefficient": (0.01, 0.01), "num_ppo_epochs": (3, 3), "cliprange": (0.3, 0.3),
    "cliprange_value": (0.3, 0.3), "vf_coef": (0.2, 0.2), "gamma": (0.99, 0.99), "lam": (0.9, 0.9),
    "kl_coef": (0.1, 0.1), "whiten_rewards": (True, True), "response_length": (16, 16),
    "num_generations": (8, 8), "num_iterations": (2, 2), "epsilon": (0.3, 0.3), "epsilon_high": (0.28, 0.28),
    "max_completion_length": (16, 16), "scale_rewards": ("none", False), "temperature": (0.7, 0.7),
    "missing_eos_penalty": (1.0, 1.0),
}  # fmt: skip
PER_STAGE = {
    ("loss_type", "dpo"): ("ipo", "ipo"),
    ("loss_type", "ppo"): ("grpo", "sequence"),
    ("loss_type", "grpo"): ("grpo", "sequence"),
    ("lr_scheduler_type", "ppo"): ("linear", "linear"),  # RLHF's default is constant
    ("lr_scheduler_type", "grpo"): ("linear", "linear"),
}


def write(tmp_path, stage, lines):
    path = tmp_path / f"{stage}.yaml"
    head = ["output_dir: out"] + (["algorithm: grpo"] if stage == "grpo" else [])
    path.write_text("\n".join(head + lines) + "\n")
    return path


def yaml_value(v):
    return json.dumps(list(v) if isinstance(v, tuple) else v)  # JSON is YAML (null, true, "a", [..])


def nested(key, value):
    """'a.b.c', v -> YAML lines of {a: {b: {c: v}}}."""
    *parents, last = key.split(".")
    return [" " * 2 * i + f"{p}:" for i, p in enumerate(parents)] + [
        " " * 2 * len(parents) + f"{last}: {yaml_value(value)}"
    ]


def test_the_table_is_the_expectation():
    assert {row.trl for row in TRL_NAMES} - {"per_device_train_batch_size"} == set(EXPECTED)


@pytest.mark.parametrize("stage", list(STAGES))
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_alias_on_every_stage(tmp_path, stage, name):
    cls, ours = STAGES[stage], EXPECTED[name].get(stage)
    trl_value, our_value = PER_STAGE.get((name, stage), VALUES[name])
    path = write(tmp_path, stage, [f"{name}: {yaml_value(trl_value)}"])
    if ours is None:  # no counterpart: refused with a located one-line error, never silently dropped
        with pytest.raises(
            ConfigError, match=rf"{stage}.yaml:\d+: TRL's {name} (has no counterpart|is not accepted)"
        ):
            load_config_noting(cls, path)
        return
    config, notes = load_config_noting(cls, path)
    assert lookup(cls, {}, ours) != our_value  # the value is not the default: the alias did set it
    (tmp_path / "ours").mkdir()
    assert config == load_config(cls, write(tmp_path / "ours", stage, nested(ours, our_value)))
    assert [n.split(" [")[0].split(" (")[0].strip() for n in notes] == [f"{name} -> {ours}"]
    # the same alias as an override gives the same config
    overridden, _ = load_config_noting(cls, write(tmp_path, stage, []), [f"{name}={yaml_value(trl_value)}"])
    assert overridden == config


def test_alias_and_our_key_together_are_an_error(tmp_path):
    path = write(tmp_path, "sft", ["max_steps: 5", "optim:", "  total_steps: 6"])
    with pytest.raises(
        ConfigError,
        match=r"sft.yaml:2: max_steps \(TRL's name for optim.total_steps\) and optim.total_steps are both",
    ):
        load_config_noting(SFTConfig, path)
    with pytest.raises(ConfigError, match=r"override 'max_steps=5': TRL's name for optim.total_steps"):
        load_config_noting(SFTConfig, write(tmp_path, "sft", []), ["max_steps=5", "optim.total_steps=6"])


def test_overrides_replace_the_files_value_under_either_name(tmp_path):
    shipped = ROOT / "configs" / "sft" / "tiny_cpu.yaml"  # sets optim.total_steps: 20
    assert load_config_noting(SFTConfig, shipped, ["max_steps=5"])[0].optim.total_steps == 5
    path = write(tmp_path, "sft", ["max_steps: 5"])
    assert load_config_noting(SFTConfig, path, ["optim.total_steps=7"])[0].optim.total_steps == 7


def test_a_bad_value_is_reported_at_the_alias_line(tmp_path):
    path = write(tmp_path, "sft", ["seed: 1", "learning_rate: -1.0"])
    with pytest.raises(ConfigError, match=r"sft.yaml:3: optim.learning_rate"):
        load_config_noting(SFTConfig, path)
    with pytest.raises(
        ConfigError, match=r"sft.yaml:2: .*'polynomial' has no counterpart here; accepted: 'cosine'"
    ):
        load_config_noting(SFTConfig, write(tmp_path, "sft", ["lr_scheduler_type: polynomial"]))


def test_plain_load_config_refuses_trl_names(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'max_steps'"):
        load_config(SFTConfig, write(tmp_path, "sft", ["max_steps: 5"]))


@pytest.mark.parametrize(
    "mesh, expected, how",
    [
        ({"devices": 4}, 2 * 3 * 4, "mesh.data -1: 4 device(s) / mesh.tensor 1"),
        ({"devices": 8, "tensor": 2}, 2 * 3 * 4, "mesh.data -1: 8 device(s) / mesh.tensor 2"),
        ({"data": 2, "fsdp": 2, "devices": 8, "tensor": 2}, 2 * 3 * 4, "mesh.data 2 x mesh.fsdp 2"),
        ({"data": 1, "devices": 1}, 2 * 3, "mesh.data 1 x mesh.fsdp 1"),
    ],
)
def test_per_device_batch_size_is_global_times_accum_and_data_parallel_devices(tmp_path, mesh, expected, how):
    lines = ["per_device_train_batch_size: 2", "gradient_accumulation_steps: 3", "mesh: " + yaml_value(mesh)]
    config, notes = load_config_noting(SFTConfig, write(tmp_path, "sft", lines))
    assert config.train.batch_size == expected and config.train.grad_accum == 3
    assert (
        f"= 2 per device x train.grad_accum 3 x {expected // 6} data-parallel device(s) ({how}) = {expected}"
        in notes[-1]
    )


def test_per_device_batch_size_in_rlhf_is_the_minibatch(tmp_path):
    lines = ["per_device_train_batch_size: 4", "grpo:", "  grad_accum: 2", "mesh: {data: 2, fsdp: 2}"]
    path = write(tmp_path, "grpo", lines)
    config, notes = load_config_noting(RLHFConfig, path)
    assert config.grpo.minibatch_size == 4 * 2 * 4 and "(mesh.data 2 x mesh.fsdp 2)" in notes[0]
    # an override of our own key replaces the file's per-device value
    assert load_config_noting(RLHFConfig, path, ["grpo.minibatch_size=16"])[0].grpo.minibatch_size == 16


def test_rlhf_refuses_max_steps_with_what_to_write(tmp_path):
    with pytest.raises(
        ConfigError, match=r"ppo.yaml:2: TRL's max_steps is not accepted here: .*set train.iterations"
    ):
        load_config_noting(RLHFConfig, write(tmp_path, "ppo", ["max_steps: 5"]))


def test_print_config_names_each_alias_used(tmp_path, capsys):
    path = write(tmp_path, "dpo", ["beta: 0.3", "max_grad_norm: 0"])
    args = argparse.Namespace(config=str(path), overrides=["logging_steps=2"], print_config=True)
    assert run_config_command(args, DPORunConfig, None, ()) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:3] == [
        f"# TRL name used: beta -> dpo.beta  [{path}:2]",
        f"# TRL name used: max_grad_norm -> optim.clip_norm (0 -> None)  [{path}:3]",
        "# TRL name used: logging_steps -> train.log_every  [override 'logging_steps=2']",
    ]
    assert "beta: 0.3" in out and "clip_norm: null" in out and "log_every: 2" in out


def test_pipeline_stage_sections_accept_trl_names(tmp_path):
    quick = load_quickstart(ROOT / "configs" / "quickstart_tiny.yaml", [f"output_dir={tmp_path}"])
    sft = {k: v for k, v in quick.sft.items() if k != "optim"} | {"max_steps": 9, "learning_rate": 1e-3}
    rlhf = quick.rlhf | {"cliprange": 0.3}
    pipeline = Pipeline(dataclasses.replace(quick, sft=sft, rlhf=rlhf), "<quickstart>")
    assert pipeline.sft_config().optim.total_steps == 9 and pipeline.sft_config().optim.learning_rate == 1e-3
    assert pipeline.rlhf_config(None).ppo.clip_eps == 0.3
    with pytest.raises(
        ConfigError, match=r"rlhf: num_ppo_epochs \(TRL's name for ppo.ppo_epochs\) and ppo.ppo_epochs"
    ):
        Pipeline(dataclasses.replace(quick, rlhf=quick.rlhf | {"num_ppo_epochs": 3}), "<q>").rlhf_config(None)


def test_names_are_trls():
    trl = pytest.importorskip("trl")
    fields = set()
    for cls in (trl.SFTConfig, trl.DPOConfig, trl.RewardConfig, trl.GRPOConfig):
        fields |= {f.name for f in dataclasses.fields(cls)}
    ppo = {"num_ppo_epochs", "cliprange", "cliprange_value", "vf_coef", "gamma", "lam", "kl_coef"}
    ppo |= {"whiten_rewards", "response_length", "missing_eos_penalty"}  # trl 0.2x PPOConfig (1.x has none)
    assert {row.trl for row in TRL_NAMES} - {"model_name_or_path"} <= fields | ppo  # TRL's ModelConfig


def test_docs_show_the_table():
    assert markdown_table() in (ROOT / "docs" / "trl_names.md").read_text()


def test_per_device_batch_size_takes_the_device_count_when_the_mesh_does_not_say(tmp_path):
    path = write(tmp_path, "sft", ["per_device_train_batch_size: 2", "mesh: {tensor: 2}"])
    with pytest.raises(ConfigError, match="needs the device count here: set mesh.devices"):
        load_config_noting(SFTConfig, path)
    config, notes = load_config_noting(SFTConfig, path, device_count=lambda: 8)
    assert config.train.batch_size == 2 * 4 and "(mesh.data -1: 8 device(s) / mesh.tensor 2)" in notes[0]
