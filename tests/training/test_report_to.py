"""train.report_to: the metrics writers a run opens (jsonl, tensorboard, wandb). W&B runs in offline
mode under tmp_path; its run file is read back record by record and compared with metrics.jsonl."""

import json
import struct
import sys

import numpy as np
import pytest

from align.config_io import ConfigError, load_config, load_config_noting
from align.training import read_metrics
from align.training.metrics import open_metrics_writer
from pipelines import cli
from pipelines.stages.sft import SFTConfig
from tests.pipelines.test_sft import tiny_dataset

BLOCK, HEADER = 32768, 7  # the LevelDB log layout of W&B's .wandb files: 32 KiB blocks, 7-byte headers
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_records(path) -> list[bytes]:
    """The records of a .wandb file (":W&B" + magic + version, then LevelDB log records: crc32,
    little-endian length, type; a record split over blocks comes as FIRST, MIDDLE..., LAST)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    out, pos, parts = [], HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # the block's tail is padding
            pos += left
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            continue
        parts += chunk
        if kind in (FULL, LAST):
            out.append(parts)
            parts = b""
    return out


def wandb_history(run_dir) -> list[dict]:
    import wandb
    from wandb.proto import wandb_internal_pb2 as pb

    wandb.teardown()  # run.finish() returns before W&B's service has written the run file; this waits
    files = list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    rows = []
    for raw in wandb_records(files[0]):
        record = pb.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            items = {k: v for k, v in items.items() if not k.startswith("_")}  # W&B's own (_step, _runtime)
            rows.append({"step": record.history.step.num, **items})
    return rows


def test_wandb_offline_logs_the_values_jsonl_has(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "run"
    writer = open_metrics_writer(run_dir, ("jsonl", "wandb"), config={"optim": {"learning_rate": 0.5}})
    writer.write(1, {"loss": 1.5, "lr": np.float32(0.25), "n_tokens": 12})
    writer.write(2, {"loss": np.asarray(0.75), "lr": 0.125, "n_tokens": 9})
    writer.close()
    assert wandb_history(run_dir) == [
        {"step": 1, "loss": 1.5, "lr": 0.25, "n_tokens": 12.0},
        {"step": 2, "loss": 0.75, "lr": 0.125, "n_tokens": 9.0},
    ]
    assert read_metrics(run_dir / "metrics.jsonl") == [
        {"step": 1, "loss": 1.5, "lr": 0.25, "n_tokens": 12},
        {"step": 2, "loss": 0.75, "lr": 0.125, "n_tokens": 9},
    ]
    assert not (run_dir / "tb").exists()  # not asked for


def test_a_tiny_sft_run_reports_to_wandb(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    path = tmp_path / "sft.yaml"
    path.write_text(f"""
output_dir: {tmp_path / "run"}
data: {{path: {tiny_dataset(tmp_path / "data.jsonl")}, max_length: 32}}
optim: {{learning_rate: 1.0e-2, total_steps: 4}}
train: {{batch_size: 4, log_every: 2, progress: false, eval_before: false, report_to: [jsonl, wandb]}}
mesh: {{devices: 1}}
chunk_size: 64
export: false
""")
    assert cli.main(["sft", "--config", str(path)]) == 0
    jsonl = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    logged = [r for r in wandb_history(tmp_path / "run") if "loss" in r]
    assert [r["step"] for r in logged] == [r["step"] for r in jsonl] == [2, 4]
    assert [r["loss"] for r in logged] == pytest.approx([r["loss"] for r in jsonl], rel=1e-6)
    assert not (tmp_path / "run" / "tb").exists()


def sft_file(tmp_path, report_to):
    path = tmp_path / "c.yaml"
    path.write_text(f"output_dir: out\ntrain:\n  report_to: {report_to}\n")
    return path


def test_wandb_not_installed_is_one_located_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # find_spec then says: not installed
    with pytest.raises(ConfigError) as e:
        load_config(SFTConfig, sft_file(tmp_path, "[jsonl, wandb]"))
    assert str(e.value) == (
        f"{tmp_path / 'c.yaml'}:3: train.report_to: wandb is not installed: pip install 'align[wandb]' "
        "(or pip install wandb)"
    )
    with pytest.raises(ConfigError, match="wandb is not installed"):  # TRL's spelling, a plain string
        load_config_noting(SFTConfig, None, ["output_dir=o", "report_to=wandb"])


def test_unknown_writer_and_jsonl_left_out(tmp_path):
    with pytest.raises(ConfigError, match=r"c.yaml:3: train.report_to: 'mlflow' is not one of jsonl"):
        load_config(SFTConfig, sft_file(tmp_path, "[mlflow]"))
    writer = open_metrics_writer(tmp_path / "run", ("tensorboard",))
    writer.write(1, {"loss": 1.0})
    writer.truncate_after(0)
    writer.close()
    assert not (tmp_path / "run" / "metrics.jsonl").exists() and list((tmp_path / "run" / "tb").iterdir())
