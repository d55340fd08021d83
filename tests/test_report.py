"""The comparison report: PNG plots, a self-contained and escaped ``report.html`` (checked in headless
Chromium too), and the all-or-nothing results folder."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from tidal.config import scenario_from_dict
from tidal.core.errors import TidalInputError
from tidal.experiment import resolve_arms, run_comparison, summary_rows
from tidal.experiment.arms import make_arm
from tidal.report import write_comparison
from tidal.report.html import describe_model, key_settings, render_report
from tidal.report.output import MARKER, atomic_folder
from tidal.report.plots import MAX_POINTS, _binned

SCENARIO = {
    "name": "step <demo>",
    "description": 'A <b>"step"</b> & a cold start — <script>alert(1)</script>',
    "seed": 4,
    "duration": "10m",
    "workload": {"kind": "step", "rate": "20/s", "to": "50/s", "at": "4m"},
    "service": {"service_time": {"distribution": "gamma", "mean": "50ms", "cv": 1.5}, "concurrency": 2,
                "cold_start": "20s"},
    "replicas": {"min": 1, "max": 10, "initial": 2},
    "slo": {"latency": "250ms", "target": 0.95},
    "policy": {"name": "target_utilization", "target": 0.5, "stabilization": {"down_window": "2m"}},
}
LABELS = ["target_utilization", "static-4", "tu-0.8"]
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


@pytest.fixture(scope="module")
def comparison():
    scenario = scenario_from_dict(SCENARIO)
    arms = resolve_arms(scenario, ["target_utilization"]) + (
        make_arm("static-4", {"name": "static", "replicas": 4}, "test"),
        make_arm("tu-0.8", {"name": "target_utilization", "target": 0.8}, "test"),
    )
    return run_comparison(scenario, arms, (4, 5), jobs=1)


@pytest.fixture(scope="module")
def report_dir(comparison, tmp_path_factory) -> Path:
    return write_comparison(comparison, tmp_path_factory.mktemp("report") / "cmp")


class _Page(HTMLParser):
    """Collects what the tests look at: images, links, scripts, the summary table's cells, the browser probe."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.external: list[str] = []
        self.tags: set[str] = set()
        self.rows: dict[str, list[tuple[str, bool]]] = {}
        self._row: str | None = None
        self._cell: list[str] | None = None
        self._best = False
        self._in_summary = False
        self.text: list[str] = []
        self.probe: dict[str, str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        if a.get("id") == "probe":
            self.probe = {k.removeprefix("data-"): v or "" for k, v in attrs if k.startswith("data-")}
        if tag == "img":
            self.images.append(a.get("src", ""))
        for key in ("src", "href"):
            value = a.get(key) or ""
            if value and not value.startswith("data:") and not value.startswith("#"):
                self.external.append(value)
        if tag == "table" and "summary" in (a.get("class") or ""):
            self._in_summary = True
        if self._in_summary and tag == "tr" and "data-policy" in a:
            self._row = a["data-policy"]
            self.rows[self._row] = []
        if self._row and tag == "td":
            self._cell, self._best = [], "best" in (a.get("class") or "")

    def handle_endtag(self, tag):
        if tag == "td" and self._row and self._cell is not None:
            self.rows[self._row].append(("".join(self._cell).strip(), self._best))
            self._cell = None
        if tag == "tr":
            self._row = None
        if tag == "table":
            self._in_summary = False

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


# --------------------------------------------------------------------------- files and plots


def test_results_folder_contents(report_dir):
    names = sorted(p.name for p in report_dir.iterdir())
    assert names == sorted(["comparison.json", "cost_slo.png", "latency_cdf.png", "latency_time.png",
                            "load_replicas.png", "report.html", "summary.csv"])
    assert [p.name for p in report_dir.parent.iterdir()] == ["cmp"]


@pytest.mark.parametrize("name", ["load_replicas", "latency_time", "latency_cdf", "cost_slo"])
def test_plots_are_real_pngs(report_dir, name):
    data = (report_dir / f"{name}.png").read_bytes()
    width, height = _png_size(data)
    assert width >= 800 and height >= 400
    assert len(data) > 15_000, "a plot with lines and labels, not an empty canvas"


def test_latency_over_time_plots_the_tables_percentiles(comparison, monkeypatch):
    import tidal.report.plots as plots

    figures = []
    monkeypatch.setattr(plots, "_render", lambda fig, *args: figures.append(fig))
    plots.latency_over_time(comparison)
    axes = figures[0].axes
    assert [ax.get_title(loc="left") for ax in axes] == [f"{p} latency per tick" for p in ("p50", "p95", "p99")]
    units = {ax.get_ylabel().rsplit("(", 1)[1] for ax in axes}
    assert len(units) == 1, "one unit for every panel"
    scale = 1000.0 if units == {"ms)"} else 1.0
    for ax, column in zip(axes, ("latency_p50", "latency_p95", "latency_p99"), strict=True):
        policy_lines = [line for line in ax.get_lines() if line.get_label() in LABELS]
        assert [line.get_label() for line in policy_lines] == LABELS
        for line in policy_lines:
            run = comparison.first(line.get_label())
            np.testing.assert_allclose(line.get_ydata(), run.ticks[column] * scale)
    run = comparison.first(LABELS[0])
    finite = np.isfinite(run.ticks["latency_p50"])
    assert finite.any()
    assert np.all(run.ticks["latency_p50"][finite] <= run.ticks["latency_p95"][finite])
    assert np.all(run.ticks["latency_p95"][finite] <= run.ticks["latency_p99"][finite])


def test_binning_long_series_keeps_shape():
    class Run:
        class summary:  # noqa: N801 - a stand-in for Summary
            duration_s = 86400.0

        ticks = {"time": np.arange(86400.0)}

    values = np.where(np.arange(86400) % 2 == 0, 1.0, 3.0)
    t, y = _binned(Run, values)
    assert len(t) == len(y) <= MAX_POINTS
    assert np.allclose(y, 2.0) and t[-1] < 24.0


# --------------------------------------------------------------------------- HTML


def test_html_is_self_contained_and_escaped(report_dir):
    text = (report_dir / "report.html").read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    assert page.external == [], "no external resources"
    assert "script" not in page.tags and "link" not in page.tags
    assert len(page.images) == 4
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        _png_size(base64.b64decode(src.split(",", 1)[1]))
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "step &lt;demo&gt;" in text
    body = "".join(page.text)
    assert 'A <b>"step"</b> & a cold start' in body, "the description reads as written"


def test_html_summary_table_marks_the_best(report_dir, comparison):
    page = _Page()
    page.feed((report_dir / "report.html").read_text(encoding="utf-8"))
    assert list(page.rows) == LABELS
    rows = summary_rows(comparison)
    from tidal.experiment import METRICS

    for row in rows:
        cells = page.rows[row.label]
        assert cells[0][0] == row.label
        for metric, (text, best) in zip(METRICS, cells[1:], strict=True):
            assert best == row.is_best(metric), (row.label, metric.key)
            assert "±" in text or text == "-"
    assert any(best for cells in page.rows.values() for _, best in cells)


def test_html_shows_scenario_settings_yaml_and_policy_parameters(report_dir):
    text = (report_dir / "report.html").read_text(encoding="utf-8")
    for expected in ("step (rate=20/s, to=50/s, at=4m)", "gamma (mean=50ms, cv=1.5)", "cold start 20s",
                     "95.00% of requests within 250ms", "4–5 (2 replications)"):
        assert expected in text, expected
    assert "service_time:" in text and "load_balancer:" in text, "the scenario YAML"
    assert "down_window: 120.0" in text, "the scenario's own block, validated"
    assert "tolerance: 0.0" in text, "defaults filled in"
    assert "replicas: 4" in text


def test_single_run_report_has_no_intervals(comparison):
    from tidal.experiment.compare import Comparison

    single = Comparison(comparison.scenario, comparison.arms, comparison.seeds[:1],
                        {label: runs[:1] for label, runs in comparison.runs.items()})
    text = render_report(single, summary_rows(single), [])
    assert "±" not in text.split('<table class="summary">')[1].split("</table>")[0]
    assert "One run, seed 4." in text


def test_describe_model_uses_units():
    scenario = scenario_from_dict({**SCENARIO, "workload": {"kind": "bursty", "rates": ["1/s", "600/min"],
                                                            "mean_durations": ["30s", "2m"]}})
    assert describe_model(scenario.workload) == "bursty (rates=[1/s, 10/s], mean_durations=[30s, 2m])"
    assert describe_model(scenario.service.cold_start) == "20s"


# A probe injected into a copy of the report (the report itself has no script): once the page has
# loaded, it writes what the browser actually rendered into the DOM, where --dump-dom shows it.
PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const probe = document.createElement("output");
  probe.id = "probe";
  probe.dataset.images = images.length;
  probe.dataset.rendered = images.filter(img => img.complete && img.naturalWidth > 0).length;
  probe.dataset.widths = images.map(img => img.naturalWidth).join(",");
  probe.dataset.rows = document.querySelectorAll("table.summary tbody tr").length;
  document.body.appendChild(probe);
});
</script>"""


@pytest.fixture
def chromium() -> str:
    """Chromium's path; skipped where it is missing, except on CI (``CI`` set), where it is a failure."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed but CI is set: the report must be checked in a browser "
                        "(`make test` installs it)")
        pytest.skip("chromium is not installed (CI installs it: apt-get install chromium)")
    return CHROMIUM


def _browser(chromium: str, tmp_path: Path) -> list[str]:
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}"]


def _render_probed(chromium: str, html_text: str, tmp_path: Path) -> tuple[dict[str, str], _Page]:
    """Load ``html_text`` with :data:`PROBE` in headless Chromium; the probe's attributes and the DOM."""
    assert html_text.count("</body>") == 1
    page_file = tmp_path / "probed.html"
    page_file.write_text(html_text.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    # The virtual time budget lets the page finish loading (images decoded, load event run) before the dump.
    dom = subprocess.run([*_browser(chromium, tmp_path), "--virtual-time-budget=10000", "--dump-dom",
                          page_file.resolve().as_uri()], capture_output=True, text=True, timeout=90, check=True).stdout
    page = _Page()
    page.feed(dom)
    assert page.probe is not None, "the probe did not run: the page never finished loading"
    return page.probe, page


def test_report_renders_in_headless_chromium(report_dir, tmp_path, chromium):
    text = (report_dir / "report.html").read_text(encoding="utf-8")
    probe, page = _render_probed(chromium, text, tmp_path)
    assert probe["images"] == "4" and probe["rendered"] == "4", "every plot decoded and rendered"
    embedded = [_png_size(base64.b64decode(src.split(",", 1)[1]))[0] for src in _images(text)]
    assert probe["widths"] == ",".join(map(str, embedded)), "each image has its PNG's own width"
    assert probe["rows"] == str(len(LABELS)), "the summary table has one row per policy"
    assert list(page.rows) == LABELS
    assert all(len(cells) == 9 for cells in page.rows.values())
    shot = tmp_path / "shot.png"
    url = (report_dir / "report.html").resolve().as_uri()
    subprocess.run([*_browser(chromium, tmp_path), f"--screenshot={shot}", "--window-size=1280,2000", url],
                   capture_output=True, timeout=90, check=True)
    assert _png_size(shot.read_bytes()) == (1280, 2000)
    assert shot.stat().st_size > 50_000, "the page rendered content, not a blank screen"


def test_browser_check_catches_broken_images(report_dir, tmp_path, chromium):
    # The same page with every image payload made invalid base64: the probe must see no rendered image,
    # or the check above could not fail.
    text = (report_dir / "report.html").read_text(encoding="utf-8")
    broken = re.sub(r"data:image/png;base64,[^\"]+", "data:image/png;base64,!!not*base64!!", text)
    assert broken != text
    probe, _ = _render_probed(chromium, broken, tmp_path)
    assert probe["images"] == "4" and probe["rendered"] == "0"
    assert probe["rows"] == str(len(LABELS))


def _images(html_text: str) -> list[str]:
    page = _Page()
    page.feed(html_text)
    return page.images


# --------------------------------------------------------------------------- all or nothing


def test_failure_while_writing_leaves_nothing(tmp_path):
    out = tmp_path / "new" / "deeper" / "cmp"
    with pytest.raises(KeyboardInterrupt), atomic_folder(out) as tmp:
        (tmp / "summary.csv").write_text("half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == [], "temporary folder and created parents removed"


def test_previous_comparison_replaced_only_on_success(tmp_path):
    out = tmp_path / "cmp"
    with atomic_folder(out) as tmp:
        (tmp / MARKER).write_text("{}")
        (tmp / "summary.csv").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(out) as tmp:
        (tmp / MARKER).write_text("{}")
        (tmp / "summary.csv").write_text("new, half")
        raise RuntimeError("disk full")
    assert (out / "summary.csv").read_text() == "old"
    with atomic_folder(out) as tmp:
        (tmp / MARKER).write_text("{}")
        (tmp / "summary.csv").write_text("new")
    assert (out / "summary.csv").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["cmp"]


def test_refuses_foreign_folder_and_files(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep")
    with pytest.raises(TidalInputError, match="does not hold a previous comparison"), atomic_folder(tmp_path / "mine"):
        pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(TidalInputError, match="not a folder"), atomic_folder(tmp_path / "file"):
        pass
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "keep"


def test_key_settings_give_each_policys_cadence(comparison):
    settings = dict(key_settings(comparison))
    control = next(text for name, text in settings.items() if "sync every" in text)
    assert control == "sync every 15s, scrape every 15s"  # all three arms share the default cadence
    kpa = make_arm("kpa", {"name": "kpa"}, "test")
    mixed = replace(comparison, arms=(*comparison.arms, kpa),
                    runs={**comparison.runs, "kpa": comparison.runs[comparison.arms[0].label]})
    control = next(text for text in dict(key_settings(mixed)).values() if "sync every" in text)
    assert control == ("target_utilization, static-4, tu-0.8: sync every 15s, scrape every 15s; "
                       "kpa: sync every 2s, scrape every 1s")
