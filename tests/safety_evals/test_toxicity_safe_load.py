"""Detoxify weights are never unpickled: a crafted checkpoint is refused before any of its code runs,
and missing weights make the suite fail as "not run" with the file to place and where."""

from __future__ import annotations

from pathlib import Path

import pytest

from align.errors import InvalidInput, MissingInput
from safety_evals import results
from safety_evals.suites import toxicity

torch = pytest.importorskip("torch")
pytest.importorskip("detoxify")


class _Payload:
    """Unpickling this creates `marker`: what a crafted checkpoint could do with any code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _malicious_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"config": _Payload(marker), "state_dict": {}}, ckpt)
    assert not marker.exists()
    return ckpt, marker


def test_malicious_pickle_is_refused_and_never_executed(tmp_path):
    ckpt, marker = _malicious_checkpoint(tmp_path)
    # the same file through the unsafe loader Detoxify uses runs the payload: the test can fail
    torch.load(ckpt, weights_only=False)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(InvalidInput) as err:
        toxicity.DetoxifyScorer(checkpoint=str(ckpt))
    assert not marker.exists()
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{ckpt}: refused: not a weights-only checkpoint")


def test_malicious_pickle_in_the_default_cache_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    path, _ = toxicity.default_checkpoint("original")
    path.parent.mkdir(parents=True)
    ckpt, marker = _malicious_checkpoint(tmp_path)
    ckpt.rename(path)
    with pytest.raises(InvalidInput, match="refused: not a weights-only checkpoint"):
        toxicity.DetoxifyScorer()
    assert not marker.exists()


def test_missing_weights_fail_the_suite_as_not_run_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    want = tmp_path / "hub" / "checkpoints" / "toxic_original-c1212f89.ckpt"
    with pytest.raises(MissingInput) as err:
        toxicity.DetoxifyScorer()
    url = "https://github.com/unitaryai/detoxify/releases/download/v0.1-alpha/toxic_original-c1212f89.ckpt"
    assert str(err.value) == (
        f"toxicity not run: no Detoxify weights for 'original'; download {url} to {want} "
        "(or pass --toxicity-checkpoint FILE with --toxicity-hf-config DIR)"
    )
    entry = results.run_suite(toxicity.VERSION, lambda: toxicity.DetoxifyScorer())
    assert entry["status"] == "failed" and entry["metrics"] == {}
    assert entry["error"].startswith("MissingInput: toxicity not run: no Detoxify weights")
    with pytest.raises(MissingInput, match=r"--toxicity-checkpoint .*nope.ckpt does not exist"):
        toxicity.DetoxifyScorer(checkpoint=str(tmp_path / "nope.ckpt"))


def test_missing_weights_message_names_the_home_cache_as_tilde(tmp_path, monkeypatch):
    """The message is written into results documents: no path of the machine that ran it."""
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: tmp_path))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / ".cache" / "torch" / "hub"))
    with pytest.raises(MissingInput) as err:
        toxicity.DetoxifyScorer()
    assert " to ~/.cache/torch/hub/checkpoints/toxic_original-c1212f89.ckpt " in str(err.value)
    assert str(tmp_path) not in str(err.value)
