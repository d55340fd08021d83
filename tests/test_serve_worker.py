"""The model worker (tidal.serve.worker) and its model (tidal.serve.model).

Workers run as real subprocesses on ephemeral loopback ports; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tidal.serve import model as model_mod
from tidal.serve.worker import LISTENING_PREFIX, UNAVAILABLE_HEADER


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """One trained model per test session, shared by every serve test file (same folder)."""
    path = tmp_path_factory.getbasetemp() / "serve-model"
    model_mod.ensure_model(path)
    return path


class WorkerProc:
    def __init__(self, proc: subprocess.Popen, port: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"


def start_worker(model_dir: Path, *extra: str) -> WorkerProc:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tidal.serve.worker", "--port", "0", "--model-dir", str(model_dir), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    line = proc.stdout.readline()  # the worker prints it right after binding
    assert line.startswith(LISTENING_PREFIX), line
    port = int(line.split("port=")[1].split()[0])
    return WorkerProc(proc, port)


def stop_worker(w: WorkerProc) -> None:
    if w.proc.poll() is None:
        w.proc.kill()
    w.proc.wait(5)


def get(url: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def post(url: str, body: object) -> tuple[int, dict, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read() or b"{}")


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


# ---------------------------------------------------------------------------------- model


def test_forward_pass_matches_sklearn_predict():
    import warnings

    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(16, 8), max_iter=20, random_state=1).fit(x / 16.0, y)
    m = model_mod.DigitsModel(tuple(clf.coefs_), tuple(clf.intercepts_), clf.classes_, x, y)
    np.testing.assert_array_equal(m.predict(x), clf.predict(x / 16.0))
    with pytest.raises(ValueError, match="rows of 64"):
        m.predict(np.zeros((2, 3)))


def test_cached_model_is_plain_arrays_and_accurate(model_dir, tmp_path):
    path = model_dir / model_mod.MODEL_FILE
    m = model_mod.load(path)  # allow_pickle=False inside
    with np.load(path, allow_pickle=False) as data:
        assert all(data[k].dtype != object for k in data.files)
    assert (m.predict(m.images) == m.labels).mean() > 0.95
    # Save/load round trip, and a stale format is retrained rather than misread.
    copy = tmp_path / "m" / model_mod.MODEL_FILE
    model_mod.save(m, copy)
    again = model_mod.load(copy)
    for a, b in zip(m.coefs, again.coefs, strict=True):
        np.testing.assert_array_equal(a, b)
    stale = dict(np.load(copy, allow_pickle=False))
    stale["format_version"] = np.array(999)
    np.savez(copy, **stale)
    with pytest.raises(ValueError, match="format"):
        model_mod.load(copy)


# ---------------------------------------------------------------------------------- worker process


def test_worker_endpoints_readiness_and_metrics(model_dir):
    w = start_worker(model_dir, "--load-delay", "0.8", "--concurrency", "2")
    try:
        # Cold start: alive at once, ready only after the model (and the extra delay) loaded.
        assert get(w.url + "/healthz")[0] == 200
        status, _, body = get(w.url + "/readyz")
        assert status == 503 and json.loads(body)["status"] == "loading"
        status, headers, _ = post(w.url + "/predict", {"digits": 1})
        assert status == 503 and headers[UNAVAILABLE_HEADER] == "loading"
        wait_for(lambda: get(w.url + "/readyz")[0] == 200)

        m = model_mod.load(model_dir / model_mod.MODEL_FILE)
        status, _, out = post(w.url + "/predict", {"inputs": m.images[:5].tolist()})
        assert status == 200 and out["predictions"] == m.predict(m.images[:5]).tolist()
        status, _, out = post(w.url + "/predict", {"digits": 7})
        assert status == 200 and len(out["predictions"]) == len(out["labels"]) == 7
        for bad in ({"inputs": [[1, 2, 3]]}, {"digits": 0}, {"digits": True}, {"nothing": 1}, [1, 2],
                    {"inputs": []}, b"{not json"):
            status, _, out = post(w.url + "/predict", bad)
            assert status == 400 and "error" in out, bad

        status, headers, text = get(w.url + "/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(text.decode())}
        codes = {s.labels["code"]: s.value for s in families["tidal_worker_requests"].samples
                 if s.name == "tidal_worker_requests_total"}
        assert codes == {"503": 1.0, "200": 2.0, "400": 7.0}
        assert families["tidal_worker_in_flight"].samples[0].value == 0
        count = [s.value for s in families["tidal_worker_request_duration_seconds"].samples
                 if s.name.endswith("_count")]
        assert count == [9.0]
    finally:
        stop_worker(w)


def test_sigterm_drains_in_flight_requests_then_exits_zero(model_dir):
    w = start_worker(model_dir, "--concurrency", "1", "--service-time", "0.6")
    try:
        wait_for(lambda: get(w.url + "/readyz")[0] == 200)

        async def scenario():
            import aiohttp

            async with aiohttp.ClientSession() as s:
                async def predict():
                    async with s.post(w.url + "/predict", json={"digits": 1}) as r:
                        return r.status, r.headers.get(UNAVAILABLE_HEADER)

                # One running and one waiting for the single slot when SIGTERM arrives.
                held = [asyncio.create_task(predict()) for _ in range(2)]
                await asyncio.sleep(0.3)
                w.proc.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.1)
                async with s.get(w.url + "/readyz") as r:
                    ready_status = r.status
                late = await predict()
                return await asyncio.gather(*held), ready_status, late

        held, ready_status, late = asyncio.run(scenario())
        assert held == [(200, None), (200, None)]  # accepted before SIGTERM: answered
        assert ready_status == 503
        assert late == (503, "draining")  # refused unprocessed, so a balancer may retry it
        assert w.proc.wait(10) == 0
    finally:
        stop_worker(w)


def test_worker_concurrency_limit_queues_the_rest(model_dir):
    w = start_worker(model_dir, "--concurrency", "2", "--service-time", "0.3")
    try:
        wait_for(lambda: get(w.url + "/readyz")[0] == 200)

        async def burst():
            import aiohttp

            async with aiohttp.ClientSession() as s:
                async def one():
                    async with s.post(w.url + "/predict", json={"digits": 1}) as r:
                        await r.read()
                        return r.status

                started = time.monotonic()
                statuses = await asyncio.gather(*(one() for _ in range(4)))
                return statuses, time.monotonic() - started

        statuses, elapsed = asyncio.run(burst())
        assert statuses == [200] * 4
        # Two slots, four requests of 0.3 s: two rounds.
        assert 0.55 < elapsed < 2.0
    finally:
        stop_worker(w)


def test_worker_exits_when_parent_goes_away(model_dir):
    # A shell parent that dies at once: the worker notices it was re-parented and drains out.
    w = start_worker(model_dir, "--parent-pid", str(os.getpid() + 10_000_000))
    try:
        assert w.proc.wait(10) == 0
    finally:
        stop_worker(w)


def test_worker_rejects_bad_flags():
    r = subprocess.run([sys.executable, "-m", "tidal.serve.worker", "--concurrency", "0"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "--concurrency" in r.stderr
