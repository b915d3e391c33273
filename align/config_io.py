"""YAML configs into frozen dataclasses, with `key=value` dotted overrides.

    config = load_config(SFTConfig, "configs/sft/tiny_cpu.yaml", ["optim.learning_rate=3e-4"])

Every key must name a field: an unknown key is an error that names the key, the file and the nearest
valid field (difflib). Values are checked against the field's type (int, float, bool, str, Optional,
tuple[...], nested dataclasses, dicts). Override values are parsed as YAML scalars (`steps=10` is an
int, `lora=null` is None, `targets=[a, b]` a list). `${ALIGN_DATA_DIR}` in a string value, in the file
or an override, becomes the local data directory (align.data_dir), so the run's saved config.yaml
names the files it read.

YAML anchors and aliases are refused while the file is still a stream of parser events, before any
node exists: nine nested aliases of nine items (under 400 bytes) expand to 9^9 nodes. Ranges are the
dataclasses' own (`__post_init__` raising align.checks.FieldError), reported at the key's file:line.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from align.checks import FieldError
from align.data_dir import expand_data_dir
from align.errors import InvalidInput, MissingInput
from align.fileio import write_text_atomic

T = TypeVar("T")


class ConfigError(InvalidInput):
    """A config key or value that does not fit the dataclass; the message says where and why."""


class Source(str):
    """A file name that also knows the line of every dotted key in it and which keys were set by a
    `key=value` override instead (for error messages)."""

    lines: dict[str, int]
    overrides: dict[str, str]

    def __new__(
        cls, name: str, lines: Mapping[str, int] | None = None, overrides: Mapping[str, str] | None = None
    ):
        obj = super().__new__(cls, name)
        obj.lines = dict(lines or {})
        obj.overrides = dict(overrides or {})
        return obj


def where_is(source: str, key: str) -> str:
    """ "file:line" for a dotted key when the line is known, "file (override 'k=v')" when an override
    set it (or a section above it), else the source name."""
    key = re.sub(r"\[\d+\]$", "", key)
    parts = key.split(".")
    for i in range(len(parts), 0, -1):  # the override that set this key or a section above it
        text = getattr(source, "overrides", {}).get(".".join(parts[:i]))
        if text is not None:
            return f"{source} (override {text!r})"
    line = getattr(source, "lines", {}).get(key)
    return f"{source}:{line}" if line else str(source)


def first_anchor_line(text: str) -> int | None:
    """The 1-based line of the first YAML anchor (`&a`) or alias (`*a`) in `text`, else None.

    Reads parser events only, so no node is built and an alias bomb costs as much as its text."""
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            return event.start_mark.line + 1
    return None


def safe_yaml(text: str, source: str) -> Any:
    """yaml.safe_load of a config text with anchors and aliases refused first (ConfigError)."""
    try:
        line = first_anchor_line(text)
        if line is not None:
            raise ConfigError(
                f"{source}:{line}: YAML anchors and aliases (&name, *name) are not allowed in configs; "
                "write the values out"
            )
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: invalid YAML: {e}") from e
    except RecursionError as e:
        raise ConfigError(f"{source}: invalid YAML: nested too deeply") from e


def key_lines(text: str) -> dict[str, int]:
    """{dotted key: 1-based line} of every mapping key in a YAML document."""
    out: dict[str, int] = {}

    def walk(node, prefix):
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = prefix + str(k.value)
                out[key] = k.start_mark.line + 1
                walk(v, key + ".")

    try:
        walk(yaml.compose(text), "")
    except yaml.YAMLError:
        pass
    return out


def _fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _unknown(key: str, where: str, choices: Sequence[str], source: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(choices), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    valid = ", ".join(choices)
    return ConfigError(
        f"{where_is(source, where + key)}: unknown key {where + key!r}{hint} (valid keys: {valid})"
    )


def _strip_optional(tp):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else tp), type(None) in typing.get_args(tp)
    return tp, False


def _coerce(value: Any, tp, where: str, source: str) -> Any:
    """`value` (parsed YAML) as type `tp`, or a ConfigError naming the key."""
    tp, optional = _strip_optional(tp)
    if value is None:
        if optional or tp is Any:
            return None
        raise ConfigError(f"{where_is(source, where)}: {where} may not be null")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"{where_is(source, where)}: {where} must be a mapping of {tp.__name__} fields, got {value!r}"
            )
        return build(tp, value, source=source, prefix=where + ".")
    origin = typing.get_origin(tp)
    if origin in (tuple, list, Sequence) or tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where_is(source, where)}: {where} must be a list, got {value!r}")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{where}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where_is(source, where)}: {where} must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where_is(source, where)}: {where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where_is(source, where)}: {where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where_is(source, where)}: {where} must be a number, got {value!r}")
        try:
            x = float(value)
        except OverflowError:  # an integer literal past the float range
            x = math.inf
        if not math.isfinite(x):  # .nan makes every range check false, .inf no limit at all
            raise ConfigError(f"{where_is(source, where)}: {where} must be a finite number, got {value!r}")
        return x
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where_is(source, where)}: {where} must be a string, got {value!r}")
        return str(value)
    return value


def build(cls: type[T], data: Mapping[str, Any], *, source: str = "<config>", prefix: str = "") -> T:
    """An instance of dataclass `cls` from a (nested) mapping; unknown keys are errors."""
    fields = _fields(cls)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise _unknown(str(key), prefix, list(fields), source)
        kwargs[key] = _coerce(value, hints[key], prefix + key, source)
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{source}: missing required key(s) {', '.join(prefix + m for m in missing)}")
    try:
        return cls(**kwargs)
    except FieldError as e:  # a range check of one field: point at that key's line
        key = prefix + e.field
        raise ConfigError(f"{where_is(source, key)}: {key}: {e}") from e
    except (TypeError, ValueError, ZeroDivisionError) as e:
        section = prefix.rstrip(".")
        where = where_is(source, section) if section else str(source)
        raise ConfigError(f"{where}: {section or cls.__name__}: {e}") from e


def parse_override(text: str) -> tuple[list[str], Any]:
    """'a.b.c=value' -> (["a", "b", "c"], YAML-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value (e.g. optim.learning_rate=1e-4)")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"override {text!r} has an empty key")
    value = safe_yaml(raw, f"override {text!r}") if raw.strip() else ""
    if isinstance(value, str) and _looks_float(value):
        value = float(value)  # YAML 1.1 reads "1e-4" as a string
    return key.strip().split("."), value


def _looks_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return any(c in s.lower() for c in "e.") and s.strip().lower() not in ("nan", "inf")


def _map_strings(node: Any, fn: Callable[[str], Any]) -> Any:
    """A parsed YAML tree with `fn` applied to every string leaf (mappings and lists rebuilt)."""
    if isinstance(node, Mapping):
        return {k: _map_strings(v, fn) for k, v in node.items()}
    if isinstance(node, list):
        return [_map_strings(v, fn) for v in node]
    return fn(node) if isinstance(node, str) else node


def _fix_floats(node: Any) -> Any:
    return _map_strings(node, lambda s: float(s) if _looks_float(s) else s)


def expand_tree(node: Any) -> Any:
    """Every string in a parsed YAML tree with ${ALIGN_DATA_DIR} replaced."""
    return _map_strings(node, expand_data_dir)


def apply_overrides(cls, data: dict, overrides: Sequence[str], source: str) -> dict:
    """`data` with each `a.b=value` set; keys are checked against the dataclass tree as they are set."""
    data = dict(data)
    for text in overrides:
        path, value = parse_override(text)
        node, tp, prefix = data, cls, ""
        for i, key in enumerate(path):
            fields = _fields(tp)
            if key not in fields:
                raise _unknown(key, prefix, list(fields), f"override {text!r} for {source}")
            if i == len(path) - 1:
                node[key] = value
                break
            sub_tp, _ = _strip_optional(typing.get_type_hints(tp)[key])
            if not dataclasses.is_dataclass(sub_tp):
                raise ConfigError(f"override {text!r}: {prefix + key} is not a section")
            child = node.get(key)
            node[key] = dict(child) if isinstance(child, Mapping) else {}
            node, tp, prefix = node[key], sub_tp, prefix + key + "."
    return data


def load_config(cls: type[T], path: str | os.PathLike | None, overrides: Sequence[str] = ()) -> T:
    """Read YAML `path` (None: only defaults), apply dotted `overrides`, build the frozen dataclass."""
    return load_config_noting(cls, path, overrides, trl_names=False)[0]


def load_config_noting(
    cls: type[T],
    path: str | os.PathLike | None,
    overrides: Sequence[str] = (),
    *,
    trl_names: bool = True,
    device_count: Callable[[], int] | None = None,
) -> tuple[T, list[str]]:
    """load_config, with TRL's names accepted as aliases (align.config_aliases) when `trl_names`:
    (config, notes naming each alias used and the key it set). `device_count` (e.g. jax.device_count)
    sizes per_device_train_batch_size when the mesh does not say how many devices it spans."""
    from align import config_aliases as aliases  # it imports this module

    source = str(path) if path is not None else "<defaults>"
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise MissingInput(f"config file {p} does not exist")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{source}: cannot read: {e}") from e
        data = safe_yaml(text, source) or {}
        source = Source(source, key_lines(text))
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(data).__name__}")
    data, resolved, named = _fix_floats(data), aliases.Resolved(), []
    if trl_names:
        data = aliases.rename(cls, data, source, resolved)
        overrides, named = aliases.split_overrides(cls, data, overrides)
    data = aliases.apply_named(apply_overrides(cls, data, overrides, source), named, resolved)
    data = expand_tree(aliases.finish(cls, data, resolved, device_count))
    # A value an override set is reported at the override, not at the file line it replaced.
    set_by = {".".join(parse_override(text)[0]): text for text in overrides}
    set_by.update({row.ours: text for row, _, text in named})
    source = Source(source, getattr(source, "lines", {}), set_by)
    return build(cls, data, source=source), resolved.notes


def to_dict(config: Any) -> Any:
    """Dataclass -> plain nested dict/list (tuples become lists), for YAML/JSON dumps."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    if isinstance(config, Mapping):
        return {k: to_dict(v) for k, v in config.items()}
    return config


def dump_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def write_config(run_dir: str | os.PathLike, config: Any) -> None:
    """`run_dir/config.yaml`, atomically: a run killed mid-write must not leave a torn config behind
    for the resumed run (or a reader) to find."""
    write_text_atomic(Path(run_dir) / "config.yaml", dump_yaml(config))
