"""Checkpoints: Orbax CheckpointManager around a TrainState, with a JSON manifest per step.

Layout (one directory per saved step, written by Orbax to a temporary name and renamed when
complete, so a step directory that exists is a whole checkpoint: "last good" = latest step):

    <dir>/<step>/state/       the TrainState arrays as a flat {tree path: array} dict
    <dir>/<step>/manifest/    JSON: step, data position, rng, model config, run config, code version

A write the storage refuses (disk full, quota, permissions) raises CheckpointWriteFailed, one line
naming the step, its directory and the OS error; the step's partial files are removed and the last
complete checkpoint stays, so the same command, rerun, resumes from it (align.training.write_failures
keeps Orbax's own reports of the failure off the console).

The state is saved flat (keys are jax key paths) and restored into the *abstract* state's tree,
so restores never depend on how Orbax handles nnx / optax / flax.struct pytree nodes, and arrays land
directly with the target shardings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from align.errors import RunStopped
from align.training import write_failures
from align.training.state import TrainState, with_shardings

MANIFEST_FORMAT = "align.checkpoint/v1"
# Manifest sections that describe the run; a resume under different values is warned about.
RUN_SECTIONS = ("config", "model_config")
# Keys that may differ without changing the run (the run directory itself may have been moved).
IGNORED_CHANGES = ("config.output_dir",)

log = logging.getLogger("align.checkpoint")


def flatten_state(state: Any) -> dict[str, Any]:
    """{"<key path>": leaf} for every leaf of a pytree (static fields such as the graphdef are left out)."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(state)
    return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def unflatten_state(like: Any, flat: Mapping[str, Any]) -> Any:
    """Leaves of `flat` put back into the tree structure of `like` (a concrete or abstract state)."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(like)
    missing = [jax.tree_util.keystr(p) for p, _ in leaves if jax.tree_util.keystr(p) not in flat]
    if missing:
        raise KeyError(f"checkpoint lacks {len(missing)} arrays the state needs, e.g. {missing[:3]}")
    return jax.tree_util.tree_unflatten(treedef, [flat[jax.tree_util.keystr(p)] for p, _ in leaves])


def manifest_changes(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """'key: saved -> current' for every dotted key whose value differs between two JSON trees."""
    if isinstance(saved, Mapping) and isinstance(current, Mapping):
        out = []
        for k in sorted(set(saved) | set(current), key=str):
            key = f"{prefix}{k}"
            if key in IGNORED_CHANGES:
                continue
            missing = "<absent>"
            out += manifest_changes(saved.get(k, missing), current.get(k, missing), key + ".")
        return out
    return [] if saved == current else [f"{prefix.rstrip('.')}: {saved!r} -> {current!r}"]


class CheckpointWriteFailed(RunStopped):
    """The storage refused a checkpoint write; the message names the step, its directory, the OS error
    and the last complete checkpoint, which a rerun resumes from."""


@dataclasses.dataclass
class Restored:
    state: TrainState
    manifest: dict
    step: int
    config_changes: list[str] = dataclasses.field(default_factory=list)  # saved -> this run's config


def code_version() -> dict:
    """The package version and, when run from a git checkout, its commit and whether it was dirty."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        out = {"align": version("align")}
    except PackageNotFoundError:
        out = {"align": None}
    root = Path(__file__).resolve().parents[2]
    try:
        out["git"] = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], check=False, cwd=root, capture_output=True, text=True, timeout=5
            ).stdout.strip()
            or None
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            check=False,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout
        out["dirty"] = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        out["git"] = None
    return out


def _jsonable(x: Any) -> Any:
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return _jsonable(dataclasses.asdict(x))
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.ndarray, np.generic, jax.Array)):
        return np.asarray(x).tolist()
    return x


class Checkpointer:
    """Keeps the last `keep` checkpoints of one run; saves asynchronously (device-to-host copy blocks,
    the file writes do not). A failed write is raised (CheckpointWriteFailed) by the next save, wait
    or close, which then closes the checkpointer."""

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        keep: int = 2,
        async_save: bool = True,
        manifest: Mapping | None = None,
    ):
        write_failures.install()
        self.shown = Path(directory)  # as the caller gave it: errors name no other machine path
        self.directory = self.shown.absolute()
        self.base_manifest = _jsonable(dict(manifest or {}))
        self._code = code_version()
        # cleanup_tmp_directories: a write that failed or was killed leaves <step>.orbax-checkpoint-tmp
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=async_save, create=True, cleanup_tmp_directories=True
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)
        self._pending: int | None = None  # the step saved in the background, not yet known complete
        self._failed: CheckpointWriteFailed | None = None

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(
        self,
        state: TrainState,
        *,
        data_position: Mapping | None = None,
        extra: Mapping | None = None,
        force: bool = True,
    ) -> bool:
        """Save `state` under its step; False when that step is already saved."""
        step = int(jax.device_get(state.step))
        self._settle()  # a failure of the previous save is raised as that step's
        if step in self.manager.all_steps():
            return False
        manifest = {
            **self.base_manifest,
            "format": MANIFEST_FORMAT,
            "step": step,
            "data_position": _jsonable(dict(data_position)) if data_position is not None else None,
            "rng": np.asarray(jax.device_get(state.rng)).tolist(),
            "code_version": self._code,
            "saved_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **_jsonable(dict(extra or {})),
        }
        self._pending = step
        with self._failures(step):
            return self.manager.save(
                step,
                force=force,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(flatten_state(state)), manifest=ocp.args.JsonSave(manifest)
                ),
            )

    def read_manifest(self, step: int | None = None) -> dict | None:
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        return self.manager.restore(step, args=ocp.args.Composite(manifest=ocp.args.JsonRestore())).manifest

    def restore(self, step: int, abstract_state: TrainState, shardings: Any = None) -> Restored:
        """Restore step `step` into `abstract_state`'s tree (ShapeDtypeStructs or arrays), placed with
        `shardings` (a leaf-for-leaf tree, e.g. train_state_shardings) or on the default device."""
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), abstract_state)
        if shardings is not None:
            abstract = with_shardings(abstract, shardings)
        else:
            device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
            abstract = jax.tree.map(
                lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), abstract
            )
        out = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(flatten_state(abstract)), manifest=ocp.args.JsonRestore()
            ),
        )
        state = unflatten_state(abstract_state, out.state)
        manifest = dict(out.manifest)
        changes = [
            c
            for section in RUN_SECTIONS
            if section in self.base_manifest and section in manifest
            for c in manifest_changes(manifest[section], self.base_manifest[section], section + ".")
        ]
        if changes:
            # Warned, not refused: extending a run (more steps) is a legitimate change. Anything else
            # means the resumed state was trained under another config than the one now written.
            log.warning(
                "%s/%d was saved under another config; resuming with %d change(s): %s",
                self.directory,
                step,
                len(changes),
                "; ".join(changes),
            )
        return Restored(state=state, manifest=manifest, step=step, config_changes=changes)

    def restore_latest(self, abstract_state: TrainState, shardings: Any = None) -> Restored | None:
        """The latest complete checkpoint, or None when there is none."""
        step = self.latest_step()
        return None if step is None else self.restore(step, abstract_state, shardings)

    def wait(self) -> None:
        """Block until pending async saves are on disk (CheckpointWriteFailed if one could not be)."""
        self._settle()

    def close(self) -> None:
        """Wait for the pending save and close; after a failed write (already raised) a no-op."""
        if self._failed is not None:
            return
        self._settle()
        self.manager.close()

    def _settle(self) -> None:
        """Wait for the pending save; raises CheckpointWriteFailed for it (or for an earlier one)."""
        if self._failed is not None:
            raise self._failed
        if self._pending is not None:
            with self._failures(self._pending):
                self.manager.wait_until_finished()
            self._pending = None

    @contextlib.contextmanager
    def _failures(self, step: int) -> Iterator[None]:
        """A storage failure while saving `step` -> CheckpointWriteFailed, after closing the manager
        and removing the step's partial files (they hold space the user must otherwise free too).
        Other exceptions are bugs and pass unchanged."""
        try:
            yield
        except Exception as e:
            reason = write_failures.storage_error(e)
            if reason is None:
                raise
            last = self.manager.latest_step()
            self._failed = CheckpointWriteFailed(self._failure_message(step, reason, last))
            self._abandon(step)
            raise self._failed from e

    def _failure_message(self, step: int, reason: str, last: int | None) -> str:
        where = self.shown / str(step)
        if last is None:
            after = "there is no earlier checkpoint: fix the cause and run the same command again"
        else:
            after = (
                f"the last complete checkpoint, step {last}, is intact: fix the cause (e.g. free disk "
                "space) and run the same command again to resume from it"
            )
        return f"could not write checkpoint step {step} to {where}: {reason}; {after}"

    def _abandon(self, step: int) -> None:
        # Every later wait re-raises the failed save, close() included (its background threads have
        # ended by then; only idle thread pools remain, which exit with the process).
        with contextlib.suppress(Exception):
            self.manager.close()
        self._pending = None
        # With several processes, the others may still be writing there.
        if write_failures.wait_for_writers() and jax.process_count() == 1:
            for partial in self.directory.glob(f"{step}.orbax-checkpoint-tmp*"):
                shutil.rmtree(partial, ignore_errors=True)

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
