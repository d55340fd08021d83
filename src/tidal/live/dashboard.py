"""The controller's live page and endpoints, served by aiohttp on the dashboard port.

* ``GET /`` — a self-contained page (inline CSS, JavaScript and SVG; no external scripts) that
  polls ``/api/history`` every second and redraws replicas, load, latency and decisions;
* ``GET /api/history?limit=N`` — the controller's facts and its last ``N`` step records (JSON);
* ``GET /metrics`` — the controller's Prometheus metrics;
* ``GET /healthz`` — ``ok`` while the process runs.

With ``page=False`` only ``/metrics`` and ``/healthz`` are served: the controller's
``metrics_server`` (Prometheus scraping without the dashboard).
"""

from __future__ import annotations

import itertools
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tidal.live.metrics import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from tidal.live.controller import Controller

log = logging.getLogger(__name__)

CONTROLLER_KEY = web.AppKey("controller", object)

#: Records sent per poll unless the page asks for another number.
DEFAULT_LIMIT = 600


def make_app(controller: Controller, *, page: bool = True) -> web.Application:
    """The aiohttp application for one controller (``page=False``: ``/metrics`` and ``/healthz`` only)."""
    app = web.Application()
    app[CONTROLLER_KEY] = controller
    if page:
        app.router.add_get("/", _page)
        app.router.add_get("/api/history", _history)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    return app


def history_document(controller: Controller, limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    """The JSON the page polls: controller facts, and the last ``limit`` step records."""
    records = controller.records
    start = max(0, len(records) - limit)
    points = [r.as_dict() for r in itertools.islice(records, start, None)]
    return {"controller": controller.describe(), "steps": len(records), "points": points}


async def _page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store"})


async def _history(request: web.Request) -> web.Response:
    try:
        limit = int(request.query.get("limit", DEFAULT_LIMIT))
    except ValueError:
        raise web.HTTPBadRequest(text="limit must be an integer") from None
    limit = max(1, min(limit, 100_000))
    doc = history_document(request.app[CONTROLLER_KEY], limit)  # type: ignore[arg-type]
    return web.json_response(doc, headers={"Cache-Control": "no-store"})


async def _metrics(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER_KEY]
    body = controller.metrics.render()  # type: ignore[attr-defined]
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


class DashboardServer:
    """Runs :func:`make_app` on ``host:port`` (port 0 picks a free one; see :attr:`port`)."""

    def __init__(self, controller: Controller, host: str = "127.0.0.1", port: int = 0, *, page: bool = True) -> None:
        self.controller = controller
        self.host = host
        self._port = port
        self.page = page
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(make_app(self.controller, page=self.page), access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, self._port)
        await self._site.start()
        log.info("dashboard on %s" if self.page else "controller metrics on %smetrics", self.url)

    @property
    def port(self) -> int:
        if self._site is None or self._site._server is None:  # noqa: SLF001 — aiohttp keeps the socket here
            return self._port
        sockets = getattr(self._site._server, "sockets", None) or []  # noqa: SLF001
        return int(sockets[0].getsockname()[1]) if sockets else self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    async def __aenter__(self) -> DashboardServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tidal controller</title>
<style>
  :root { --fg:#1d2330; --muted:#6b7385; --line:#e3e6ec; --bg:#f7f8fa; --card:#fff;
          --c1:#2563eb; --c2:#16a34a; --c3:#f59e0b; --c4:#dc2626; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color:var(--fg); background:var(--bg); }
  header { display:flex; flex-wrap:wrap; gap:8px 24px; align-items:baseline; padding:14px 20px;
           background:var(--card); border-bottom:1px solid var(--line); }
  header h1 { font-size:18px; margin:0; }
  header .fact { color:var(--muted); }
  header .fact b { color:var(--fg); font-weight:600; }
  #status { margin-left:auto; font-weight:600; }
  #status.live { color:var(--c2); } #status.down { color:var(--c4); }
  main { padding:16px 20px; display:grid; gap:16px; }
  .tiles { display:grid; grid-template-columns:repeat(auto-fill, minmax(140px, 1fr)); gap:10px; }
  .tile { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:10px 12px; }
  .tile .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
  .tile .v { font-size:22px; font-weight:650; font-variant-numeric:tabular-nums; white-space:nowrap; }
  .charts { display:grid; grid-template-columns:repeat(auto-fit, minmax(380px, 1fr)); gap:16px; }
  .card { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:12px 14px; }
  .card h2 { font-size:14px; margin:0 0 6px; }
  svg { width:100%; height:auto; display:block; }
  svg .grid { stroke:var(--line); stroke-width:1; }
  svg .axis { fill:var(--muted); font-size:10px; }
  svg path.series { fill:none; stroke-width:2; stroke-linejoin:round; }
  .legend { display:flex; gap:14px; flex-wrap:wrap; font-size:12px; color:var(--muted); }
  .legend i { display:inline-block; width:10px; height:3px; margin-right:5px; vertical-align:middle; }
  table { width:100%; border-collapse:collapse; font-variant-numeric:tabular-nums; }
  th, td { text-align:left; padding:5px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
  th { color:var(--muted); font-weight:600; font-size:12px; }
  td.reason { color:var(--muted); word-break:break-word; }
  .mode-hold { color:var(--c3); font-weight:600; } .mode-fallback { color:var(--c4); font-weight:600; }
</style>
</head>
<body>
<header>
  <h1 id="title">tidal controller</h1>
  <span class="fact">policy <b id="f-policy">-</b></span>
  <span class="fact">bounds <b id="f-bounds">-</b></span>
  <span class="fact">sync <b id="f-sync">-</b></span>
  <span class="fact">source <b id="f-source">-</b></span>
  <span class="fact">actuator <b id="f-actuator">-</b></span>
  <span class="fact" id="f-dry"></span>
  <span id="status">connecting…</span>
</header>
<main>
  <section class="tiles">
    <div class="tile"><div class="k">desired</div><div class="v" id="v-desired">-</div></div>
    <div class="tile"><div class="k">ready</div><div class="v" id="v-ready">-</div></div>
    <div class="tile"><div class="k">starting</div><div class="v" id="v-starting">-</div></div>
    <div class="tile"><div class="k">draining</div><div class="v" id="v-draining">-</div></div>
    <div class="tile"><div class="k">requests/s</div><div class="v" id="v-rps">-</div></div>
    <div class="tile"><div class="k">in flight</div><div class="v" id="v-concurrency">-</div></div>
    <div class="tile"><div class="k">p50 latency</div><div class="v" id="v-p50">-</div></div>
    <div class="tile"><div class="k">p95 latency</div><div class="v" id="v-p95">-</div></div>
    <div class="tile"><div class="k">p99 latency</div><div class="v" id="v-p99">-</div></div>
    <div class="tile"><div class="k">mode</div><div class="v" id="v-mode">-</div></div>
    <div class="tile"><div class="k">source failures</div><div class="v" id="v-failures">-</div></div>
    <div class="tile"><div class="k">decisions</div><div class="v" id="v-steps">-</div></div>
  </section>
  <section class="charts">
    <div class="card"><h2>Replicas</h2><svg id="chart-replicas" viewBox="0 0 600 180" role="img" aria-label="replicas over time"></svg><div class="legend" id="legend-replicas"></div></div>
    <div class="card"><h2>Load</h2><svg id="chart-load" viewBox="0 0 600 180" role="img" aria-label="load over time"></svg><div class="legend" id="legend-load"></div></div>
    <div class="card"><h2>Latency</h2><svg id="chart-latency" viewBox="0 0 600 180" role="img" aria-label="latency over time"></svg><div class="legend" id="legend-latency"></div></div>
  </section>
  <section class="card">
    <h2>Decisions</h2>
    <table><thead><tr><th>time</th><th>replicas</th><th>mode</th><th>reason</th></tr></thead>
    <tbody id="decisions"><tr><td colspan="4">waiting for the first decision…</td></tr></tbody></table>
  </section>
</main>
<script>
"use strict";
const SVGNS = "http://www.w3.org/2000/svg";
const W = 600, H = 180, L = 52, R = 8, T = 8, B = 22;
const COLORS = ["#2563eb", "#16a34a", "#f59e0b", "#dc2626"];

function text(id, value) { const el = document.getElementById(id); if (el) el.textContent = value; }
function num(v, digits) {
  if (v === null || v === undefined || !isFinite(v)) return "-";
  const a = Math.abs(v);
  return a >= 1000 ? v.toFixed(0) : a >= 100 ? v.toFixed(digits === undefined ? 0 : Math.min(digits, 1)) : v.toFixed(digits === undefined ? 2 : digits);
}
function ms(v) { return (v === null || v === undefined || !isFinite(v)) ? "-" : (v < 1 ? (v * 1000).toFixed(1) + " ms" : v.toFixed(2) + " s"); }
function msAxis(v) { return v === 0 ? "0" : v < 1 ? +(v * 1000).toPrecision(3) + " ms" : +v.toPrecision(3) + " s"; }
function clock(t) { return new Date(t * 1000).toLocaleTimeString([], {hour12: false}); }
function el(name, attrs, parent) {
  const e = document.createElementNS(SVGNS, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}
function niceMax(v, integer) {
  if (integer) return 4 * Math.max(1, Math.ceil(v / 4));  // whole-number gridlines for counts
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v))), m = v / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

function chart(id, times, series, format, integer) {
  const svg = document.getElementById(id);
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const vals = [];
  for (const s of series) for (const v of s.values) if (v !== null && isFinite(v)) vals.push(v);
  const ymax = niceMax(vals.length ? Math.max.apply(null, vals) : 0, integer);
  const t0 = times.length ? times[0] : 0, t1 = times.length ? times[times.length - 1] : 1;
  const span = Math.max(t1 - t0, 1e-9);
  const x = t => L + (W - L - R) * (times.length > 1 ? (t - t0) / span : 1);
  const y = v => T + (H - T - B) * (1 - v / ymax);
  for (let i = 0; i <= 4; i++) {
    const v = ymax * i / 4;
    el("line", {class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v)}, svg);
    el("text", {class: "axis", x: L - 6, y: y(v) + 3, "text-anchor": "end"}, svg).textContent = format(v);
  }
  if (times.length) {
    el("text", {class: "axis", x: L, y: H - 6}, svg).textContent = clock(t0);
    el("text", {class: "axis", x: W - R, y: H - 6, "text-anchor": "end"}, svg).textContent = clock(t1);
  }
  const legend = document.getElementById(id.replace("chart", "legend"));
  legend.textContent = "";
  series.forEach((s, k) => {
    let d = "", pen = false;
    s.values.forEach((v, i) => {
      if (v === null || !isFinite(v)) { pen = false; return; }
      // Counts hold their value until the next decision: draw them as steps.
      if (pen && integer) d += "H" + x(times[i]).toFixed(1) + " ";
      d += (pen ? "L" : "M") + x(times[i]).toFixed(1) + " " + y(v).toFixed(1) + " ";
      pen = true;
    });
    if (d) el("path", {class: "series", d: d.trim(), stroke: COLORS[k % COLORS.length], "data-series": s.name}, svg);
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = COLORS[k % COLORS.length];
    item.appendChild(swatch);
    const last = s.values.length ? s.values[s.values.length - 1] : null;
    item.appendChild(document.createTextNode(s.name + " " + format(last)));
    legend.appendChild(item);
  });
}

function render(doc) {
  const c = doc.controller, pts = doc.points;
  text("title", "tidal · " + c.name);
  text("f-policy", c.policy);
  text("f-bounds", c.min + "–" + c.max);
  text("f-sync", c.sync_period + " s");
  text("f-source", c.source);
  text("f-actuator", c.actuator);
  text("f-dry", c.dry_run ? "DRY RUN (no actuation)" : "");
  text("v-steps", String(doc.steps));
  if (!pts.length) return;
  const p = pts[pts.length - 1], m = p.metrics;
  text("v-desired", p.desired === null ? "-" : String(p.desired));
  text("v-ready", String(p.ready));
  text("v-starting", String(p.starting));
  text("v-draining", String(p.draining));
  text("v-rps", num(m.rps, 1));
  text("v-concurrency", num(m.concurrency, 1));
  text("v-p50", ms(m.latency_p50));
  text("v-p95", ms(m.latency_p95));
  text("v-p99", ms(m.latency_p99));
  text("v-mode", p.mode);
  text("v-failures", String(p.source_failures));
  const times = pts.map(q => q.time);
  const get = k => pts.map(q => (q.metrics[k] === undefined ? null : q.metrics[k]));
  chart("chart-replicas", times, [
    {name: "desired", values: pts.map(q => q.desired)},
    {name: "current", values: pts.map(q => q.current)},
    {name: "ready", values: pts.map(q => q.ready)},
  ], v => num(v, 0), true);
  chart("chart-load", times, [
    {name: "rps", values: get("rps")},
    {name: "in flight", values: get("concurrency")},
  ], v => num(v, 1));
  chart("chart-latency", times, [
    {name: "p50", values: get("latency_p50")},
    {name: "p95", values: get("latency_p95")},
    {name: "p99", values: get("latency_p99")},
  ], msAxis);
  // Newest first: every change of count and every step not decided by the policy, then the rest.
  const rows = pts.filter(q => q.desired !== q.current || q.mode !== "policy");
  const shown = (rows.length ? rows : pts).slice(-15).reverse();
  const body = document.getElementById("decisions");
  body.textContent = "";
  for (const q of shown) {
    const tr = document.createElement("tr");
    const cells = [clock(q.time), (q.current === null ? "?" : q.current) + " → " + (q.desired === null ? "?" : q.desired)
                   + (q.dry_run ? " (dry run)" : q.actuated ? "" : q.desired !== q.current ? " (not applied)" : ""),
                   q.mode, q.reason + (q.error && q.reason.indexOf(q.error) < 0 ? " — " + q.error : "")];
    cells.forEach((v, i) => {
      const td = document.createElement("td");
      td.textContent = v;
      if (i === 2) td.className = "mode-" + q.mode;
      if (i === 3) td.className = "reason";
      tr.appendChild(td);
    });
    body.appendChild(tr);
  }
}

async function poll() {
  const status = document.getElementById("status");
  try {
    const resp = await fetch("api/history?limit=600", {cache: "no-store"});
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    render(await resp.json());
    status.textContent = "live · " + clock(Date.now() / 1000);
    status.className = "live";
  } catch (err) {
    status.textContent = "disconnected";
    status.className = "down";
  }
}
poll();
setInterval(poll, 1000);
</script>
</body>
</html>
"""
