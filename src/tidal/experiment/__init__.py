"""Experiments over the simulator: compare policies on identical traffic (common random numbers),
replicate with confidence intervals, and summarise the winners. Plots and HTML live in
:mod:`tidal.report`."""

from tidal.experiment.arms import Arm, arms_from_file, resolve_arms
from tidal.experiment.compare import Comparison, RunRecord, default_jobs, run_comparison, seeds_for
from tidal.experiment.stats import Estimate, estimate, t_quantile
from tidal.experiment.summary import METRICS, Metric, SummaryRow, format_estimate, summary_csv, summary_rows

__all__ = [
    "METRICS",
    "Arm",
    "Comparison",
    "Estimate",
    "Metric",
    "RunRecord",
    "SummaryRow",
    "arms_from_file",
    "default_jobs",
    "estimate",
    "format_estimate",
    "resolve_arms",
    "run_comparison",
    "seeds_for",
    "summary_csv",
    "summary_rows",
    "t_quantile",
]
