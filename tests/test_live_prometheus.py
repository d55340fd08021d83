"""The Prometheus source against an aiohttp fake of ``GET /api/v1/query`` (loopback)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from tidal.live import Controller, PrometheusSource, SourceError
from tidal.live.faults import AuthError
from tidal.live.sources import parse_instant_query
from tidal.live.testing import RecordingActuator
from tidal.policy import build_policy


def vector(*values, ts=1700000000.0):
    return {"status": "success", "data": {"resultType": "vector",
                                          "result": [{"metric": {"pod": f"p{i}"}, "value": [ts, str(v)]}
                                                     for i, v in enumerate(values)]}}


ANSWERS = {
    "sum(rate(tidal_requests_total[1m]))": vector(12.5),
    "sum(tidal_in_flight)": vector(3, 4),
    "histogram_quantile(0.95, sum by (le) (rate(tidal_request_duration_seconds_bucket[1m])))": vector(0.2, 0.35),
    "avg(worker_busy)": vector(0.2, 0.4),
    "scalar(sum(up))": {"status": "success", "data": {"resultType": "scalar", "result": [1700000000.0, "2"]}},
    "absent_series": vector(),
    "nan_query": vector("NaN"),
}


class FakePrometheus:
    """Answers instant queries from a table; unknown queries get Prometheus' 400 error body."""

    def __init__(self, answers, token=None):
        self.answers = dict(answers)
        self.token = token
        self.seen: list[tuple[str, str | None]] = []
        self.runner = None
        self.url = ""

    async def query(self, request: web.Request) -> web.Response:
        promql = request.query.get("query", "")
        self.seen.append((promql, request.headers.get("Authorization")))
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"status": "error", "errorType": "unauthorized"}, status=401)
        if promql not in self.answers:
            return web.json_response({"status": "error", "errorType": "bad_data",
                                      "error": f"parse error in {promql!r}"}, status=400)
        return web.json_response(self.answers[promql])

    async def __aenter__(self):
        app = web.Application()
        app.router.add_get("/api/v1/query", self.query)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc):
        await self.runner.cleanup()


def scrape_with(queries, answers=ANSWERS, token=None, server_token=None):
    async def go():
        async with FakePrometheus(answers, server_token) as prom:
            source = PrometheusSource(prom.url, queries, token=token, timeout=5.0)
            try:
                return await asyncio.wait_for(source.scrape(0.0), 10), prom.seen
            finally:
                await source.aclose()

    return asyncio.run(go())


def test_each_tidal_metric_comes_from_its_own_query():
    scrape, seen = scrape_with({
        "rps": "sum(rate(tidal_requests_total[1m]))",
        "concurrency": "sum(tidal_in_flight)",
        "latency_p95": "histogram_quantile(0.95, sum by (le) (rate(tidal_request_duration_seconds_bucket[1m])))",
        "utilization": "avg(worker_busy)",
        "ready_replicas": "scalar(sum(up))",
    })
    # Several series combine: counts add up, latency takes the worst series, ratios average.
    assert scrape.metrics == pytest.approx({"rps": 12.5, "concurrency": 7.0, "latency_p95": 0.35,
                                            "utilization": 0.3, "ready_replicas": 2.0})
    assert scrape.pods is None and scrape.replicas is None
    assert len(seen) == 5


def test_empty_results_and_nan_leave_the_metric_out():
    scrape, _ = scrape_with({"rps": "absent_series", "latency_p99": "nan_query", "concurrency": "sum(tidal_in_flight)"})
    assert scrape.metrics == {"concurrency": 7.0}


def test_a_rejected_query_fails_the_scrape():
    with pytest.raises(SourceError, match="HTTP 400.*parse error"):
        scrape_with({"rps": "sum(rate(tidal_requests_total[1m]))", "drops": "not promql ((("})


def test_bearer_token_is_sent():
    scrape, seen = scrape_with({"rps": "sum(rate(tidal_requests_total[1m]))"}, token="p-token", server_token="p-token")
    assert scrape.metrics == {"rps": 12.5} and seen == [("sum(rate(tidal_requests_total[1m]))", "Bearer p-token")]
    # A refused token is a configuration error naming the setting, not a failed scrape to hold on.
    with pytest.raises(AuthError, match=r"metrics.token_file: GET .* HTTP 401 \(no token was sent\)"):
        scrape_with({"rps": "sum(rate(tidal_requests_total[1m]))"}, token=None, server_token="p-token")


@pytest.mark.parametrize("body", [
    {"status": "error", "error": "boom"},
    {"status": "success", "data": {"resultType": "matrix", "result": []}},
    {"status": "success", "data": {"result": []}},
    ["not", "an", "object"],
])
def test_malformed_answers_are_source_errors(body):
    with pytest.raises(SourceError):
        parse_instant_query("rps", body)


def test_controller_on_prometheus_reads_the_count_from_the_actuator():
    async def go():
        async with FakePrometheus(ANSWERS) as prom:
            source = PrometheusSource(prom.url, {"concurrency": "sum(tidal_in_flight)", "ready_replicas": "scalar(sum(up))"})
            actuator = RecordingActuator(replicas=3)
            policy = build_policy({"name": "target_utilization", "metric": "concurrency", "target": 1.0, "window": 0},
                                  1, 10)
            controller = Controller(policy, source, actuator, min_replicas=1, max_replicas=10, sync_period=1.0)
            try:
                return await controller.step(50.0), actuator
            finally:
                await controller.aclose()

    record, actuator = asyncio.run(go())
    # 7 in flight over 2 ready replicas = 3.5 per replica for a target of 1 -> ceil(2 * 3.5) = 7.
    assert (record.current, record.ready, record.starting, record.desired) == (3, 2, 1, 7)
    assert actuator.calls == [7]
