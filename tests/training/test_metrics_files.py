"""metrics.jsonl and TensorBoard on resume: rows past the checkpoint are dropped, and a torn line cannot
block the resume."""

import struct
from pathlib import Path

from align.training.metrics import JsonlWriter, MetricsWriter, read_metrics


def test_truncate_after_drops_later_rows_and_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    writer = JsonlWriter(path)
    for step in (1, 2, 3):
        writer.write(step, {"loss": 1.0 / step})
    with path.open("a") as f:
        f.write('{"step": 4, "lo')  # the run was killed in the middle of this write
    writer.truncate_after(2)
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
    writer.write(3, {"loss": 0.5})  # the resumed run's next row starts on a line of its own
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]


def _tensorboard_scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value)]} as TensorBoard's Python EventAccumulator reads a run directory (the
    tensorboard package is not a dependency): event files in name order, TFRecord framing (u64 length,
    u32 crc, payload, u32 crc), and a SessionLog START at step s purges every event read so far with
    step >= s (EventAccumulator._Purge)."""
    from tensorboardX.proto.event_pb2 import Event, SessionLog

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(logdir).glob("events.out.tfevents.*")):
        data, i = path.read_bytes(), 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            event = Event.FromString(data[i + 12 : i + 12 + n])
            i += 12 + n + 4
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                scalars = {k: [(s, v) for s, v in rows if s < event.step] for k, rows in scalars.items()}
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_a_resume_hides_the_crashed_runs_later_steps_in_tensorboard(tmp_path):
    def writer():
        return MetricsWriter(tmp_path / "metrics.jsonl", tmp_path / "tb")

    crashed = writer()
    crashed.truncate_after(0)  # a fresh run (prepare_run truncates to its start step)
    for step in (1, 2, 3, 4):  # the last checkpoint was step 2; steps 3 and 4 get redone
        crashed.write(step, {"loss": float(step)})
    crashed.close()
    resumed = writer()  # typically within the same second in a test: names must not collide
    resumed.truncate_after(2)
    resumed.write(3, {"loss": 30.0})
    resumed.close()
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3]
    assert _tensorboard_scalars(tmp_path / "tb") == {"loss": [(1, 1.0), (2, 2.0), (3, 30.0)]}
