"""`align push DIR --repo-id ID`: upload an exported model directory to the Hugging Face Hub.

DIR is what `align convert` or a pipeline variant wrote (config.json, *.safetensors, tokenizer files,
README.md). The repository is created when missing (`--private` for a private one); `--revision`
uploads to a branch, created from main when missing. Authentication is huggingface_hub's own
(`hf auth login` or HF_TOKEN); a failed push is one line naming the repository and what to do.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from align.errors import InputError, InvalidInput, MissingInput

REQUIRED = ("config.json",)


class PushFailed(InputError):
    """The Hub refused or could not be reached; the message says which repository and why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="an exported model directory (align convert / align pipeline variants)")
    parser.add_argument("--repo-id", required=True, help="the Hub repository, owner/name")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision", default=None, help="branch to upload to (created when missing)")
    parser.add_argument("--message", default=None, help="commit message (default: names the directory)")


def check_export(path: str | Path) -> Path:
    """`path` if it is a Hugging Face export (config.json and weights), else an InputError saying so."""
    path = Path(path)
    if not path.is_dir():
        raise MissingInput(f"{path}: no such directory (make an export with `align convert` first)")
    missing = [f for f in REQUIRED if not (path / f).is_file()]
    if not any(path.glob("*.safetensors")):
        missing.append("*.safetensors")
    if missing:
        raise InvalidInput(
            f"{path}: not a model export (no {', '.join(missing)}); push a directory written by "
            "`align convert` or a pipeline's variants/<name>"
        )
    return path


def _check_repo_id(repo_id: str) -> str:
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts):
        raise InvalidInput(f"--repo-id {repo_id!r}: expected owner/name")
    return repo_id


def push(path: Path, repo_id: str, *, private: bool, revision: str | None, message: str | None, api=None):
    """create_repo (exist_ok) [+ create_branch] + upload_folder; returns upload_folder's CommitInfo."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    api = api or HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=str(path),
            repo_type="model",
            revision=revision,
            commit_message=message or f"Upload {path.name} with align push",
            ignore_patterns=[".*"],  # no temp or hidden files of an interrupted export
        )
    except LocalTokenNotFoundError as e:
        raise PushFailed(
            f"push to {repo_id}: not logged in ({e}); run `hf auth login` or set HF_TOKEN"
        ) from e
    except (HfHubHTTPError, OSError) as e:  # refused (401/403/404) or unreachable
        raise PushFailed(f"push to {repo_id} failed: {type(e).__name__}: {e}") from e


def run(args: argparse.Namespace) -> int:
    path = check_export(args.dir)
    repo_id = _check_repo_id(args.repo_id)
    info = push(path, repo_id, private=args.private, revision=args.revision, message=args.message)
    where = f" ({args.revision})" if args.revision else ""
    print(f"pushed {path} to {repo_id}{where}: {getattr(info, 'commit_url', None) or info}")
    return 0
