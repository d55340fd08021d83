"""Read scenario files: YAML → validated :class:`Scenario`, errors naming the field path."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tidal.config.errors import describe_validation_error
from tidal.config.scenario import Scenario
from tidal.core.errors import TidalInputError

WORKLOAD_KINDS = frozenset({"constant", "step", "ramp", "diurnal", "spike", "bursty", "trace"})


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file, turning I/O and syntax errors into :class:`TidalInputError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TidalInputError(str(path), "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TidalInputError(str(path), f"cannot read: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise TidalInputError(where, f"invalid YAML: {problem}") from None


def load_scenario(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Scenario:
    """Load and validate a scenario file; relative trace paths resolve against its folder."""
    path = Path(path)
    data = load_yaml(path)
    if not isinstance(data, Mapping):
        raise TidalInputError(str(path), "expected a mapping of scenario fields at the top level")
    return scenario_from_dict(data, base_dir=path.parent, source=str(path), overrides=overrides)


def scenario_from_dict(
    data: Mapping[str, Any],
    base_dir: str | Path | None = None,
    source: str = "scenario",
    overrides: Mapping[str, Any] | None = None,
) -> Scenario:
    """Validate a scenario given as a mapping (the parsed YAML)."""
    merged = dict(data)
    for dotted, value in (overrides or {}).items():
        set_dotted(merged, dotted, value)
    try:
        scenario = Scenario.model_validate(merged)
    except ValidationError as exc:
        raise TidalInputError(*describe_validation_error(
            exc, source, union_tags={"workload": WORKLOAD_KINDS},
            tag_hints={"workload": ", ".join(sorted(WORKLOAD_KINDS))})) from None
    workload = scenario.workload
    if getattr(workload, "kind", None) == "trace" and base_dir is not None and not workload.path.is_absolute():
        # Absolute, so the scenario still finds its trace from another folder or process.
        workload = workload.model_copy(update={"path": (Path(base_dir) / workload.path).absolute()})
        scenario = scenario.model_copy(update={"workload": workload})
    return scenario


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data['a']['b'] = value`` for ``dotted='a.b'``, copying nested mappings on the way."""
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        child = node.get(key)
        child = dict(child) if isinstance(child, Mapping) else {}
        node[key] = child
        node = child
    node[keys[-1]] = value
