"""Config values are checked at load time, with ranges, and reported at the key's file:line; YAML
anchors and aliases are refused before any node is built (an alias bomb costs nothing)."""

from __future__ import annotations

import pytest
import yaml

from align.config_io import ConfigError, load_config
from pipelines.stages.dpo import DPORunConfig
from pipelines.stages.rlhf import RLHFConfig
from pipelines.stages.sft import SFTConfig

# 9 levels of 9 aliases: 9^9 (387 million) leaves once expanded, in a file of a few hundred bytes
BOMB = "output_dir: out\na: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi")
)


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def composed(monkeypatch):
    """Counts the YAML nodes composed: a refused alias bomb must compose none."""
    count = {"nodes": 0}
    real = yaml.composer.Composer.compose_node

    def counting(self, parent, index):
        count["nodes"] += 1
        return real(self, parent, index)

    monkeypatch.setattr(yaml.composer.Composer, "compose_node", counting)
    return count


def test_alias_bomb_is_refused_before_any_node_is_built(tmp_path, composed):
    assert len(BOMB) < 400
    path = write(tmp_path, BOMB)
    with pytest.raises(ConfigError) as e:
        load_config(SFTConfig, path)
    assert str(e.value).startswith(f"{path}:2: YAML anchors and aliases (&name, *name) are not allowed")
    assert composed["nodes"] == 0
    # an override is YAML too
    with pytest.raises(ConfigError, match="anchors and aliases"):
        load_config(SFTConfig, write(tmp_path, "output_dir: out\n"), ["data.path=[&a x, *a]"])
    assert composed["nodes"] < 10  # the valid file's few nodes only


def test_a_policy_with_aliases_is_refused_before_any_node_is_built(tmp_path, composed):
    from safety_evals.review.policy import PolicyError, load_policy

    text = "schema: align.gate_policy/v1\nmetrics:\n  x: &a {max: 1}\n  toxicity.mean_toxicity: *a\n"
    with pytest.raises(PolicyError, match=r"policy.yaml line 3: YAML anchors and aliases are not allowed"):
        load_policy(write(tmp_path, text, "policy.yaml"))
    assert composed["nodes"] == 0


SFT = "output_dir: out\ntrain:\n  batch_size: 8\noptim:\n  learning_rate: 1.0e-4\n"


@pytest.mark.parametrize(
    "line, field, problem",
    [
        ("train: {batch_size: -4}", "train.batch_size", "must be an integer >= 1, got -4"),  # hung at step 0
        ("train: {batch_size: 0}", "train.batch_size", "must be an integer >= 1, got 0"),
        ("train: {grad_accum: 0}", "train.grad_accum", "must be an integer >= 1, got 0"),  # was ZeroDivision
        ("train: {keep_checkpoints: 0}", "train.keep_checkpoints", "must be an integer >= 1, got 0"),
        ("train: {checkpoint_every: -1}", "train.checkpoint_every", "must be an integer >= 0, got -1"),
        ("train: {log_every: 0}", "train.log_every", "must be an integer >= 1, got 0"),
        ("optim: {learning_rate: -1}", "optim.learning_rate", "must be a finite number > 0, got -1.0"),
        ("optim: {learning_rate: 0}", "optim.learning_rate", "must be a finite number > 0, got 0.0"),
        ("optim: {clip_norm: -1}", "optim.clip_norm", "must be a finite number > 0 or null, got -1.0"),
        ("optim: {total_steps: 0}", "optim.total_steps", "must be an integer >= 1, got 0"),
        ("optim: {b2: 1.0}", "optim.b2", "must lie in [0, 1), got 1.0"),
        ("optim: {weight_decay: -0.1}", "optim.weight_decay", "must be a finite number >= 0, got -0.1"),
        (
            "data: {heldout: {heldout_fraction: 1.5}}",
            "data.heldout.heldout_fraction",
            "must lie in [0, 1), got 1.5",
        ),
        ("data: {max_length: 0}", "data.max_length", "must be an integer >= 1, got 0"),
        ("data: {limit: 0}", "data.limit", "must be an integer >= 1 or null, got 0"),
        ("chunk_size: 0", "chunk_size", "must be an integer >= 1, got 0"),
        ("mesh: {fsdp: 0}", "mesh.fsdp", "must be an integer >= 1, got 0"),
        ("train: {lora: {rank: 0}}", "train.lora.rank", "must be an integer >= 1, got 0"),
    ],
)
def test_out_of_range_values_name_file_line_and_field(tmp_path, line, field, problem):
    path = write(tmp_path, f"output_dir: out\n{line}\n")
    with pytest.raises(ConfigError) as e:
        load_config(SFTConfig, path)
    assert str(e.value) == f"{path}:2: {field}: {problem}"


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1e999"])
def test_non_finite_numbers_are_refused_at_their_line(tmp_path, value):
    path = write(tmp_path, SFT.replace("1.0e-4", value))
    with pytest.raises(ConfigError, match=rf"{path}:5: optim.learning_rate must be a finite number"):
        load_config(SFTConfig, path)


def test_an_override_out_of_range_is_reported_at_the_override(tmp_path):
    path = write(tmp_path, SFT)
    with pytest.raises(ConfigError) as e:
        load_config(SFTConfig, path, ["train.batch_size=-4"])
    assert (
        str(e.value)
        == f"{path} (override 'train.batch_size=-4'): train.batch_size: must be an integer >= 1, got -4"
    )


@pytest.mark.parametrize(
    "cls, text, field",
    [
        (DPORunConfig, "dpo: {label_smoothing: 0.7}", "dpo.label_smoothing"),
        (DPORunConfig, "data: {max_prompt_length: 0}", "data.max_prompt_length"),
        (RLHFConfig, "ppo: {gamma: 1.5}", "ppo.gamma"),
        (RLHFConfig, "ppo: {clip_eps: -0.2}", "ppo.clip_eps"),
        (RLHFConfig, "grpo: {beta: -1}", "grpo.beta"),
        (RLHFConfig, "train: {keep_checkpoints: 0}", "train.keep_checkpoints"),
        (RLHFConfig, "eval: {batch_size: 0}", "eval.batch_size"),
        (RLHFConfig, "data: {max_prompt_length: 0}", "data.max_prompt_length"),
    ],
)
def test_rl_and_dpo_ranges(tmp_path, cls, text, field):
    path = write(tmp_path, f"output_dir: out\n{text}\n")
    with pytest.raises(ConfigError, match=rf"^{path}:2: {field}: "):
        load_config(cls, path)


def test_a_non_utf8_config_is_one_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"output_dir: \xff\n")
    with pytest.raises(ConfigError, match=rf"{path}: cannot read: 'utf-8' codec can't decode"):
        load_config(SFTConfig, path)
