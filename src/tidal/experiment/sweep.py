"""Grid sweeps: run every combination of scenario overrides and collect one results table.

:func:`plan_sweep` expands the grid and validates every point — unknown keys (``policy.targt``,
``service.cold_strat``) and bad values — before anything runs. :func:`run_sweep` runs the
points on any :mod:`backend <tidal.experiment.backends>` (in-process, process pool, Dask, Ray);
the table is the same whichever runs it, in grid order. :func:`write_csv` saves it atomically.
"""

from __future__ import annotations

import csv
import io
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tidal.config.loader import set_dotted
from tidal.config.scenario import Scenario
from tidal.core.errors import TidalInputError
from tidal.experiment.backends import Backend, imap_unordered
from tidal.experiment.compare import portable_scenario
from tidal.experiment.grid import Axis, expand, label, suggest
from tidal.experiment.variant import (
    FIGURES,
    Failure,
    Variant,
    is_missing,
    policy_modules,
    run_variant,
)

#: ``progress(done, total)`` after each finished point.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SweepPlan:
    """The validated grid: one :class:`Variant` per point, in cross-product order."""

    axes: tuple[Axis, ...]
    points: tuple[Mapping[str, Any], ...] = field(repr=False)
    variants: tuple[Variant, ...] = field(repr=False)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(a.key for a in self.axes)

    def __len__(self) -> int:
        return len(self.variants)


@dataclass(frozen=True)
class SweepTable:
    """Results: per row the grid values (as parsed) then the :data:`FIGURES` of that run."""

    keys: tuple[str, ...]
    figures: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.keys + self.figures

    def records(self) -> list[dict[str, Any]]:
        """Rows as ``{column: value}`` dicts."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def to_csv(self) -> str:
        """CSV text: grid values as written in YAML, figures at full precision, missing empty."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow([csv_cell(v) for v in row])
        return buffer.getvalue()


def plan_sweep(scenario: Scenario, axes: Sequence[Axis], source: str = "scenario") -> SweepPlan:
    """Expand ``axes`` over ``scenario`` and validate every point (raises :class:`TidalInputError`).

    The error names the grid key (``--grid policy.targt: no such field in policy
    'target_utilization' (did you mean 'policy.target'?)``) or, for a bad value, the point.
    """
    if not axes:
        raise TidalInputError("--grid", "give at least one KEY=V1,V2,... axis")
    data = portable_scenario(scenario)
    points = expand(axes)
    variants = []
    for point in points:
        variant = Variant(data, point, source)
        try:
            built = variant.scenario()
        except TidalInputError as exc:
            raise _point_error(exc, point, data, source) from None
        variants.append(Variant(data, point, source, policy_modules(built.policy["name"])))
    return SweepPlan(tuple(axes), tuple(points), tuple(variants))


def run_sweep(plan: SweepPlan, backend: Backend, progress: Progress | None = None) -> SweepTable:
    """Run every point of ``plan`` on ``backend``; rows come back in grid order.

    An input error in any run (e.g. a trace that cannot be read) stops the sweep and is raised
    naming the point. The caller owns ``backend`` (see :func:`tidal.experiment.backends.session`).
    """
    results: list[Mapping[str, Any] | None] = [None] * len(plan)
    done = 0
    with closing(imap_unordered(backend, run_variant, plan.variants)) as runs:
        for index, outcome in runs:
            if isinstance(outcome, Failure):
                raise TidalInputError(f"--grid {label(plan.points[index])}", str(outcome.error())) from None
            results[index] = outcome
            done += 1
            if progress is not None:
                progress(done, len(plan))
    rows = []
    for point, figures in zip(plan.points, results, strict=True):
        assert figures is not None
        rows.append(tuple(point[k] for k in plan.keys) + tuple(figures[f] for f in FIGURES))
    return SweepTable(plan.keys, FIGURES, tuple(rows))


def write_csv(table: SweepTable, path: str | Path) -> Path:
    """Write ``table`` to ``path`` through a temporary file and a rename (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, table.to_csv())
    return path


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def csv_cell(value: Any) -> str:
    """One CSV cell: empty for missing, ``true``/``false``, floats round-trip, collections as YAML."""
    if is_missing(value):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, (Mapping, list, tuple)):
        return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return str(value)


def _point_error(
    exc: TidalInputError, point: Mapping[str, Any], data: Mapping[str, Any], source: str,
) -> TidalInputError:
    """Name the grid key for an unknown field, else the whole point."""
    path = exc.where.removeprefix(f"{source}: ")
    key = next((k for k in point if k == path or k.startswith(path + ".")), None)
    if exc.problem != "unknown key" or key is None:
        return TidalInputError(f"--grid {label(point)}", str(exc))
    merged = dict(data)
    for k, value in point.items():
        set_dotted(merged, k, value)
    policy = merged.get("policy")
    if path.startswith("policy.") and isinstance(policy, Mapping):
        where = f"policy {policy.get('name')!r}"
    else:
        where = "the scenario"
    field_ = "" if key == path else f" {path!r}"
    return TidalInputError(f"--grid {key}", f"no such field{field_} in {where}{suggest(path, merged)}")
