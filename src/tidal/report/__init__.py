"""Reports of experiments: PNG plots (matplotlib, Agg) and a self-contained HTML page.

:func:`write_comparison` writes a comparison's whole results folder atomically::

    summary.csv        one row per policy, best values listed in the ``best`` column
    comparison.json    arms, seeds and every run's full summary (machine-readable)
    report.html        self-contained page: scenario, summary table, plots, policy parameters
    *.png              the plots, also embedded in report.html
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tidal.experiment.compare import Comparison
from tidal.experiment.summary import SummaryRow, summary_csv, summary_rows
from tidal.report.output import MARKER, atomic_folder, check_output_folder

__all__ = ["check_output_folder", "comparison_json", "write_comparison"]


def write_comparison(comparison: Comparison, out: str | Path, rows: Sequence[SummaryRow] | None = None) -> Path:
    """Render every output in memory, then write the folder ``out`` at once; return its path."""
    from tidal.report.html import render_report
    from tidal.report.plots import all_plots

    rows = list(rows) if rows is not None else summary_rows(comparison)
    plots = all_plots(comparison, rows)
    files: dict[str, bytes] = {
        "summary.csv": summary_csv(rows, comparison.replications > 1).encode(),
        MARKER: json.dumps(comparison_json(comparison), indent=2, allow_nan=False).encode(),
        "report.html": render_report(comparison, rows, plots).encode(),
    }
    files.update({f"{plot.name}.png": plot.png for plot in plots})
    out = Path(out)
    with atomic_folder(out) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
    return out


def comparison_json(comparison: Comparison) -> dict[str, Any]:
    """Arms, seeds and each run's summary as a JSON-safe document (NaN as null)."""
    return {
        "scenario": comparison.scenario.model_dump(mode="json"),
        "seeds": list(comparison.seeds),
        "arms": [{"label": arm.label, "policy": dict(arm.params)} for arm in comparison.arms],
        "runs": [
            {"label": arm.label, "seed": record.seed, "summary": record.summary.to_dict()}
            for arm in comparison.arms
            for record in comparison.runs[arm.label]
        ],
    }
