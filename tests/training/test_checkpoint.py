"""Checkpointer: bitwise round trip of the whole TrainState, manifest, keep-N, shardings, last good."""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from align.model import Decoder, ModelConfig
from align.model.sharding import MeshConfig, make_mesh
from align.training import Checkpointer, abstract_train_state, create_train_state, train_state_shardings
from align.training.checkpoint import unflatten_state

CONFIG = ModelConfig.tiny(32).replace(num_layers=1, layer_types=("global",))


def make_model():
    return Decoder(CONFIG, rngs=nnx.Rngs(0))


def state_at(step: int):
    opt = optax.adam(1e-3)
    """A state with non-trivial Adam moments and rng, at `step`."""
    state = create_train_state(make_model(), opt, seed=step)
    fake = jax.tree.map(lambda p: jnp.full_like(p, 0.1 * step), state.params)
    _, opt_state = opt.update(fake, state.opt_state, state.params)
    return state.replace(step=jnp.int32(step), opt_state=opt_state)


def assert_same(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_is_bitwise_and_manifest_is_complete(tmp_path):
    state = state_at(3)
    with Checkpointer(tmp_path / "ck", manifest={"config": {"lr": 1e-3}, "model_config": CONFIG}) as ck:
        assert ck.save(state, data_position={"epoch": 1, "index": 5, "n": 10, "seed": 0})
        assert not ck.save(state)  # the same step twice is a no-op
        ck.wait()
        restored = ck.restore_latest(abstract_train_state(make_model, optax.adam(1e-3)))
    assert restored.step == 3
    assert_same(restored.state, state)
    m = restored.manifest
    assert m["step"] == 3 and m["data_position"] == {"epoch": 1, "index": 5, "n": 10, "seed": 0}
    assert m["rng"] == np.asarray(state.rng).tolist() and m["format"] == "align.checkpoint/v1"
    assert m["model_config"]["embed_dim"] == 64 and m["config"] == {"lr": 1e-3}
    assert "git" in m["code_version"] and "align" in m["code_version"]
    on_disk = json.loads(next((tmp_path / "ck" / "3" / "manifest").glob("*")).read_text())
    assert on_disk["step"] == 3


def test_keeps_the_last_n(tmp_path):
    with Checkpointer(tmp_path, keep=2) as ck:
        for step in (1, 2, 3, 4):
            ck.save(state_at(step))
        ck.wait()
        assert ck.all_steps() == [3, 4] and ck.latest_step() == 4
        assert_same(ck.restore(3, state_at(0)).state, state_at(3))


def test_restore_places_arrays_with_target_shardings(tmp_path):
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    state = state_at(2)
    with Checkpointer(tmp_path) as ck:
        ck.save(state)
        ck.wait()
        abstract = abstract_train_state(make_model, optax.adam(1e-3))
        restored = ck.restore_latest(abstract, train_state_shardings(abstract, mesh)).state
    mu_q = restored.opt_state[0].mu["layers"][0]["attn"]["q"][...]
    assert mu_q.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor", None)
    assert_same(restored, state)


def test_incomplete_checkpoint_is_ignored(tmp_path):
    """A save that died half-way (Orbax's temporary directory, never renamed) is not "latest"."""
    with Checkpointer(tmp_path) as ck:
        ck.save(state_at(5))
    partial = tmp_path / "9.orbax-checkpoint-tmp-1234"
    (partial / "state").mkdir(parents=True)
    (partial / "state" / "garbage").write_bytes(b"\0" * 10)
    with Checkpointer(tmp_path) as ck:
        assert ck.latest_step() == 5
        assert_same(ck.restore_latest(state_at(0)).state, state_at(5))


def test_restore_into_another_model_names_missing_arrays(tmp_path):
    with Checkpointer(tmp_path) as ck:
        ck.save(state_at(1))
        ck.wait()
        bigger = lambda: Decoder(ModelConfig.tiny(32), rngs=nnx.Rngs(0))  # 2 layers; the checkpoint has 1
        with pytest.raises(ValueError, match=re.escape(".params['layers'][1]['attn']['q'].value")) as err:
            ck.restore_latest(abstract_train_state(bigger, optax.adam(1e-3)))
    # Orbax's message lists every array the checkpoint lacks: layer 1's 13 weights, as params and as
    # Adam's mu and nu, and nothing of layer 0 or the embedder (those are there)
    missing = re.findall(r"^(\S+):\n\s+- Source: .*\n\s+- Target: MISSING", str(err.value), re.M)
    assert len(missing) == 3 * 13 and all("['layers'][1]" in m for m in missing), missing
    assert sum(m.startswith(".params[") for m in missing) == 13


def test_unflatten_names_the_missing_keys():
    with pytest.raises(KeyError) as err:
        unflatten_state({"a": 1, "b": 2}, {"['a']": 1})
    assert err.value.args[0] == "checkpoint lacks 1 arrays the state needs, e.g. [\"['b']\"]"
    assert unflatten_state({"a": 1, "b": 2}, {"['a']": 3, "['b']": 4}) == {"a": 3, "b": 4}


def test_resume_under_a_changed_config_is_warned_with_the_changed_keys(tmp_path, caplog):
    manifest = {"config": {"output_dir": "a", "optim": {"lr": 1e-3}}, "model_config": CONFIG}
    with Checkpointer(tmp_path / "ck", manifest=manifest) as ck:
        ck.save(state_at(2))
    like = abstract_train_state(make_model, optax.adam(1e-3))
    with caplog.at_level("WARNING", logger="align.checkpoint"):
        with Checkpointer(tmp_path / "ck", manifest=manifest) as ck:
            assert ck.restore_latest(like).config_changes == []  # model_config survives the JSON round trip
        assert not caplog.records
        moved = {"config": {"output_dir": "b", "optim": {"lr": 3e-4}, "seed": 1}, "model_config": CONFIG}
        with Checkpointer(tmp_path / "ck", manifest=moved) as ck:
            restored = ck.restore_latest(like)
    assert restored.config_changes == ["config.optim.lr: 0.001 -> 0.0003", "config.seed: '<absent>' -> 1"]
    assert "config.optim.lr: 0.001 -> 0.0003" in caplog.text and "2 change(s)" in caplog.text
