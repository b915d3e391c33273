"""`align push`: up to the Hub calls, with huggingface_hub.HfApi replaced by a recorder (no network)."""

from __future__ import annotations

import httpx
import huggingface_hub
import pytest
from huggingface_hub.errors import HfHubHTTPError

from pipelines.cli import main


class FakeApi:
    """Records the calls `align push` makes; `fail` makes upload_folder raise like a refused push."""

    calls: list = []
    fail: Exception | None = None

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", repo_id, kw))

    def create_branch(self, repo_id, **kw):
        self.calls.append(("create_branch", repo_id, kw))

    def upload_folder(self, **kw):
        self.calls.append(("upload_folder", kw["repo_id"], kw))
        if self.fail:
            raise self.fail
        return "https://huggingface.co/me/model/commit/abc"


@pytest.fixture
def api(monkeypatch):
    FakeApi.calls, FakeApi.fail = [], None
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    return FakeApi


@pytest.fixture
def export_dir(tmp_path):
    out = tmp_path / "chat"
    out.mkdir()
    for name in ("config.json", "model.safetensors", "README.md", "tokenizer.json"):
        (out / name).write_text("{}")
    return out


def test_push_creates_the_repo_then_uploads_the_folder(api, export_dir, capsys):
    assert main(["push", str(export_dir), "--repo-id", "me/model", "--private"]) == 0
    (c1, r1, kw1), (c2, r2, kw2) = api.calls
    assert (c1, r1, kw1) == (
        "create_repo",
        "me/model",
        {"private": True, "exist_ok": True, "repo_type": "model"},
    )
    assert (c2, r2) == ("upload_folder", "me/model")
    assert kw2["folder_path"] == str(export_dir) and kw2["revision"] is None and kw2["repo_type"] == "model"
    assert kw2["commit_message"] == "Upload chat with align push"
    assert "pushed" in capsys.readouterr().out


def test_push_to_a_revision_creates_the_branch_first(api, export_dir):
    assert main(["push", str(export_dir), "--repo-id", "me/model", "--revision", "v1"]) == 0
    assert [c[0] for c in api.calls] == ["create_repo", "create_branch", "upload_folder"]
    assert api.calls[0][2]["private"] is False
    assert api.calls[1][2] == {"branch": "v1", "exist_ok": True, "repo_type": "model"}
    assert api.calls[2][2]["revision"] == "v1"


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors"])
def test_a_directory_that_is_not_an_export_is_one_line_exit_2(api, export_dir, capsys, missing):
    (export_dir / missing).unlink()
    assert main(["push", str(export_dir), "--repo-id", "me/model"]) == 2
    err = capsys.readouterr().err
    want = "no config.json" if missing == "config.json" else "no *.safetensors"
    assert err.count("\n") == 1 and f"{export_dir}: not a model export ({want})" in err
    assert api.calls == []  # refused before any Hub call


def test_bad_repo_id_and_a_refused_upload_are_one_line(api, export_dir, capsys):
    assert main(["push", str(export_dir), "--repo-id", "model"]) == 2
    assert "--repo-id 'model': expected owner/name" in capsys.readouterr().err
    request = httpx.Request("POST", "https://huggingface.co/api/repos/create")
    response = httpx.Response(403, request=request)
    api.fail = HfHubHTTPError("403 Forbidden: no write access\ndetails", response=response)
    assert main(["push", str(export_dir), "--repo-id", "me/model"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "push to me/model failed: HfHubHTTPError: 403 Forbidden" in err
