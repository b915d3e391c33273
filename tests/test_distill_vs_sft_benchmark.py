"""benchmarks/distill_vs_sft.py: its per-sequence eval against the unchunked divergence, its intervals."""

import numpy as np
import pytest
from flax import nnx

from align.model import Decoder, ModelConfig
from align.rl.distill import Distiller, student_from_teacher, student_only
from align.training import OptimConfig, create_train_state, make_optimizer
from align.training.distill import token_divergence
from align.training.logprobs import token_logprobs
from tests.paths import DATA
from tests.scripts import load_script

bench = load_script("benchmarks/distill_vs_sft.py")
needs_data = pytest.mark.skipif(not (DATA / "selfaware").is_dir(), reason=f"{DATA}: no SelfAware file")
V = 64


def _pair(same: bool):
    config = ModelConfig.tiny(V).replace(num_layers=2, layer_types=("local", "global"))
    teacher = Decoder(config, rngs=nnx.Rngs(0))
    student = student_from_teacher(teacher, [0, 1] if same else [0])
    opt = make_optimizer(OptimConfig(learning_rate=1e-3, warmup_steps=0, total_steps=10))
    return create_train_state(Distiller(student, teacher), opt, trainable=student_only()), student, teacher


def _batch():
    rs = np.random.default_rng(0)
    tokens = rs.integers(3, V, (3, 10)).astype(np.int32)
    mask = np.zeros((3, 10), np.float32)
    mask[0, 3:9], mask[1, 1:5] = 1, 1  # row 2: no response tokens
    return {
        "tokens": tokens,
        "positions": np.tile(np.arange(10, dtype=np.int32), (3, 1)),
        "segment_ids": np.ones((3, 10), np.int32),
        "targets": np.concatenate([tokens[:, 1:], np.zeros((3, 1), np.int32)], 1),
        "loss_mask": mask,
    }


def _logits(model, b):
    return np.asarray(model(b["tokens"], b["positions"], b["segment_ids"]).logits)


def test_row_eval_matches_the_unchunked_kl_and_nll_per_row():
    state, student, teacher = _pair(same=False)
    b = _batch()
    kl, nll, n = (np.asarray(x) for x in bench.make_row_eval(4, 16)(state, b))
    s_logits, t_logits = _logits(student, b), _logits(teacher, b)
    want_kl = (np.asarray(token_divergence(s_logits, t_logits)) * b["loss_mask"]).sum(-1)
    want_nll = (-np.asarray(token_logprobs(s_logits, b["targets"])) * b["loss_mask"]).sum(-1)
    np.testing.assert_allclose(kl, want_kl, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(nll, want_nll, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(n, [6, 4, 0])
    assert kl[0] > 0.01 and kl[2] == 0 and nll[2] == 0


def test_row_eval_of_a_student_equal_to_its_teacher_is_zero_kl():
    state, _, _ = _pair(same=True)
    kl, nll, _ = (np.asarray(x) for x in bench.make_row_eval(4, None)(state, _batch()))
    np.testing.assert_allclose(kl, 0.0, atol=1e-5)
    assert nll[0] > 1.0  # NLL of the targets is not zero: only the divergence vanishes


def test_bootstrap_is_token_weighted_and_the_paired_difference_of_equal_models_is_zero():
    x, n = np.array([2.0, 9.0, 1.0]), np.array([2.0, 6.0, 2.0])
    got = bench.bootstrap(x, n)
    assert got["mean"] == 12.0 / 10.0  # over tokens, not the mean of per-sequence means (1.0)
    assert got["ci95"][0] <= got["mean"] <= got["ci95"][1] and got["ci95"][0] >= 0.5
    same = (x, x * 2, n)
    diff = bench.paired_difference(same, same)
    assert diff["kl_to_teacher"] == {"mean": 0.0, "ci95": [0.0, 0.0]}
    shifted = bench.paired_difference((x + n, x, n), (x, x, n))  # +1 nat on every token
    np.testing.assert_allclose(shifted["kl_to_teacher"]["ci95"], [1.0, 1.0])


@needs_data
def test_selfaware_prompts_are_training_questions_asked_as_the_hedging_suite_asks():
    """--prompt-source selfaware: the training side of the seed-7 split only (the hedging suite's
    held-out questions never reach the students), unanswerable and answerable alternating, each one
    user turn of QA_PROMPT with the generation header."""
    import types

    from align.data import Tokenizer
    from align.data.selfaware import QA_PROMPT, read_selfaware, split_selfaware
    from align.data.testing import tiny_tokenizer
    from align.data_dir import data_path

    tok = Tokenizer(tiny_tokenizer())
    args = types.SimpleNamespace(prompt_source="selfaware", max_prompt=10_000, prompts=6)
    prompts = bench.read_prompts(tok, args)
    train, held = split_selfaware(read_selfaware(data_path("selfaware/SelfAware.json"))[0], seed=7)
    text = [tok.decode(p.tolist()) for p in prompts]
    asked = lambda q: QA_PROMPT.format(question=q.question) in "".join(text)  # noqa: E731
    kinds = [next(q.answerable for q in train if QA_PROMPT.format(question=q.question) in t) for t in text]
    assert len(prompts) == 6 and kinds == [False, True] * 3
    assert not any(asked(q) for q in held) and all(t.rstrip().endswith("model") for t in text)
