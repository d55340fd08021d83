"""Regenerate the README's results table and figure from the demo scenario.

Run: ``.venv/bin/python docs/figures.py``.
Prints a Markdown table and writes ``docs/img/demo_replicas.png``.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import tidal.policy  # noqa: E402,F401  (registers the built-in policies)
from tidal.config import load_scenario  # noqa: E402
from tidal.sim import simulate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "examples" / "azure_llm_conv.yaml"

POLICIES = {
    "static (peak-sized)": {"name": "static", "replicas": 45},
    "target utilization 0.6": {"name": "target_utilization", "target": 0.6, "stabilization": {"down_window": "5m"}},
    "target utilization 0.8": {"name": "target_utilization", "target": 0.8, "stabilization": {"down_window": "5m"}},
}


def main() -> None:
    results = {}
    for label, block in POLICIES.items():
        scenario = load_scenario(SCENARIO, overrides={"policy": block})
        results[label] = simulate(scenario)
    print("| policy | p50 | p99 | SLO attainment (≤ 20 s) | drops | replica-hours | cost |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, result in results.items():
        s = result.summary
        print(f"| {label} | {s.latency_p50:.2f} s | {s.latency_p99:.2f} s | {s.slo_attainment:.2%} | "
              f"{s.drops:,} | {s.replica_hours:.1f} | {s.cost:.2f} |")

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True, height_ratios=(1, 1.4))
    first = next(iter(results.values()))
    t = np.asarray(first.ticks.column("time")) / 60.0
    tick = t[1] - t[0] if len(t) > 1 else 0.25
    rate = np.asarray(first.ticks.column("arrivals")) / (tick * 60.0)
    top.plot(t, rate, color="#555555", linewidth=1)
    top.set_ylabel("arrivals / s")
    top.set_title("Azure LLM inference trace (conversation, 10x), 60 s model cold start")
    for label, result in results.items():
        bottom.step(t, np.asarray(result.ticks.column("ready")), where="post", label=label, linewidth=1.4)
    bottom.set_ylabel("ready replicas")
    bottom.set_xlabel("minutes")
    bottom.legend(loc="upper left", fontsize=8, frameon=False)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    out = ROOT / "docs" / "img" / "demo_replicas.png"
    fig.savefig(out, dpi=120)
    print(f"\nwrote {out.relative_to(ROOT)}")
    assert not math.isnan(first.summary.latency_p50)


if __name__ == "__main__":
    main()
