"""align.rl.distill: layer-dropping students, the frozen teacher, on-policy batches and their draws."""

import jax
import numpy as np
import pytest
from flax import nnx

from align.model import Decoder, ModelConfig
from align.rl.distill import (
    Distiller,
    DistillLoss,
    OnPolicy,
    distill_loss_fn,
    is_on_policy,
    kept_layers,
    on_policy_batch,
    prompt_lengths,
    student_from_teacher,
    student_only,
)
from align.training import OptimConfig, create_train_state, make_optimizer, make_train_step

V = 64


def _teacher(layers=4):
    config = ModelConfig.tiny(V).replace(num_layers=layers, layer_types=("local", "global") * (layers // 2))
    return Decoder(config, rngs=nnx.Rngs(0))


def _batch(rows=2, length=12):
    rs = np.random.default_rng(0)
    tokens = rs.integers(3, V, (rows, length)).astype(np.int32)
    loss_mask = np.zeros((rows, length), np.float32)
    loss_mask[0, 4:10] = 1  # prompt = tokens[:5]
    loss_mask[1, 2:11] = 1  # prompt = tokens[:3]
    return {
        "tokens": tokens,
        "positions": np.tile(np.arange(length, dtype=np.int32), (rows, 1)),
        "segment_ids": np.ones((rows, length), np.int32),
        "targets": np.concatenate([tokens[:, 1:], np.zeros((rows, 1), np.int32)], 1),
        "loss_mask": loss_mask,
    }


def test_kept_layers():
    assert kept_layers(18, "every_other") == [0, 2, 4, 6, 8, 10, 12, 14, 16]
    assert kept_layers(5, "first_n", 3) == [0, 1, 2]
    with pytest.raises(ValueError, match="first_n"):
        kept_layers(5, "first_n", 6)


def test_student_from_teacher_keeps_the_chosen_layers_and_copies_them():
    teacher = _teacher()
    student = student_from_teacher(teacher, [0, 2])
    assert student.config.num_layers == 2 and student.config.layer_types == ("local", "local")
    t_state, s_state = nnx.state(teacher, nnx.Param), nnx.state(student, nnx.Param)
    for kept, source in ((0, 0), (1, 2)):
        got, want = jax.tree.leaves(s_state["layers"][kept]), jax.tree.leaves(t_state["layers"][source])
        assert len(got) == len(want) > 3
        for x, y in zip(got, want, strict=True):
            np.testing.assert_array_equal(x, y)
            # own buffers: the teacher is intact however the student trains (donation included)
            assert x.unsafe_buffer_pointer() != y.unsafe_buffer_pointer()
    # keeping every layer reproduces the teacher's logits exactly
    same = student_from_teacher(teacher, [0, 1, 2, 3])
    b = _batch()
    args = (b["tokens"], b["positions"], b["segment_ids"])
    np.testing.assert_array_equal(same(*args).logits, teacher(*args).logits)


@pytest.mark.parametrize("vocab_chunk", [16, None])  # None: the fused loss
def test_a_step_trains_the_student_only_and_starts_at_zero_for_a_full_copy(vocab_chunk):
    teacher = _teacher(2)
    pair = Distiller(student_from_teacher(teacher, [0, 1]), teacher)
    optimizer = make_optimizer(OptimConfig(learning_rate=1e-2, total_steps=3, warmup_steps=0))
    state = create_train_state(pair, optimizer, trainable=student_only("all"))
    assert all("student" in str(path) for path, _ in jax.tree_util.tree_leaves_with_path(state.params))
    loss = DistillLoss(beta=0.5, chunk_size=5, vocab_chunk=vocab_chunk)
    step = make_train_step(distill_loss_fn(loss), optimizer)
    teacher_before = jax.tree.map(np.asarray, state.frozen)
    state, m0 = step(state, _batch())
    assert float(m0["loss"]) == pytest.approx(0.0, abs=1e-6)  # student == teacher at the start
    # perturb the student: the loss is the teacher-student JSD, and the teacher stays frozen
    state = state.replace(params=jax.tree.map(lambda x: x + 0.05, state.params))
    state, m1 = step(state, _batch())
    assert float(m1["loss"]) > 1e-4
    jax.tree.map(np.testing.assert_array_equal, teacher_before, jax.tree.map(np.asarray, state.frozen))


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_the_fused_loss_equals_the_token_mean_of_the_sliced_divergences(beta):
    """vocab_chunk None takes chunked_weighted_divergence, vocab_chunk V the per-token divergences and
    masked_mean: the same value (a token mean) and the same student gradients."""
    teacher = _teacher(2)
    pair = Distiller(student_from_teacher(teacher, [1]), teacher)
    graphdef, params, rest = nnx.split(pair, student_only("all"), ...)
    batch = _batch()

    def value_and_grads(vocab_chunk):
        loss_fn = distill_loss_fn(
            DistillLoss(beta=beta, temperature=2.0, chunk_size=5, vocab_chunk=vocab_chunk)
        )
        f = lambda p: loss_fn(nnx.merge(graphdef, p, rest), batch, None)  # noqa: E731
        return jax.value_and_grad(f, has_aux=True)(params)

    (v, m), g = value_and_grads(None)
    (v_ref, m_ref), g_ref = value_and_grads(V)
    assert float(v_ref) > 1e-3 and float(m["n_tokens"]) == float(m_ref["n_tokens"]) == 15
    np.testing.assert_allclose(float(v), float(v_ref), rtol=1e-5)
    leaves, ref_leaves = jax.tree.leaves(g), jax.tree.leaves(g_ref)
    scale = max(float(np.abs(x).max()) for x in ref_leaves)
    assert len(leaves) == len(ref_leaves) > 3 and scale > 1e-4
    for got, want in zip(leaves, ref_leaves, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale)


def test_prompt_lengths_end_before_the_first_supervised_target():
    np.testing.assert_array_equal(prompt_lengths(_batch()), [5, 3])


def test_on_policy_batch_supervises_exactly_the_sampled_response():
    teacher = _teacher(2)
    options = OnPolicy(fraction=1.0, max_new_tokens=4, temperature=1.0, stop_ids=(), pad_id=0)
    out = on_policy_batch(teacher, _batch(), options, jax.random.PRNGKey(3))
    assert out["tokens"].shape == (2, 12)
    for row, p in enumerate([5, 3]):
        np.testing.assert_array_equal(out["tokens"][row, :p], _batch()["tokens"][row, :p])  # the prompt kept
        np.testing.assert_array_equal(np.nonzero(out["loss_mask"][row])[0], np.arange(p - 1, p + 3))
        cols = np.arange(p - 1, p + 3)
        np.testing.assert_array_equal(out["targets"][row, cols], out["tokens"][row, cols + 1])
        assert out["segment_ids"][row, : p + 4].all() and not out["segment_ids"][row, p + 4 :].any()


def test_on_policy_draws_are_fixed_by_seed_and_step_and_follow_the_fraction():
    draws = [is_on_policy(0, k, 0.3) for k in range(2000)]
    assert draws == [is_on_policy(0, k, 0.3) for k in range(2000)]
    assert abs(np.mean(draws) - 0.3) < 0.04
    assert not any(is_on_policy(0, k, 0.0) for k in range(100))
    assert all(is_on_policy(1, k, 1.0) for k in range(100))
