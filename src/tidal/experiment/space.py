"""A policy's search space: which parameters ``tidal tune`` varies, over which ranges.

Derived from the policy's pydantic config model: a numeric field is searched when its name says
what it is — a target utilisation (0.3–0.95), a percentage target (30–95), a tolerance (0–0.3),
a controller gain (0–2), a smoothing factor (0–1), a window, delay or period (0–10 min, whole
seconds; one that starts longer, on a log scale around its start), the ``replicas`` of a static policy (the scenario's bounds) — with the range narrowed
by the field's own constraints (``ge``, ``gt``, ``le``, ``lt``). Fields whose default is ``None``
(meaning "derived from another field" or "off") are left alone unless the block sets them.

A policy's config model may publish its own defaults as a class attribute ``search_space``
(``ClassVar[dict[str, str]]`` of ``--param`` specs, e.g. ``{"target": "0.4:0.9"}``); they replace
the derived ranges.

``--param`` adds or overrides: ``target=0.3:0.95``, ``window=15s:10m``, ``tolerance=0:0.2:0.05``
(step), ``kp=0.01:10:log``, ``metric=utilization,concurrency`` (categorical), ``window=60s``
(fixed: not searched). A dotted name reaches nested keys (``stabilization.down_window``,
``metrics.0.resource.target.averageUtilization``).
"""

from __future__ import annotations

import copy
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from difflib import get_close_matches
from typing import Any, Literal

import annotated_types as at
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from tidal.config.scenario import Scenario
from tidal.core.errors import TidalInputError
from tidal.core.units import parse_duration
from tidal.experiment.grid import split_values
from tidal.policy import available_policies, validate_policy_block
from tidal.policy.registry import PolicyConfig

ParamKind = Literal["float", "int", "categorical"]

#: Default search range of windows, delays and periods (seconds).
WINDOW_RANGE = (0.0, 600.0)
#: A window that starts longer than :data:`WINDOW_RANGE` (the predictive policy remembers a day of
#: forecast errors) is searched on a log scale from start / LONG_WINDOW_SPAN[0] to start ×
#: LONG_WINDOW_SPAN[1] — a day: 1 h to 2 days — so that the range holds the starting value and
#: trial 0 can be the starting block.
LONG_WINDOW_SPAN = (24.0, 2.0)
_WINDOW_NAME = re.compile(r"window|delay|period|stabilization|cooldown|grace|retention|interval|lookback|horizon")
_TARGET_NAME = re.compile(r"(^|_)(target|utilization)(_|$)")
_GAIN_NAME = re.compile(r"^(kp|ki|kd|k_p|k_i|k_d)$|(^|_)gain(_|$)")
_SMOOTHING_NAME = re.compile(r"(^|_)(alpha|beta|smoothing)(_|$)")


@dataclass(frozen=True)
class Param:
    """One searched parameter: a dotted key of the policy block and its distribution."""

    path: str
    kind: ParamKind
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    duration: bool = False
    origin: str = "derived"

    def suggest(self, trial: Any) -> Any:
        """Draw this parameter from an Optuna trial."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.path, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.path, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return self.normalize(trial.suggest_float(self.path, self.low, self.high, step=self.step, log=self.log))

    def normalize(self, value: Any) -> Any:
        """Round a stepped float to its step's decimals (0.7000000000000001 -> 0.7)."""
        if self.kind == "float" and self.step is not None and isinstance(value, float):
            return round(value, _decimals(self.step))
        return value

    def values_to_check(self) -> tuple[Any, ...]:
        """Values validated before tuning: both ends, or every choice."""
        if self.kind == "categorical":
            return self.choices
        cast = int if self.kind == "int" else float
        return (cast(self.low), cast(self.high))

    def midpoint(self) -> Any:
        """A representative value (geometric middle on a log scale)."""
        if self.kind == "categorical":
            return self.choices[0]
        mid = math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2
        if self.step:
            mid = self.low + round((mid - self.low) / self.step) * self.step
        return int(round(mid)) if self.kind == "int" else self.normalize(float(mid))

    def describe(self) -> str:
        """``0.3 – 0.95 step 0.01`` / ``0s – 600s`` / ``utilization | concurrency``."""
        if self.kind == "categorical":
            return " | ".join(str(format_value(c)) for c in self.choices)
        unit = "s" if self.duration else ""
        text = f"{self.low:g}{unit} – {self.high:g}{unit}"
        if self.log:
            text += " log"
        if self.step and not (self.kind == "int" and self.step == 1):
            text += f" step {self.step:g}{unit}"
        return text


@dataclass(frozen=True)
class Fixed:
    """A ``--param NAME=VALUE`` that pins a parameter instead of searching it."""

    path: str
    value: Any


@dataclass(frozen=True)
class Space:
    """The parameters searched and the policy block they are applied to."""

    policy: str
    base: Mapping[str, Any]
    params: tuple[Param, ...]
    pinned: tuple[str, ...] = ()

    def block(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The policy block with ``values`` (by dotted path) applied to the base."""
        return apply_values(self.base, values)

    def fixed_block(self) -> dict[str, Any]:
        """The base without the searched keys: what stays the same in every trial."""
        block = copy.deepcopy(dict(self.base))
        for param in self.params:
            _delete_path(block, param.path)
        return block


# --------------------------------------------------------------------------- --param


def parse_param(text: str) -> Param | Fixed:
    """Parse one ``--param`` option (see the module docstring for the forms)."""
    path, sep, rest = text.partition("=")
    path, rest = path.strip(), rest.strip()
    where = f"--param {path}" if path else "--param"
    if not sep or not path or not rest:
        raise TidalInputError(where, f"expected NAME=LOW:HIGH, NAME=A,B,... or NAME=VALUE, got {text!r}")
    if ":" in rest and not rest.startswith(("{", "[", '"', "'")):
        return _parse_range(path, rest, where)
    items = [t.strip() for t in split_values(rest)]
    values = [_yaml(t, where) for t in items]
    if len(values) == 1:
        return Fixed(path, values[0])
    for value in values:
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise TidalInputError(where, f"choices must be scalars, got {value!r}")
    if len(set(map(repr, values))) != len(values):
        raise TidalInputError(where, "a choice is listed twice")
    return Param(path, "categorical", choices=tuple(values), origin="--param")


def _parse_range(path: str, text: str, where: str) -> Param:
    parts = [p.strip() for p in text.split(":")]
    if len(parts) not in (2, 3) or not all(parts):
        raise TidalInputError(where, f"expected LOW:HIGH, LOW:HIGH:STEP or LOW:HIGH:log, got {text!r}")
    log = len(parts) == 3 and parts[2].lower() == "log"
    step_text = parts[2] if len(parts) == 3 and not log else None
    raw = [_plain_number(_yaml(p, where)) for p in (parts[0], parts[1], step_text)]
    numbers = [v for v in raw if v is not None]
    is_duration = any(isinstance(v, str) for v in numbers)
    try:
        low, high, step = (None if v is None else (parse_duration(v) if is_duration else _number(v)) for v in raw)
    except ValueError as exc:
        raise TidalInputError(where, str(exc)) from None
    assert low is not None and high is not None
    if not low < high:
        raise TidalInputError(where, f"LOW must be below HIGH, got {text!r}")
    if step is not None and step <= 0:
        raise TidalInputError(where, f"STEP must be > 0, got {step_text!r}")
    if log and low <= 0:
        raise TidalInputError(where, f"a log range needs LOW > 0, got {parts[0]!r}")
    integral = all(float(v).is_integer() for v in (low, high, step if step is not None else 1))
    whole = all(isinstance(v, int) for v in numbers) or (is_duration and integral)
    kind: ParamKind = "int" if whole else "float"
    return Param(path, kind, float(low), float(high), step, log, duration=is_duration, origin="--param")


def _yaml(text: str | None, where: str) -> Any:
    if text is None:
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise TidalInputError(where, f"cannot parse {text!r}") from None


def _plain_number(value: Any) -> Any:
    """YAML reads ``1e-3`` as a string; make it the number it is (durations stay strings)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _number(value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number or a duration such as 90s, got {value!r}")
    return value


# --------------------------------------------------------------------------- derivation


@dataclass(frozen=True)
class _Shape:
    """What a config field accepts, as far as ranges go."""

    number: type | None
    duration: bool
    ge: float | None
    gt: float | None
    le: float | None
    lt: float | None


def field_shape(info: FieldInfo) -> _Shape:
    """Numeric type, duration-ness and bound constraints of a pydantic field."""
    metadata: list[Any] = list(info.metadata)
    members: list[Any] = []
    stack = [info.annotation]
    while stack:
        t = stack.pop()
        origin = typing.get_origin(t)
        if origin is typing.Annotated:
            inner, *extra = typing.get_args(t)
            stack.append(inner)
            for item in extra:
                metadata.extend(item.metadata if isinstance(item, FieldInfo) else [item])
        elif origin in (typing.Union, types.UnionType):
            stack.extend(a for a in typing.get_args(t) if a is not type(None))
        else:
            members.append(t)
    number = members[0] if len(members) == 1 and members[0] in (int, float) else None
    bounds: dict[str, float | None] = {"ge": None, "gt": None, "le": None, "lt": None}
    duration = False
    for item in metadata:
        for name, kind in (("ge", at.Ge), ("gt", at.Gt), ("le", at.Le), ("lt", at.Lt)):
            if isinstance(item, kind):
                bounds[name] = float(getattr(item, name))
        if getattr(getattr(item, "func", None), "__name__", "") == "parse_duration":
            duration = True
    return _Shape(number, duration, **bounds)


def derive_params(model: type[BaseModel], base: Mapping[str, Any], scenario: Scenario) -> list[Param]:
    """The default search space of ``model`` (see the module docstring for the rules)."""
    params = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        shape = field_shape(info)
        if shape.number is None:
            continue
        start = base.get(key, base.get(name, None if info.is_required() else info.default))
        if start is PydanticUndefined:
            start = None
        if start is None and not (name == "replicas" and shape.number is int):
            continue  # None means "derived" or "off": searching it would change the mode
        rule = _default_range(name, shape, start, scenario)
        if rule is None:
            continue
        param = _clip(key, shape, *rule)
        if param is not None:
            params.append(param)
    return params


_Range = tuple[float, float, float | None, bool]


def _default_range(name: str, shape: _Shape, start: Any, scenario: Scenario) -> _Range | None:
    """(low, high, step, log) by parameter name, before the field's constraints narrow it."""
    if shape.duration:
        if not _WINDOW_NAME.search(name):
            return None
        seconds = _duration_s(start)
        if seconds is not None and seconds > WINDOW_RANGE[1]:
            return seconds / LONG_WINDOW_SPAN[0], seconds * LONG_WINDOW_SPAN[1], 1.0, True
        return (*WINDOW_RANGE, 1.0, False)
    if name == "replicas" and shape.number is int:
        return float(max(1, scenario.replicas.min)), float(scenario.replicas.max), 1.0, False
    if name.endswith("percentage"):
        if _TARGET_NAME.search(name):
            return 30.0, 95.0, 1.0, False
        if shape.le is not None and (shape.ge is not None or shape.gt is not None):
            return float(shape.ge if shape.ge is not None else shape.gt), shape.le, 1.0, False
        return None
    if _TARGET_NAME.search(name):
        if (shape.le is not None and shape.le <= 1) or (isinstance(start, (int, float)) and 0 < start <= 1):
            return 0.3, 0.95, 0.01, False
        if isinstance(start, (int, float)) and start > 0:
            # A target in the metric's own unit (requests per replica, percent): search around it.
            return start / 4, start * 4, None, True
        return None
    if "tolerance" in name:
        return 0.0, 0.3, 0.01, False
    if _GAIN_NAME.search(name):
        return 0.0, 2.0, 0.01, False
    if _SMOOTHING_NAME.search(name):
        return 0.0, 1.0, 0.01, False
    return None


def _duration_s(value: Any) -> float | None:
    """A starting duration in seconds (``86400.0``, ``"24h"``), or ``None`` if it is not one."""
    try:
        return parse_duration(value)
    except (TypeError, ValueError):
        return None  # the policy's own validation reports a bad value


def _clip(key: str, shape: _Shape, low: float, high: float, step: float | None, log: bool) -> Param | None:
    """Narrow a default range to the field's constraints; ``None`` if nothing is left."""
    is_int = shape.number is int or (shape.duration and step is not None and float(step).is_integer())
    tiny = step or (1.0 if is_int else max(abs(low), 1.0) * 1e-6)
    if shape.ge is not None:
        low = max(low, shape.ge)
    if shape.gt is not None and low <= shape.gt:
        low = shape.gt + tiny
    if shape.le is not None:
        high = min(high, shape.le)
    if shape.lt is not None and high >= shape.lt:
        high = shape.lt - tiny
    if is_int:
        low, high = float(math.ceil(low - 1e-9)), float(math.floor(high + 1e-9))
    if step:
        # Optuna wants (high - low) to be a whole number of steps.
        high = round(low + math.floor((high - low) / step + 1e-9) * step, 10)
        low = round(low, 10)
    if not low < high or (log and low <= 0):
        return None
    return Param(key, "int" if is_int else "float", low, high, step, log, duration=shape.duration)


# --------------------------------------------------------------------------- the whole space


def build_space(
    policy: str,
    base: Mapping[str, Any],
    scenario: Scenario,
    options: Sequence[str] = (),
    only_params: bool = False,
) -> Space:
    """Derive the space of ``policy``, apply ``--param`` options, and check every range.

    ``base`` is the policy block trials start from (the scenario's, for the same policy). Raises
    :class:`TidalInputError` naming the option or field for an unknown parameter, a range the
    policy rejects, or an empty space.
    """
    entry = available_policies().get(policy)
    if entry is None:
        raise TidalInputError("--policy", f"unknown policy {policy!r}; choose one of {', '.join(available_policies())}")
    base = {**dict(base), "name": policy}
    derived = [] if only_params else derive_params(entry.config_model, base, scenario)
    params = {p.path: p for p in derived}
    pinned: list[str] = []
    if not only_params:
        # A policy may publish better defaults (e.g. a target nested in a list) as --param specs.
        for path, spec in (getattr(entry.config_model, "search_space", None) or {}).items():
            hinted = _resolve_kind(parse_param(f"{path}={spec}"), entry.config_model)
            if isinstance(hinted, Param):
                params[path] = replace(hinted, origin="policy")
    for option in options:
        parsed = parse_param(option)
        parsed = _resolve_kind(parsed, entry.config_model)
        if isinstance(parsed, Fixed):
            params.pop(parsed.path, None)
            pinned.append(parsed.path)
            base = apply_values(base, {parsed.path: parsed.value}, where=f"--param {parsed.path}")
        else:
            params[parsed.path] = parsed
    if "name" in params:
        raise TidalInputError("--param name", "the policy is chosen with --policy")
    space = Space(policy, base, tuple(params.values()), tuple(pinned))
    if not space.params:
        raise TidalInputError(
            "--param",
            f"nothing to tune: no parameter of policy {policy!r} has a known range; add --param NAME=LOW:HIGH",
        )
    check_space(space, entry.config_model)
    return space


def _resolve_kind(parsed: Param | Fixed, model: type[PolicyConfig]) -> Param | Fixed:
    """Fit a ``--param`` range to its field: a duration is written back as ``90s``, a float field
    gets a float range even from ``1:10``, an int field refuses a fractional one."""
    if isinstance(parsed, Fixed) or parsed.kind == "categorical":
        return parsed
    head = parsed.path.split(".")[0]
    shape = None
    if head == "stabilization":
        shape = _Shape(float, True, 0.0, None, None, None)
    for name, info in model.model_fields.items():
        if head == name or (info.alias and head == info.alias):
            shape = field_shape(info) if "." not in parsed.path else None
    if shape is None or shape.number is None:
        return parsed
    if shape.duration:
        integral = all(float(v).is_integer() for v in (parsed.low, parsed.high, parsed.step or 1))
        return replace(parsed, duration=True, kind="int" if integral else "float")
    if parsed.duration:
        raise TidalInputError(f"--param {parsed.path}", "is not a duration; give plain numbers")
    if shape.number is float:
        return replace(parsed, kind="float")
    if parsed.kind == "float":
        raise TidalInputError(f"--param {parsed.path}", "expects whole numbers, e.g. 1:10")
    return parsed


def check_space(space: Space, model: type[PolicyConfig]) -> None:
    """Validate the block at every parameter's ends (others at their midpoints).

    Errors of one field name the ``--param`` (or derived range) responsible; errors of a rule
    across fields are left to the trials, which skip the combinations it rejects.
    """
    middle = {p.path: p.midpoint() for p in space.params}
    reference = space.block(middle)
    _validate(reference, space, model, None, None)
    for param in space.params:
        for value in param.values_to_check():
            _validate(apply_values(reference, {param.path: value}), space, model, param, value)


def _validate(
    block: Mapping[str, Any], space: Space, model: type[PolicyConfig], param: Param | None, value: Any,
) -> None:
    try:
        validate_policy_block(block)
    except TidalInputError as exc:
        if exc.where == "policy":
            # A rule across fields (low < high): some combinations are invalid, not the space.
            # Trials that draw one are skipped as failed.
            return
        path = exc.where.removeprefix("policy.")
        culprit = param or next((p for p in space.params if p.path == path or path.startswith(p.path + ".")), None)
        if exc.problem == "unknown key" and (culprit is not None or path in space.pinned):
            names = [n for name, info in model.model_fields.items() for n in {name, info.alias or name}]
            close = get_close_matches(path.split(".")[-1], names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TidalInputError(f"--param {path}", f"no such parameter in policy {space.policy!r}{hint}") from None
        if exc.problem == "required field missing":
            raise TidalInputError(
                exc.where,
                f"required by policy {space.policy!r}: set it in the policy block or add --param {path}=LOW:HIGH",
            ) from None
        if culprit is None:
            raise  # the starting block itself (e.g. the scenario's policy block) is wrong
        shown = f"range {culprit.describe()}: " if value is None else f"{format_value(value, culprit.duration)}: "
        if culprit.origin == "--param":
            where = f"--param {culprit.path}"
        else:
            where = f"policy.{culprit.path} ({culprit.origin} range)"
        raise TidalInputError(where, f"{shown}{exc.where}: {exc.problem}") from None


def start_values(space: Space) -> dict[str, Any]:
    """Where the base block puts each searched parameter, as the policy reads it (``"30s"`` ->
    ``30.0``); parameters the block leaves to the policy's defaults get those. Empty when the base
    block alone is invalid (e.g. a required parameter only the space provides)."""
    try:
        _, config, stabilization = validate_policy_block(space.base)
    except TidalInputError:
        return {}
    fields = type(config).model_fields
    values: dict[str, Any] = {}
    for param in space.params:
        head, _, rest = param.path.partition(".")
        name = next((n for n, info in fields.items() if head in (n, info.alias)), None)
        if not rest and name is not None:
            values[param.path] = getattr(config, name)
        elif head == "stabilization" and stabilization is not None and "." not in rest:
            values[param.path] = getattr(stabilization, rest, None)
    return values


# --------------------------------------------------------------------------- blocks


def apply_values(block: Mapping[str, Any], values: Mapping[str, Any], where: str = "--param") -> dict[str, Any]:
    """A deep copy of ``block`` with each dotted path set (``metrics.0.resource...`` indexes lists)."""
    out = copy.deepcopy(dict(block))
    for dotted, value in values.items():
        node: Any = out
        parts = dotted.split(".")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise TidalInputError(f"{where}", f"{'.'.join(parts[:i + 1])}: no list item {part!r}")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    child = node.get(part)
                    if not isinstance(child, (dict, list)):
                        child = node[part] = {}
                    node = child
            else:
                raise TidalInputError(where, f"{'.'.join(parts[:i])} is not a mapping or a list")
    return out


def _delete_path(block: dict[str, Any], dotted: str) -> None:
    node: Any = block
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) and part.isdigit() and int(part) < len(node) else (
            node.get(part) if isinstance(node, dict) else None)
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(parts[-1], None)


def format_value(value: Any, duration: bool = False) -> Any:
    """A value as written in YAML: durations as ``90s``, floats round-trip, others as they are."""
    if duration and isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
        return f"{int(seconds)}s" if seconds.is_integer() else f"{seconds!r}s"
    return value


def params_table(params: Iterable[Param]) -> list[tuple[str, str, str]]:
    """(name, range, origin) rows for display."""
    return [(p.path, p.describe(), p.origin) for p in params]


def _decimals(step: float) -> int:
    exponent = Decimal(repr(step)).normalize().as_tuple().exponent
    return max(0, -int(exponent))
