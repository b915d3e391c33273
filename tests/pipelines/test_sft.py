"""The SFT pipeline end to end on a tiny model: loss goes down, export loads, finished runs are skipped,
an extended run resumes from its checkpoint."""

import json

import numpy as np
import pytest

from align.model.hf_io import load_hf_dir
from align.training import read_metrics
from pipelines import cli
from align.config_io import load_config
from pipelines.stages.sft import SFTConfig, run_sft
from tests.paths import DATA


def tiny_dataset(path, n=24):
    """Prompt/completion rows a 2-layer model learns in a few steps (the answer repeats the question)."""
    rows = [
        {"prompt": f"say {w}:", "completion": f" {w} {w}"}
        for w in ["cat", "dog", "sun", "sea", "red", "tea", "hat", "pen"] * (n // 8)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def config_file(tmp_path):
    path = tmp_path / "sft.yaml"
    path.write_text(f"""
output_dir: {tmp_path / "run"}
model: {{spec: "preset:tiny"}}
data:
  path: {tiny_dataset(tmp_path / "data.jsonl")}
  max_length: 32
  heldout: {{heldout_fraction: 0.25, seed: 0}}
optim: {{learning_rate: 1.0e-2, warmup_steps: 1, total_steps: 12, schedule: cosine}}
train: {{batch_size: 4, log_every: 4, checkpoint_every: 4, progress: false}}
mesh: {{devices: 1}}
chunk_size: 64
""")
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("sft")
    path = config_file(tmp_path)
    assert cli.main(["sft", "--config", str(path)]) == 0
    return tmp_path, path


def test_tiny_sft_learns_and_exports(finished):
    tmp_path, _ = finished
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["step"] == 12 and summary["resumed_from"] is None
    assert summary["data"]["train"]["sequences"] == 18 and summary["data"]["heldout"]["sequences"] == 6
    before, after = summary["eval_before"]["loss"], summary["eval_after"]["loss"]
    assert after < 0.6 * before, (before, after)
    train = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in train] == [4, 8, 12] and train[-1]["loss"] < train[0]["loss"]
    model = load_hf_dir(tmp_path / "run" / "export")
    assert model.config.vocab_size == 272 and (tmp_path / "run" / "export" / "tokenizer.json").exists()
    assert sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit()) == [
        8,
        12,
    ]


def test_finished_run_is_not_redone(finished):
    tmp_path, path = finished
    lines = (tmp_path / "run" / "metrics.jsonl").read_text()
    summary = run_sft(load_config(SFTConfig, path))
    assert summary["step"] == 12
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == lines


def test_extended_run_resumes_from_the_last_checkpoint(finished):
    tmp_path, path = finished
    (tmp_path / "run" / "summary.json").unlink()
    summary = run_sft(load_config(SFTConfig, path, ["optim.total_steps=16", "export=false"]))
    assert summary["resumed_from"] == 12 and summary["step"] == 16
    steps = [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert steps == [4, 8, 12, 16]


def test_sft_loss_on_preference_rows_uses_the_chosen_response():
    from align.data import PreferenceExample, Tokenizer
    from align.data.testing import tiny_tokenizer
    from pipelines.stages.sft import as_sft_example

    tok = Tokenizer(tiny_tokenizer())
    ex = as_sft_example(PreferenceExample("Hi", " yes", " no"))
    from align.data import sft_example

    seq = sft_example(ex, tok)
    assert tok.decode(seq.tokens[seq.loss_mask]) == " yes"


def test_heldout_split_is_deterministic_disjoint_and_capped():
    from align.data.splits import SplitOptions, heldout_split

    items = list(range(50))
    train, held = heldout_split(items, SplitOptions(heldout_fraction=0.2, seed=3))
    assert len(held) == 10 and len(train) == 40 and not set(train) & set(held)
    assert heldout_split(items, SplitOptions(heldout_fraction=0.2, seed=3)) == (train, held)
    assert heldout_split(items, SplitOptions(heldout_fraction=0.2, seed=4))[1] != held
    # a cap shortens the evaluation list but keeps all 10 out of training
    train_c, held_c = heldout_split(items, SplitOptions(heldout_fraction=0.2, seed=3, heldout_max=4))
    assert train_c == train and len(held_c) == 4 and set(held_c) <= set(held)
    # train_max keeps the first training examples; the held-out cut does not move
    train_t, held_t = heldout_split(items, SplitOptions(heldout_fraction=0.2, seed=3, train_max=7))
    assert train_t == train[:7] and held_t == held


@pytest.mark.integration
def test_gemma3_270m_chunked_sft_loss_matches_full_logits_and_decreases():
    """The real model: chunked float32 CE == CE from the full logits; 2 steps on one batch lower it."""
    import jax.numpy as jnp

    from align.data import encode_sft, load_records, pad_batch
    from align.training import (
        OptimConfig,
        create_train_state,
        make_optimizer,
        make_train_step,
        nll_loss,
        token_logprobs,
        trainable_filter,
    )
    from align.hub import ModelOptions, load_model
    from pipelines.stages.sft import as_sft_example, sft_loss

    model, tok = load_model(ModelOptions(spec="gemma3-270m"))
    records = load_records(DATA / "hh_rlhf/helpful-base/test.jsonl.gz", limit=2)
    seqs, _ = encode_sft([as_sft_example(e) for e in records], tok, max_length=64, truncation="keep_end")
    batch = pad_batch(seqs, 64, pad_id=tok.pad_id)
    loss_fn = sft_loss(chunk_size=48)  # does not divide B*T = 128: exercises the padded last tile
    chunked, metrics = loss_fn(model, batch, None)
    logits = model(batch["tokens"], batch["positions"], batch["segment_ids"]).logits
    full, _ = nll_loss(token_logprobs(logits, jnp.asarray(batch["targets"])), batch["loss_mask"])
    np.testing.assert_allclose(float(chunked), float(full), rtol=1e-5)
    assert 0.5 < float(full) < 8.0 and float(metrics["n_tokens"]) > 20
    opt = make_optimizer(OptimConfig(learning_rate=1e-4, total_steps=2, schedule="constant"))
    state = create_train_state(model, opt, trainable=trainable_filter("no_embeddings"))
    step = make_train_step(loss_fn, opt)
    losses = []
    for _ in range(2):  # compiling the step is most of this test; a second step is the first run of it
        state, m = step(state, batch)
        losses.append(float(m["loss"]))
    np.testing.assert_allclose(losses[0], float(full), rtol=1e-5)
    assert losses[1] < losses[0] - 0.1, losses
