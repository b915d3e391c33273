"""benchmarks/mfu.py runs end to end on the CPU (tiny preset) and its MFU arithmetic holds."""

import argparse
import json

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
    assert mfu.main(["--presets", "tiny", "--shapes", "2x32", "--steps", "1", "--warmup", "1",
                     "--gen-batches", "2", "--new-tokens", "4", "--repeats", "1", "--ceiling-n", "0",
                     "--peak-tflops", "0.001", "--json", str(out)]) == 0
    rows = {r["case"]: r for r in json.loads(out.read_text())}
    train, gen = rows["train"], rows["generate"]
    flops = 2 * 32 * train_flops_per_token(ModelConfig.tiny(), 32)
    assert train["model_tflop_per_step"] == pytest.approx(flops / 1e12)
    assert train["achieved_tflops"] == pytest.approx(flops / train["step_s"] / 1e12)
    assert train["mfu"] == pytest.approx(train["achieved_tflops"] / 0.001)
    assert train["finite"] and 0 < train["loss"] < 20
    assert gen["tokens_per_s"] == pytest.approx(2 * 4 / gen["seconds"])
