"""benchmarks/mfu.py runs end to end on the CPU (tiny preset) and its MFU arithmetic holds."""

import argparse
import json
import math

import pytest

from align.model.config import ModelConfig
from align.model.flops import train_flops_per_token
from tests.scripts import load_script

mfu = load_script("benchmarks/mfu.py")


def test_peak_lookup_and_shape_parsing():
    assert mfu.device_peak("NVIDIA H200") == mfu.device_peak("NVIDIA H100 80GB HBM3") == 989.4e12
    assert mfu.device_peak("cpu") is None
    assert mfu.shape("8x2048") == (8, 2048)
    with pytest.raises(argparse.ArgumentTypeError, match="expected BxT"):
        mfu.shape("8by2048")


def test_tiny_run_writes_consistent_rows(tmp_path):
    out = tmp_path / "rows.json"
    assert (
        mfu.main(
            [
                "--presets",
                "tiny",
                "--shapes",
                "2x32",
                "--steps",
                "1",
                "--warmup",
                "1",
                "--gen-batches",
                "2",
                "--new-tokens",
                "4",
                "--repeats",
                "1",
                "--ceiling-n",
                "0",
                "--peak-tflops",
                "0.001",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    rows = {r["case"]: r for r in json.loads(out.read_text())}
    train, gen = rows["train"], rows["generate"]
    flops = 2 * 32 * train_flops_per_token(ModelConfig.tiny(), 32)
    assert train["model_tflop_per_step"] == pytest.approx(flops / 1e12)
    assert train["achieved_tflops"] == pytest.approx(flops / train["step_s"] / 1e12)
    assert train["mfu"] == pytest.approx(train["achieved_tflops"] / 0.001)
    # Random weights, random targets: the loss is the cross-entropy of near-uniform logits, ln V plus a
    # little. random_model draws every weight from normal(0, 0.02); the unembedding (tied to the
    # embedding table) meets an RMS-normalised hidden state of norm sqrt(D), so each logit is ~normal(0,
    # s) with s = 0.02 sqrt(D) = 0.16, and E[loss] = E[logsumexp] - E[z_target] ~= ln V + s^2 / 2 = ln V
    # + 0.013. Over the 2 x 32 = 64 supervised tokens the mean has a standard error of ~s / 8 = 0.02 (one
    # step at lr 1e-5 moves nothing). 0.1 is 5 standard errors; weights 5x larger (s = 0.8) would
    # already put the loss ~0.3 above ln V.
    config = ModelConfig.tiny()
    assert train["finite"] and abs(train["loss"] - math.log(config.vocab_size)) < 0.1, train["loss"]
    assert gen["tokens_per_s"] == pytest.approx(2 * 4 / gen["seconds"])


def test_profile_rows_account_for_the_traced_kernels(tmp_path):
    """--profile traces more steps and sums kernel time by category: the categories add up to the
    busy time, the top kernels are sorted and none exceeds it."""
    out = tmp_path / "rows.json"
    assert (
        mfu.main(
            [
                "--presets",
                "tiny",
                "--shapes",
                "2x32",
                "--steps",
                "1",
                "--warmup",
                "1",
                "--gen-batches",
                "--ceiling-n",
                "0",
                "--peak-tflops",
                "0.001",
                "--json",
                str(out),
                "--profile",
                str(tmp_path / "trace"),
                "--profile-steps",
                "2",
            ]
        )
        == 0
    )
    prof = next(r for r in json.loads(out.read_text()) if r["case"] == "train")["profile"]
    busy = prof["busy_ms_per_step"]
    assert busy > 0
    assert sum(c["ms"] for c in prof["categories"].values()) == pytest.approx(busy)
    assert sum(c["share"] for c in prof["categories"].values()) == pytest.approx(1.0)
    times = [k["ms"] for k in prof["kernels"]]
    assert times == sorted(times, reverse=True) and times[0] <= busy
    assert prof["categories"]["matmul"]["ms"] > 0  # the projections and the unembedding


def test_profile_categories():
    ps = load_script("benchmarks/profile_summary.py")
    assert ps.category("cudnn_generated_fort_native_sdpa_sm90_flash_bprop", "") == "attention"
    assert ps.category("nvjet_sm90_tss_176x128_64x5_1x2_h_bz_TNN", "command_buffer_1") == "matmul"
    assert ps.category("input_reduce_fusion_1", "") == "reduction"
    assert ps.category("loop_convert_fusion", "") == "elementwise"
    assert ps.category("input_transpose_fusion", "") == "copy"
