"""metrics.jsonl on resume: rows past the checkpoint are dropped, and a torn line cannot block the resume."""

from align.training.metrics import JsonlWriter, read_jsonl


def test_truncate_after_drops_later_rows_and_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    writer = JsonlWriter(path)
    for step in (1, 2, 3):
        writer.write(step, {"loss": 1.0 / step})
    with path.open("a") as f:
        f.write('{"step": 4, "lo')  # the run was killed in the middle of this write
    writer.truncate_after(2)
    assert [r["step"] for r in read_jsonl(path)] == [1, 2]
    writer.write(3, {"loss": 0.5})  # the resumed run's next row starts on a line of its own
    assert [r["step"] for r in read_jsonl(path)] == [1, 2, 3]
