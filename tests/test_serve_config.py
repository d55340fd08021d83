"""``tidal serve`` configuration, admin token file, CLI wiring and the traffic statistics."""

from __future__ import annotations

import argparse
import os
import stat
import subprocess
import sys
import time

import pytest

from tidal.core.errors import TidalInputError
from tidal.serve.config import ServeConfig, load_or_create_token, load_serve_config, serve_config_from_dict
from tidal.serve.stats import StepIntegral, TrafficStats

# ---------------------------------------------------------------------------------- config


def test_defaults_match_the_contract():
    c = ServeConfig()
    assert (c.host, c.port, c.algorithm, c.replicas, c.min, c.max, c.concurrency) == (
        "127.0.0.1", 8080, "power_of_two", 1, 0, 8, 4)
    assert (c.buffer_limit, c.buffer_timeout, c.load_delay, c.health_interval, c.stats_window) == (
        1000, 30.0, 0.0, 0.5, 10.0)


@pytest.mark.parametrize(("data", "field", "message"), [
    ({"algorithm": "central_queue"}, "algorithm", "Input should be"),
    ({"replicas": 9}, "(top level)", "replicas (9) must lie in [min, max] = [0, 8]"),
    ({"min": 3, "max": 2, "replicas": 2}, "(top level)", "min (3) must not exceed max (2)"),
    ({"buffer_timeout": "soon"}, "buffer_timeout", "expected a duration"),
    ({"buffer_timeout": 0}, "buffer_timeout", "greater than 0"),
    ({"concurrency": 0}, "concurrency", "greater than or equal to 1"),
    ({"port": 70000}, "port", "less than or equal to 65535"),
    ({"workers": 2}, "workers", "unknown key"),
])
def test_bad_settings_name_the_field(data, field, message):
    with pytest.raises(TidalInputError) as err:
        serve_config_from_dict(data, "serve.yaml")
    assert err.value.where == f"serve.yaml: {field}"
    assert message in err.value.problem


def test_yaml_file_durations_relative_paths_and_flag_overrides(tmp_path):
    path = tmp_path / "serve.yaml"
    path.write_text("algorithm: least_connections\nbuffer_timeout: 2m\nmodel_dir: models\nreplicas: 2\n")
    c = load_serve_config(path, {"replicas": 3, "load_delay": "250ms"})
    assert c.algorithm == "least_connections" and c.buffer_timeout == 120.0 and c.load_delay == 0.25
    assert c.replicas == 3  # flags win over the file
    assert c.model_dir == tmp_path / "models"
    path.write_text("- a list\n")
    with pytest.raises(TidalInputError, match="expected a mapping"):
        load_serve_config(path)
    with pytest.raises(TidalInputError, match="file not found"):
        load_serve_config(tmp_path / "missing.yaml")


def test_token_file_is_created_private_and_reused(tmp_path):
    path = tmp_path / "state" / "admin-token"
    token = load_or_create_token(path)
    assert len(token) >= 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_token(path) == token
    path.write_text("\n")
    with pytest.raises(TidalInputError, match="is empty"):
        load_or_create_token(path)


# ---------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    from tidal.cli import serve as serve_cmd

    parser = argparse.ArgumentParser(prog="tidal")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    sub = parser.add_subparsers(dest="command", required=True)
    serve_cmd.add_commands(sub)
    return parser


def test_cli_flags_map_onto_config_fields(tmp_path):
    from tidal.cli.serve import overrides_from_args

    args = _parser().parse_args(["serve", "--port", "0", "--algorithm", "random", "--buffer-timeout", "5s",
                                 "--min", "1", "--max", "4", "--model-dir", str(tmp_path)])
    over = overrides_from_args(args)
    assert over == {"port": 0, "algorithm": "random", "buffer_timeout": "5s", "min": 1, "max": 4,
                    "model_dir": str(tmp_path)}
    assert load_serve_config(None, over).buffer_timeout == 5.0


def test_cli_bad_config_is_an_input_error(tmp_path):
    from tidal.cli.serve import run_serve

    bad = tmp_path / "serve.yaml"
    bad.write_text("replicas: -1\n")
    args = _parser().parse_args(["serve", str(bad)])
    with pytest.raises(TidalInputError, match="replicas"):
        run_serve(args)


def test_cli_serves_until_sigterm_and_exits_zero(tmp_path):
    """The real command in a subprocess: it listens, serves, and stops cleanly on SIGTERM."""
    script = (
        "import sys, argparse\n"
        "from tidal.cli import serve\n"
        "p = argparse.ArgumentParser(); p.add_argument('-v', dest='verbose', action='count', default=0)\n"
        "sub = p.add_subparsers(dest='command'); serve.add_commands(sub)\n"
        "a = p.parse_args(sys.argv[1:]); sys.exit(a.handler(a))\n"
    )
    token_file = tmp_path / "token"
    proc = subprocess.Popen(
        [sys.executable, "-c", script, "serve", "--port", "0", "--replicas", "0",
         "--admin-token-file", str(token_file), "--model-dir", str(tmp_path / "model")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 15
        line = ""
        while "serving" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
        assert "serving http://127.0.0.1:" in line
        assert token_file.exists()
        proc.send_signal(15)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


# ---------------------------------------------------------------------------------- stats


def test_step_integral_is_exact_over_the_window():
    s = StepIntegral(horizon_s=20, value=0.0, start=0.0)
    s.set(2.0, 4.0)
    s.set(5.0, 1.0)
    assert s.integral(0.0, 10.0) == pytest.approx(4 * 3 + 1 * 5)
    assert s.integral(4.0, 6.0) == pytest.approx(4 + 1)
    s.add(10.0, 2.0)  # 3 from t=10
    for t in range(11, 60):
        s.set(float(t), 3.0 if t % 2 else 5.0)
    # Old steps are pruned but the value at the window's start is kept.
    assert len(s._steps) < 30
    assert s.integral(50.0, 52.0) == pytest.approx(5 + 3)


def test_traffic_stats_window():
    st = TrafficStats(window_s=10.0, now=0.0)
    for i in range(20):
        st.arrival(i * 0.5)  # 2 per second
    for i in range(10):
        st.answered(5.0 + i * 0.1, latency=0.1 * (i + 1), status=200 if i < 9 else 500)
    st.drop(6.0)
    st.in_system.set(0.0, 2.0)
    st.busy.set(0.0, 1.0)
    st.capacity.set(0.0, 4.0)
    snap = st.snapshot(10.0, queue_length=3)
    assert snap["rps"] == pytest.approx(2.0)
    assert snap["concurrency"] == pytest.approx(2.0)
    assert snap["utilization"] == pytest.approx(0.25)
    assert snap["completed"] == 10 and snap["errors"] == 1 and snap["queue_length"] == 3
    assert snap["drops"] == pytest.approx(0.1)
    assert snap["latency_p50"] == pytest.approx(0.55)
    assert snap["latency_p99"] == pytest.approx(0.991)
    later = st.snapshot(30.0, queue_length=0)  # everything has left the window
    assert later["rps"] == 0 and later["completed"] == 0 and later["latency_p95"] is None
    assert later["concurrency"] == pytest.approx(2.0)  # still two in the system throughout


def test_traffic_stats_early_window_uses_elapsed_time():
    st = TrafficStats(window_s=10.0, now=100.0)
    st.arrival(100.5)
    st.arrival(101.0)
    assert st.snapshot(102.0, 0)["rps"] == pytest.approx(1.0)
