"""DPO step: ln 2 at step 1 with pi == pi_ref, pair log-probs by hand, precomputed == on-the-fly, learning."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from align.data import PreferenceExample, encode_preferences, preference_batch
from align.data.testing import TINY_VOCAB_SIZE, tiny_tokenizer
from align.data.tokenizer import Tokenizer
from align.model import Decoder, ModelConfig
from align.rl.dpo import PAIR_KEYS, DPOConfig, dpo_loss_fn, make_dpo_step, pair_logprobs, precompute_reference
from align.rl.loop import owned_train_state
from align.training import OptimConfig, make_optimizer
from align.training.logprobs import token_logprobs
from align.training.metrics import finalize
from align.training.step import make_eval_step
from pipelines.stages.dpo import _collate

T = 32


def _pairs():
    tok = Tokenizer(tiny_tokenizer())
    examples = [
        PreferenceExample("Say hi.", "hi there", "go away"),
        PreferenceExample("Count:", "1 2 3", "no"),
        PreferenceExample("Colour?", "blue", "I will not say"),
        PreferenceExample("Q", "yes indeed", "nope"),
    ]
    return encode_preferences(examples, tok, max_length=T)[0], tok.pad_id


@pytest.fixture(scope="module")
def batch():
    pairs, pad_id = _pairs()
    return preference_batch(pairs, T, pad_id=pad_id)


def _model(seed=0):
    return Decoder(ModelConfig.tiny(vocab_size=TINY_VOCAB_SIZE), rngs=nnx.Rngs(seed))


def _optimizer():
    return make_optimizer(OptimConfig(learning_rate=3e-3, total_steps=100, schedule="constant"))


def test_pair_logprobs_equal_full_logits_by_hand(batch):
    model = _model()
    lp = nnx.jit(pair_logprobs, static_argnums=2)(model, {k: jnp.asarray(v) for k, v in batch.items()}, 7)

    @nnx.jit
    def full_logits_reference(model, tokens, positions, segments, targets, mask):
        """The plain way: [1, T, V] logits of one row, log-softmax, sum over the response targets."""
        out = model(tokens[None], positions[None], segments[None])
        return jnp.sum(token_logprobs(out.logits, targets[None])[0] * mask)

    for b, p in [(0, 0), (2, 1)]:
        expect = full_logits_reference(
            model,
            *(
                jnp.asarray(batch[k][b, p])
                for k in ("tokens", "positions", "segment_ids", "targets", "loss_mask")
            ),
        )
        assert float(lp[b, p]) == pytest.approx(float(expect), abs=1e-4)


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_first_step_loss_is_the_analytic_value_and_training_separates_pairs(batch, loss_type):
    reference = _model()
    config = DPOConfig(beta=0.5, loss_type=loss_type, logprob_chunk=64)
    opt = _optimizer()
    state = owned_train_state(reference, opt)
    step = make_dpo_step(config, opt, reference=reference)
    state, m = step(state, batch)
    # sigmoid: -log sigmoid(0) = ln 2;  ipo: (0 - 1 / (2 beta))^2 = 1
    first = math.log(2.0) if loss_type == "sigmoid" else (1 / (2 * 0.5)) ** 2
    assert float(m["loss"]) == pytest.approx(first, abs=1e-6)
    assert float(m["margin"]) == pytest.approx(0.0, abs=1e-6)
    losses = [float(m["loss"])]
    for _ in range(8):
        state, m = step(state, batch)
        losses.append(float(m["loss"]))
    assert losses[-1] < 0.5 * losses[0]
    assert float(m["accuracy"]) == 1.0 and float(m["margin"]) > 0


def test_precomputed_reference_equals_on_the_fly(batch):
    reference = _model(seed=3)
    config = DPOConfig(beta=0.1, logprob_chunk=64)
    opt = _optimizer()
    ref_lp = precompute_reference(reference, [batch], config.logprob_chunk)
    assert ref_lp.shape == (4, 2)
    on_the_fly = make_dpo_step(config, opt, reference=reference)
    cached = make_dpo_step(config, opt)
    s1, s2 = owned_train_state(reference, opt), owned_train_state(reference, opt)
    for _ in range(3):
        s1, m1 = on_the_fly(s1, batch)
        s2, m2 = cached(s2, {**batch, "ref_logps": ref_lp})
        assert float(m1["loss"]) == pytest.approx(float(m2["loss"]), abs=1e-6)
    for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params)):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_padding_rows_count_in_no_metric(loss_type):
    """One pair scored alone == the same pair padded to 4 rows (the held-out set's short last batch)."""
    pairs, pad_id = _pairs()
    model = _model()
    state = owned_train_state(model, _optimizer())
    config = DPOConfig(beta=0.5, loss_type=loss_type, logprob_chunk=64)
    alone = _collate(1, T, pad_id, with_ref=True)([(pairs[0], np.zeros(2, np.float32))])
    lp = np.asarray(pair_logprobs(model, {k: jnp.asarray(alone[k]) for k in PAIR_KEYS}, 64))[0]
    ref = lp + np.array([-0.3, 0.2], np.float32)  # the policy prefers chosen: accuracy 1, margin > 0
    evaluate = make_eval_step(functools.partial(dpo_loss_fn, config=config))

    def score(b):
        return finalize(jax.device_get(evaluate(state, b)))

    padded = _collate(4, T, pad_id, with_ref=True)([(pairs[0], ref)])
    np.testing.assert_array_equal(padded["pair_mask"], [1, 0, 0, 0])
    one = score(_collate(1, T, pad_id, with_ref=True)([(pairs[0], ref)]))
    masked = score(padded)
    derived = score({k: v for k, v in padded.items() if k != "pair_mask"})  # padding by its empty loss_mask
    assert float(one["accuracy"]) == 1.0 and float(one["margin"]) > 0
    for got in (masked, derived):
        assert float(got["weight"]) == float(one["weight"]) == 1.0
        for name in ("loss", "accuracy", "margin", "rewards/chosen", "logps/rejected"):
            assert float(got[name]) == pytest.approx(float(one[name]), abs=1e-5), name
