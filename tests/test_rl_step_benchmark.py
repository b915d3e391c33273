"""benchmarks/rl_step.py: argument checks, equal prompt lengths, the shared reward, the comparison row,
and both sides end to end on the tiny preset."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from align.data.testing import tiny_tokenizer
from align.data.tokenizer import Tokenizer
from tests.scripts import ROOT, load_script

bench = load_script("benchmarks/rl_step.py")


@pytest.mark.parametrize(
    "argv",
    [
        ["--sides", "jax,vllm"],
        ["--sides", ""],
        ["--group", "1"],
        ["--prompts", "0"],
        ["--new-tokens", "0"],
        ["--iterations", "0"],
        ["--prompt-len", "1"],
        ["--warmup", "-1"],
        ["--beta", "-0.1"],
    ],
)
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        bench.parse_args(argv)
    assert e.value.code == 2
    assert f"error: {argv[0]}" in capsys.readouterr().err  # the message names the flag


def test_prompts_tokenize_to_exactly_the_requested_length():
    tok = tiny_tokenizer()
    for length in (2, 5, 64):
        texts = bench.prompt_texts(tok, 3, length)
        assert [len(tok(t)["input_ids"]) for t in texts] == [length] * 3
        assert all(tok(t)["input_ids"][0] == tok.bos_token_id for t in texts)
    assert len(set(bench.prompt_texts(tok, 3, 64))) == 3  # distinct prompts


def test_vowel_fraction_hand_values():
    assert bench.vowel_fraction("Banana!") == pytest.approx(3 / 6)
    assert bench.vowel_fraction("aa aa") == bench.vowel_fraction("aa") == 1.0  # length-free
    assert bench.vowel_fraction("123 ...") == 0.0


def test_jax_reward_equals_trl_reward_on_the_decoded_text():
    tok = tiny_tokenizer()
    rows = [
        tok("hello world", add_special_tokens=False)["input_ids"],
        tok("xyz a")["input_ids"],
    ]  # the second with <bos>
    M = max(map(len, rows)) + 2
    response = np.zeros((2, M), np.int32)
    mask = np.zeros((2, M), np.float32)
    for i, r in enumerate(rows):
        response[i, : len(r)], mask[i, : len(r)] = r, 1
    response[0, len(rows[0])] = 97  # past the mask: must not count
    got = bench.DecodedReward(Tokenizer(tok))(None, None, response, mask)
    completions = tok.batch_decode(rows, skip_special_tokens=True)  # what TRL hands its reward functions
    np.testing.assert_allclose(got, bench.vowel_reward(None, completions), rtol=0, atol=1e-7)
    np.testing.assert_allclose(got, [3 / 10, 1 / 4], atol=1e-7)


def test_summary_ratio_and_markdown_row():
    args = bench.parse_args(["--sides", "jax,trl"])
    rows = {
        "jax": {"s_per_it": 2.0, "it_per_s": 0.5, "peak_rss_mb": 100.0, "prompt_sha": "a"},
        "trl": {"s_per_it": 8.0, "it_per_s": 0.125, "peak_rss_mb": 300.0, "prompt_sha": "a"},
    }
    s = bench.summary(rows, args)
    assert s["jax_over_trl"] == pytest.approx(4.0) and s["same_prompts"] is True
    row = bench.markdown_row(rows, s)
    assert "| 2.00 (0.500) | 8.00 (0.125) | 4.00x | 100 / 300 MB |" in row
    rows["trl"] = {"timed_out_s": 60.0}
    s = bench.summary(rows, args)
    assert s["jax_over_trl"] is None
    assert "timed out at 60 s" in bench.markdown_row(rows, s)


@pytest.mark.timeout(300)
def test_both_sides_run_one_iteration_on_the_tiny_preset(tmp_path):
    """Slower than the rest (~40 s of CPU on a quiet machine: JAX's first-iteration compilation,
    TRL's import, the HF export): the only test that runs the two workers."""
    out = tmp_path / "rows.jsonl"
    argv = "--prompts 2 --group 2 --prompt-len 8 --new-tokens 4 --iterations 1 --warmup 0"
    cmd = [sys.executable, "benchmarks/rl_step.py", *argv.split(), "--side-timeout", "250", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=290, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["side"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"jax", "trl", "summary"}
    for side in ("jax", "trl"):
        assert rows[side]["response_len"] == [4.0], rows[side]  # lengths equalized on both sides
        assert rows[side]["s_per_it"] > 0 and rows[side]["peak_rss_mb"] > 0
    assert rows["jax"]["prompt_sha"] == rows["trl"]["prompt_sha"]
    s = rows["summary"]
    assert s["same_prompts"] is True
    assert s["jax_over_trl"] == pytest.approx(rows["jax"]["it_per_s"] / rows["trl"]["it_per_s"])
    assert "| `preset:tiny` | 2 x 2 | 8 | 4 |" in proc.stdout
