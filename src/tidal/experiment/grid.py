"""Parameter grids: ``--grid 'policy.target=0.5,0.6,0.7'`` axes and their cross product.

A key is a dotted path into the scenario (``service.cold_start``, ``policy.target``, ``seed``);
values are YAML scalars (``30s`` stays the string ``"30s"`` for the duration field to parse,
``0.5`` is a float, ``null`` is None). Commas inside brackets, braces or quotes do not split, so
a value may be a flow mapping: ``--grid 'policy={name: static, replicas: 2},{name: hpa}'``.
"""

from __future__ import annotations

import difflib
import itertools
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel

from tidal.config.scenario import Scenario
from tidal.core.errors import TidalInputError
from tidal.policy import available_policies
from tidal.policy.registry import StabilizationConfig


@dataclass(frozen=True)
class Axis:
    """One grid dimension: a dotted scenario key and the values it takes, as parsed and as written."""

    key: str
    values: tuple[Any, ...]
    texts: tuple[str, ...]


def parse_axis(text: str, option: str = "--grid") -> Axis:
    """Parse ``KEY=V1,V2,...`` (each value a YAML scalar or flow collection)."""
    key, sep, rest = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise TidalInputError(option, f"expected KEY=V1,V2,..., got {text!r}")
    if any(not part for part in key.split(".")):
        raise TidalInputError(option, f"{key!r} is not a dotted key such as policy.target")
    texts = tuple(t.strip() for t in split_values(rest))
    if not texts or any(not t for t in texts):
        raise TidalInputError(f"{option} {key}", f"expected a comma-separated list of values, got {rest!r}")
    values = []
    for t in texts:
        try:
            values.append(yaml.safe_load(t))
        except yaml.YAMLError:
            raise TidalInputError(f"{option} {key}", f"cannot parse value {t!r} as YAML") from None
    return Axis(key, tuple(values), texts)


def parse_axes(texts: Sequence[str], option: str = "--grid") -> tuple[Axis, ...]:
    """Parse every ``--grid`` option; a key given twice is an error."""
    axes = tuple(parse_axis(t, option) for t in texts)
    seen: set[str] = set()
    for axis in axes:
        if axis.key in seen:
            raise TidalInputError(f"{option} {axis.key}", "given twice; list all its values in one option")
        seen.add(axis.key)
    return axes


def split_values(text: str) -> list[str]:
    """Split on commas that are outside brackets, braces and quotes."""
    parts: list[str] = []
    depth = 0
    quote: str | None = None
    current: list[str] = []
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def expand(axes: Sequence[Axis]) -> list[dict[str, Any]]:
    """The cross product as override dicts, first axis varying slowest (like nested loops)."""
    keys = [a.key for a in axes]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(a.values for a in axes))]


def label(point: Mapping[str, Any]) -> str:
    """``policy.target=0.5, service.cold_start=30s`` for messages."""
    return ", ".join(f"{k}={_text(v)}" for k, v in point.items())


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


# --------------------------------------------------------------------------- did you mean


def suggest(dotted: str, data: Mapping[str, Any]) -> str:
    """`` (did you mean 'cold_start'?)`` for an unknown dotted key, or ``""`` without a close match."""
    parts = dotted.split(".")
    names = field_names(parts[:-1], data)
    close = difflib.get_close_matches(parts[-1], names, n=1, cutoff=0.6)
    return f" (did you mean {'.'.join([*parts[:-1], close[0]])!r}?)" if close else ""


def field_names(parents: Sequence[str], data: Mapping[str, Any]) -> list[str]:
    """Field names (and aliases) valid below the dotted location ``parents`` of the scenario.

    ``policy`` resolves to the config model of the policy named in ``data``. Best effort: a
    location the walk cannot resolve yields no names (the caller then just omits a suggestion).
    """
    if parents and parents[0] == "policy":
        policy = data.get("policy")
        entry = available_policies().get(policy.get("name")) if isinstance(policy, Mapping) else None
        if len(parents) == 1:
            return ["name", "stabilization", *(_model_names(entry.config_model) if entry else [])]
        if parents[1] == "stabilization":
            types_: list[Any] = [StabilizationConfig]
            rest = parents[2:]
        else:
            types_ = [entry.config_model] if entry else []
            rest = parents[1:]
    else:
        types_ = [Scenario]
        rest = list(parents)
    for part in rest:
        types_ = _step(types_, part)
    names: list[str] = []
    for t in _expand(types_):
        if isinstance(t, type) and issubclass(t, BaseModel):
            names.extend(_model_names(t))
    return names


def _model_names(model: type[BaseModel]) -> list[str]:
    names = []
    for name, info in model.model_fields.items():
        names.append(name)
        if info.alias and info.alias != name:
            names.append(info.alias)
    return names


def _step(annotations: list[Any], part: str) -> list[Any]:
    out: list[Any] = []
    for t in _expand(annotations):
        if isinstance(t, type) and issubclass(t, BaseModel):
            for name, info in t.model_fields.items():
                if part in (name, info.alias):
                    out.append(info.annotation)
        elif typing.get_origin(t) in (dict, Mapping):
            args = typing.get_args(t)
            if len(args) == 2:
                out.append(args[1])  # ``part`` is a key of the mapping: step to its value type
    return out


def _expand(annotations: list[Any]) -> list[Any]:
    """Unwrap Annotated / Optional / unions into their member types."""
    out: list[Any] = []
    stack = list(annotations)
    while stack:
        t = stack.pop()
        origin = typing.get_origin(t)
        if origin is typing.Annotated:
            stack.append(typing.get_args(t)[0])
        elif origin in (typing.Union, types.UnionType):
            stack.extend(typing.get_args(t))
        else:
            out.append(t)
    return out
