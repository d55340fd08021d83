"""The controller's dashboard: /metrics in Prometheus text, /api/history JSON, the page in Chromium."""

from __future__ import annotations

import asyncio
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tidal.live import Controller, DashboardServer, FallbackRule
from tidal.live.testing import RecordingActuator, ScriptedSource
from tidal.policy import build_policy

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def make_controller() -> tuple[Controller, ScriptedSource]:
    # A 1 s window at one step per second: each decision sees its own sample. (A zero window is
    # below float resolution at Unix times, so it would see nothing.)
    policy = build_policy({"name": "target_utilization", "target": 0.5, "window": "1s"}, 1, 10)
    source = ScriptedSource({"rps": 30.0, "concurrency": 2.5, "utilization": 0.5, "latency_p50": 0.012,
                             "latency_p95": 0.048, "latency_p99": 0.09, "ready_replicas": 2}, replicas=2)
    controller = Controller(policy, source, RecordingActuator(replicas=2), min_replicas=1, max_replicas=10,
                            sync_period=1.0, fallback=FallbackRule(failure_threshold=5, replicas=None), name="demo")
    return controller, source


async def drive(controller: Controller, source: ScriptedSource) -> None:
    """Ten decisions: steady, a load rise to 6 replicas, one failed scrape."""
    for i in range(10):
        if i == 5:  # 2 replicas at 150 % of a 50 % target: 6
            source.metrics.update(utilization=1.5, rps=90.0, latency_p95=0.2)
        if i == 6:  # 6 replicas at target: stay
            source.metrics.update(utilization=0.5)
        source.replicas = controller.spec or 2
        source.metrics["ready_replicas"] = source.replicas  # the pool follows at once
        source.fail = i == 8
        await controller.step(1_700_000_000.0 + i)


def with_dashboard(body):
    async def go():
        controller, source = make_controller()
        await drive(controller, source)
        async with DashboardServer(controller, "127.0.0.1", 0) as server:
            return await asyncio.wait_for(body(server, controller), 120)

    return asyncio.run(go())


async def fetch(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


def test_metrics_endpoint_parses_as_prometheus_text():
    async def body(server, controller):
        return await fetch(server.url + "metrics")

    status, ctype, text = with_dashboard(body)
    assert status == 200 and ctype.startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert samples[("tidal_controller_decisions_total", (("mode", "policy"),))] == 9
    assert samples[("tidal_controller_decisions_total", (("mode", "hold"),))] == 1
    assert samples[("tidal_controller_decisions_total", (("mode", "fallback"),))] == 0
    assert samples[("tidal_controller_desired_replicas", ())] == 6
    assert samples[("tidal_controller_source_errors_total", ())] == 1
    assert samples[("tidal_controller_actuation_errors_total", ())] == 0
    assert samples[("tidal_controller_decision_seconds_count", ())] == 10
    assert samples[("tidal_controller_decision_seconds_sum", ())] > 0


def test_history_endpoint_serves_the_records():
    async def body(server, controller):
        return [await fetch(server.url + path) for path in ("api/history", "api/history?limit=3", "api/history?limit=x",
                                                             "healthz")]

    (s1, _, full), (s2, _, last3), (s3, _, _), (s4, _, ok) = with_dashboard(body)
    assert (s1, s2, s3, s4, ok) == (200, 200, 400, 200, "ok")
    doc = json.loads(full)
    assert doc["steps"] == 10 and len(doc["points"]) == 10
    assert doc["controller"]["name"] == "demo" and doc["controller"]["max"] == 10
    assert [p["desired"] for p in doc["points"]] == [2] * 5 + [6] * 5
    assert [p["time"] for p in json.loads(last3)["points"]] == [1_700_000_007.0, 1_700_000_008.0, 1_700_000_009.0]


class _Dom(HTMLParser):
    """Text by element id, SVG paths per chart, and the decisions table's rows."""

    def __init__(self) -> None:
        super().__init__()
        self.text: dict[str, str] = {}
        self.paths: dict[str, list[dict[str, str]]] = {}
        self.rows: list[list[str]] = []
        self.scripts: list[dict[str, str]] = []
        self._id: str | None = None
        self._svg: str | None = None
        self._in_decisions = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.scripts.append(a)
        if a.get("id", "").startswith(("v-", "f-", "status")):
            self._id = a["id"]
            self.text[self._id] = ""
        if tag == "svg":
            self._svg = a.get("id")
            self.paths[self._svg] = []
        if tag == "path" and self._svg:
            self.paths[self._svg].append(a)
        if tag == "tbody" and a.get("id") == "decisions":
            self._in_decisions = True
        if self._in_decisions and tag == "tr":
            self.rows.append([])
        if self._in_decisions and tag == "td":
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "svg":
            self._svg = None
        if tag == "tbody":
            self._in_decisions = False
        if tag == "td" and self._cell is not None and self.rows:
            self.rows[-1].append("".join(self._cell))
            self._cell = None
        if tag in ("div", "span", "b"):
            self._id = None

    def handle_data(self, data):
        if self._id:
            self.text[self._id] += data
        if self._cell is not None:
            self._cell.append(data)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs it: apt-get install chromium)")
def test_page_updates_without_reload_in_headless_chromium(tmp_path):
    """The page keeps polling: decisions taken after it loaded reach the DOM without a reload.

    The controller has ten decisions when Chromium opens the page. Once the page's first
    ``/api/history`` has been answered, a background task takes five more (a scale-up from 6 to
    9); the page's next polls are held until those exist, so the DOM Chromium dumps can show them
    only if the page fetched again and redrew. A page that fetched once would show 10 and 6.
    """
    from aiohttp import web

    from tidal.live.dashboard import make_app

    async def go():
        controller, source = make_controller()
        await drive(controller, source)  # ten decisions before the page opens
        first_answered, more_taken = asyncio.Event(), asyncio.Event()
        answered_steps: list[int] = []  # the step count in each /api/history answer

        @web.middleware
        async def watch_history(request, handler):
            if request.path == "/api/history" and answered_steps:
                await more_taken.wait()
            response = await handler(request)
            if request.path == "/api/history":
                answered_steps.append(json.loads(response.body)["steps"])
                first_answered.set()
            return response

        async def keep_stepping():
            await first_answered.wait()  # the page has loaded and rendered the first ten
            for i in range(10, 15):
                if i == 10:  # 6 replicas at 75 % for a 50 % target: 9
                    source.metrics.update(utilization=0.75, rps=135.0, latency_p95=0.15)
                if i == 11:  # 9 at target: stay
                    source.metrics.update(utilization=0.5)
                source.replicas = controller.spec
                source.metrics["ready_replicas"] = source.replicas
                source.fail = False
                await controller.step(1_700_000_000.0 + i)
            more_taken.set()

        app = make_app(controller)
        app.middlewares.append(watch_history)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
        stepper = asyncio.create_task(keep_stepping())
        try:
            status, ctype, html = await fetch(url)
            assert status == 200 and ctype.startswith("text/html")
            # Virtual time runs the page's one-second polling five times over; it stands still
            # while a fetch is pending, so the held second poll cannot run the budget out.
            proc = await asyncio.create_subprocess_exec(
                CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", url,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 90)
            assert proc.returncode == 0, err.decode()[-2000:]
            await asyncio.wait_for(stepper, 10)
            return html, out.decode(), answered_steps
        finally:
            stepper.cancel()
            await runner.cleanup()

    html, dom_text, answered_steps = asyncio.run(asyncio.wait_for(go(), 120))
    static = _Dom()
    static.feed(html)
    assert all("src" not in s for s in static.scripts), "self-contained: no external scripts"
    assert "http://" not in html.replace('"http://www.w3.org/2000/svg"', "") and "https://" not in html

    # The page fetched once on load (ten decisions), then again after the five new ones.
    assert answered_steps[0] == 10 and len(answered_steps) >= 2 and answered_steps[-1] == 15
    dom = _Dom()
    dom.feed(dom_text)
    # Every figure below exists only since the page loaded.
    assert dom.text["v-steps"] == "15"
    assert dom.text["v-desired"] == "9" and dom.text["v-ready"] == "9" and dom.text["v-starting"] == "0"
    assert dom.text["v-rps"] == "135.0" and dom.text["v-concurrency"] == "2.5"
    assert dom.text["v-p50"] == "12.0 ms" and dom.text["v-p95"] == "150.0 ms" and dom.text["v-p99"] == "90.0 ms"
    assert dom.text["v-mode"] == "policy"
    assert dom.text["f-policy"].startswith("target_utilization") and dom.text["f-bounds"] == "1–10"
    assert dom.text["status"].startswith("live")
    # Three SVG charts with one path per series, redrawn over all fifteen points.
    assert set(dom.paths) == {"chart-replicas", "chart-load", "chart-latency"}
    assert [p["data-series"] for p in dom.paths["chart-replicas"]] == ["desired", "current", "ready"]
    assert [p["data-series"] for p in dom.paths["chart-latency"]] == ["p50", "p95", "p99"]
    desired_path = dom.paths["chart-replicas"][0]["d"]
    assert desired_path.startswith("M") and desired_path.count("L") == 14
    # The decisions table, newest first: the new scale-up above the earlier failed scrape and scale-up.
    assert len(dom.rows) == 3
    assert dom.rows[0][1:3] == ["6 → 9", "policy"] and "utilization=0.75" in dom.rows[0][3]
    assert dom.rows[1][1:3] == ["6 → 6", "hold"] and "metrics source failed" in dom.rows[1][3]
    assert dom.rows[2][1:3] == ["2 → 6", "policy"] and "utilization=1.5" in dom.rows[2][3]
    assert "not applied" not in dom.rows[0][1]
