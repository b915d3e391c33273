"""pipelines.stages.rlhf's run-directory rules that need no model: a killed run resumes without crashing."""

import json

import pytest

from pipelines.stages import rlhf
from pipelines.stages.rl_eval import Evaluation


def test_a_run_killed_during_eval_before_redoes_it(tmp_path, monkeypatch):
    # evaluate_after reads both files after the whole training: a run killed between the two writes
    # must not leave eval_before.json (the "done" marker) without its samples.
    config = rlhf.RLHFConfig(output_dir=str(tmp_path))
    before = Evaluation({"reward/mean": 0.5, "n": 1}, [{"prompt": "p", "response": "r", "reward": 0.5}])
    monkeypatch.setattr(rlhf, "build_reward", lambda *a, **k: None)
    monkeypatch.setattr(rlhf, "evaluate_policy", lambda *a, **k: before)
    real_write, calls = rlhf.write_json, []

    def killed_at_the_second_write(path, obj):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies here
        real_write(path, obj)

    monkeypatch.setattr(rlhf, "write_json", killed_at_the_second_write)
    with pytest.raises(KeyboardInterrupt):
        rlhf.evaluate_before(config, None, ["held"], None)
    assert not (tmp_path / "eval_before.json").exists()
    assert not rlhf.eval_before_done(tmp_path)

    monkeypatch.setattr(rlhf, "write_json", real_write)
    rlhf.evaluate_before(config, None, ["held"], None)
    assert rlhf.eval_before_done(tmp_path)
    assert json.loads((tmp_path / "eval_before.json").read_text()) == before.metrics


def test_eval_before_without_its_samples_is_not_done(tmp_path):
    (tmp_path / "eval_before.json").write_text("{}")  # left by a run killed before the fix
    assert not rlhf.eval_before_done(tmp_path)
    (tmp_path / "eval_before_samples.json").write_text("[]")
    assert rlhf.eval_before_done(tmp_path)
