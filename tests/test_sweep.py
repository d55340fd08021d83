"""``tidal sweep``: grid parsing and validation, and the same table from every backend."""

from __future__ import annotations

import argparse
import csv
import io
import socket
import threading
from pathlib import Path

import pytest

import tidal.cli.main as cli_main
from tidal.cli import sweep as sweep_cli
from tidal.config import load_scenario, scenario_from_dict
from tidal.core.errors import TidalInputError
from tidal.experiment.backends import DaskBackend, LocalBackend, RayBackend, connect, session
from tidal.experiment.grid import expand, parse_axes, parse_axis, split_values
from tidal.experiment.sweep import SweepTable, plan_sweep, run_sweep, write_csv
from tidal.experiment.variant import FIGURES

SMALL = """
name: small
duration: 10m
seed: 3
workload: {kind: step, rate: 10/s, to: 30/s, at: 4m}
service: {service_time: 50ms, concurrency: 2, cold_start: 20s}
replicas: {min: 1, max: 10, initial: 2}
policy: {name: target_utilization, target: 0.5}
"""


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    return path


@pytest.fixture
def scenario(scenario_file: Path):
    return load_scenario(scenario_file)


def cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """The ``tidal`` command line, in-process (argparse errors become their exit status)."""
    try:
        return cli_main.main(argv)
    except SystemExit as exc:  # argparse errors
        return int(exc.code)


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- grid


def test_axis_values_are_yaml_scalars():
    axis = parse_axis("policy.target=0.5, 0.6,0.7")
    assert axis.key == "policy.target" and axis.values == (0.5, 0.6, 0.7)
    assert parse_axis("service.cold_start=30s,2m").values == ("30s", "2m")
    assert parse_axis("service.timeout=null,5s").values == (None, "5s")
    assert parse_axis("seed=1,2").values == (1, 2)


def test_commas_inside_brackets_and_quotes_do_not_split():
    assert split_values("{name: static, replicas: 2},{name: hpa}") == ["{name: static, replicas: 2}", "{name: hpa}"]
    assert split_values("'a,b',[1, 2]") == ["'a,b'", "[1, 2]"]
    axis = parse_axis("policy={name: static, replicas: 2},{name: target_utilization}")
    assert axis.values == ({"name": "static", "replicas": 2}, {"name": "target_utilization"})


@pytest.mark.parametrize("text, message", [
    ("policy.target", "expected KEY=V1,V2"),
    ("=1,2", "expected KEY=V1,V2"),
    ("policy..target=1", "not a dotted key"),
    ("policy.target=", "comma-separated list"),
    ("policy.target=0.5,,0.7", "comma-separated list"),
    ("policy.target=[1,", "cannot parse"),
])
def test_bad_axis_is_an_input_error(text, message):
    with pytest.raises(TidalInputError, match=message):
        parse_axis(text)


def test_a_key_given_twice_is_an_error():
    with pytest.raises(TidalInputError, match="given twice"):
        parse_axes(["policy.target=0.5", "policy.target=0.6"])


def test_cross_product_first_axis_slowest():
    points = expand(parse_axes(["a=1,2", "b=x,y,z"]))
    assert len(points) == 6
    assert points[:3] == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 1, "b": "z"}]
    assert points[-1] == {"a": 2, "b": "z"}


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("grid, where, hint", [
    ("policy.targt=0.5,0.6", "--grid policy.targt",
     "no such field in policy 'target_utilization' (did you mean 'policy.target'?)"),
    ("service.cold_strat=30s", "--grid service.cold_strat",
     "no such field in the scenario (did you mean 'service.cold_start'?)"),
    ("servce.concurrency=2", "--grid servce.concurrency",
     "no such field 'servce' in the scenario (did you mean 'service'?)"),
    ("policy.stabilization.down_windw=1m", "--grid policy.stabilization.down_windw",
     "did you mean 'policy.stabilization.down_window'?"),
    ("workload.rte=5", "--grid workload.rte", "did you mean 'workload.rate'?"),
])
def test_unknown_key_is_refused_before_running(scenario, grid, where, hint):
    with pytest.raises(TidalInputError) as info:
        plan_sweep(scenario, parse_axes([grid]))
    assert info.value.where == where
    assert hint in info.value.problem


def test_bad_value_names_the_point(scenario):
    with pytest.raises(TidalInputError) as info:
        plan_sweep(scenario, parse_axes(["policy.target=0.5,-1", "service.concurrency=2"]))
    assert info.value.where == "--grid policy.target=-1, service.concurrency=2"
    assert "policy.target" in info.value.problem and "greater than 0" in info.value.problem


def test_keys_follow_the_policy_each_point_names(scenario):
    # replicas is a field of static only: the first point validates, the second does not.
    plan = plan_sweep(scenario, parse_axes(["policy={name: static, replicas: 2}"]))
    assert plan.variants[0].scenario().policy == {"name": "static", "replicas": 2}
    with pytest.raises(TidalInputError) as info:
        plan_sweep(scenario, parse_axes(["policy={name: static, replicas: 2},{name: target_utilization, replicas: 2}"]))
    # The unknown key is inside a value, so the point is named.
    assert info.value.where == "--grid policy={name: target_utilization, replicas: 2}"
    assert info.value.problem == "policy.replicas: unknown key"
    # Changing only the name keeps the scenario's other keys and lacks static's required one.
    with pytest.raises(TidalInputError) as info:
        plan_sweep(scenario, parse_axes(["policy.name=static"]))
    assert info.value.where == "--grid policy.name=static"


def test_shorthand_values_expand_so_nested_keys_work(scenario):
    # service_time is written as the shorthand "50ms"; its mean is still a valid grid key.
    plan = plan_sweep(scenario, parse_axes(["service.service_time.mean=40ms,60ms"]))
    built = [v.scenario() for v in plan.variants]
    assert [s.service.service_time.mean for s in built] == [0.04, 0.06]
    assert {s.service.service_time.distribution for s in built} == {"deterministic"}


# --------------------------------------------------------------------------- running


GRID = ["policy.target=0.4,0.8", "service.cold_start=5s,60s"]


@pytest.fixture
def plan(scenario):
    return plan_sweep(scenario, parse_axes(GRID))


@pytest.fixture
def sequential(plan) -> SweepTable:
    with session(LocalBackend(1)) as backend:
        return run_sweep(plan, backend)


def test_table_has_grid_values_and_figures_in_grid_order(plan, sequential):
    assert sequential.columns == ("policy.target", "service.cold_start", *FIGURES)
    assert [row[:2] for row in sequential.rows] == [(0.4, "5s"), (0.4, "60s"), (0.8, "5s"), (0.8, "60s")]
    records = sequential.records()
    # Same requests for every point (the scenario's seed), so the arrivals agree.
    assert len({r["arrivals"] for r in records}) == 1
    # A higher target runs fewer replicas.
    assert records[2]["replica_hours"] < records[0]["replica_hours"]
    rows = list(csv.reader(io.StringIO(sequential.to_csv())))
    assert rows[0] == list(sequential.columns) and rows[1][:2] == ["0.4", "5s"]
    assert rows[1][sequential.columns.index("slo_met")] in ("true", "false")


def test_process_pool_gives_the_sequential_table(plan, sequential):
    progress = []
    with session(LocalBackend(2)) as backend:
        pooled = run_sweep(plan, backend, progress=lambda done, total: progress.append((done, total)))
    assert pooled.to_csv() == sequential.to_csv()
    assert progress[-1] == (4, 4)


def test_dask_cluster_gives_the_sequential_table(plan, sequential):
    distributed = pytest.importorskip("distributed", reason="Dask is an optional extra (tidal[sweep-dask])")
    local = distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None)
    with local as cluster:
        with session(DaskBackend(cluster.scheduler_address)) as backend:
            table = run_sweep(plan, backend)
    assert table.to_csv() == sequential.to_csv()


def test_ray_cluster_gives_the_sequential_table(plan, sequential):
    ray = pytest.importorskip("ray", reason="Ray is an optional extra (tidal[sweep-ray])")
    ray.init(num_cpus=1, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        address = ray.get_runtime_context().gcs_address
        with session(RayBackend(address)) as backend:
            table = run_sweep(plan, backend)
        assert ray.is_initialized()  # a connection the caller opened stays open
    finally:
        ray.shutdown()
    assert table.to_csv() == sequential.to_csv()


@pytest.mark.cluster
def test_ray_cluster_by_address_gives_the_sequential_table(plan, sequential):
    # A head node whose processes (GCS, raylet, workers) are not this one: RayBackend takes the
    # `ray.init(address=...)` path, after its probe of the GCS, as with a real cluster.
    ray = pytest.importorskip("ray", reason="Ray is an optional extra (tidal[sweep-ray])")
    from ray.cluster_utils import Cluster

    assert not ray.is_initialized()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        with session(RayBackend(cluster.address)) as backend:
            assert ray.is_initialized() and ray.get_runtime_context().gcs_address == cluster.address
            table = run_sweep(plan, backend)
        assert not ray.is_initialized(), "the connection tidal opened is closed again"
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert table.to_csv() == sequential.to_csv()


def test_an_input_error_inside_a_run_names_the_point(tmp_path):
    # The trace file is only read when the simulation starts, so the plan validates.
    base = scenario_from_dict({
        "duration": "1m", "workload": {"kind": "trace", "path": str(tmp_path / "missing.csv")},
        "service": {"service_time": "50ms"}, "policy": {"name": "static", "replicas": 1},
    })
    plan = plan_sweep(base, parse_axes(["policy.replicas=1,2"]))
    with pytest.raises(TidalInputError) as info, session(LocalBackend(1)) as backend:
        run_sweep(plan, backend)
    assert info.value.where == "--grid policy.replicas=1"
    assert "missing.csv" in info.value.problem


@pytest.mark.parametrize("option, address, message", [
    ("dask", "tcp://127.0.0.1:{port}", "cannot reach a Dask scheduler"),
    ("ray", "127.0.0.1:{port}", "cannot reach a Ray cluster"),
    ("ray", "127.0.0.1:notaport", "expected an address such as HOST:PORT"),
])
def test_unreachable_cluster_is_an_input_error(option, address, message):
    pytest.importorskip({"dask": "distributed", "ray": "ray"}[option])
    with pytest.raises(TidalInputError, match=message) as info:
        connect(jobs=1, **{option: address.format(port=closed_port())})
    assert info.value.where == f"--{option}"


def test_write_csv_is_atomic(tmp_path, sequential):
    path = write_csv(sequential, tmp_path / "out" / "sweep.csv")
    assert path.read_text() == sequential.to_csv()
    assert [p.name for p in path.parent.iterdir()] == ["sweep.csv"]


# --------------------------------------------------------------------------- command line


def test_cli_sweep_prints_and_saves_the_table(tmp_path, scenario_file, monkeypatch, capsys):
    out = tmp_path / "out"
    argv = ["sweep", str(scenario_file), "--grid", "policy.target=0.4,0.8", "--grid", "service.cold_start=5s,60s",
            "--jobs", "1", "--out", str(out), "--quiet"]
    assert cli(argv, monkeypatch) == 0
    printed = capsys.readouterr().out
    assert "sweep of 4 points" in printed and "policy.target" in printed
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert [(r["policy.target"], r["service.cold_start"]) for r in rows] == [
        ("0.4", "5s"), ("0.4", "60s"), ("0.8", "5s"), ("0.8", "60s")]
    assert all(float(r["cost"]) > 0 for r in rows)


@pytest.mark.cluster
def test_cli_sweep_on_a_dask_cluster(tmp_path, scenario_file, monkeypatch, capsys, sequential):
    distributed = pytest.importorskip("distributed", reason="Dask is an optional extra (tidal[sweep-dask])")
    out = tmp_path / "out"
    argv = ["sweep", str(scenario_file), *[arg for axis in GRID for arg in ("--grid", axis)], "--out", str(out),
            "--quiet"]
    local = distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None)
    with local as cluster:
        assert cli([*argv, "--dask", cluster.scheduler_address], monkeypatch) == 0
    assert "sweep of 4 points" in capsys.readouterr().out
    assert (out / "sweep.csv").read_text() == sequential.to_csv()


@pytest.mark.parametrize("extra, message", [
    (["--grid", "policy.targt=0.5"], "--grid policy.targt: no such field in policy 'target_utilization'"),
    (["--grid", "service.cold_strat=30s"], "--grid service.cold_strat: no such field"),
    (["--grid", "policy.target=0.5,-1"], "--grid policy.target=-1: policy.target"),
    (["--grid", "policy.target"], "expected KEY=V1,V2"),
    (["--grid", "policy.target=0.5", "--jobs", "0"], "--jobs: must be >= 1"),
    (["--grid", "policy.target=0.5", "--dask", "tcp://127.0.0.1:{port}"], "--dask: cannot reach a Dask scheduler"),
    (["--grid", "policy.target=0.5", "--ray", "127.0.0.1:{port}"], "--ray: cannot reach a Ray cluster"),
    (["--grid", "policy.target=0.5", "--ray", "x:1", "--dask", "y:2"], "not allowed with argument"),
    ([], "the following arguments are required: --grid"),
])
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, scenario_file, monkeypatch, capsys, extra, message):
    if "--dask" in extra and "y:2" not in extra:
        pytest.importorskip("distributed")
    if "--ray" in extra and "x:1" not in extra:
        pytest.importorskip("ray")
    port = closed_port()
    out = tmp_path / "out"
    argv = ["sweep", str(scenario_file), *[e.format(port=port) for e in extra], "--out", str(out), "--quiet"]
    assert cli(argv, monkeypatch) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


# --------------------------------------------------------------------------- not a cluster


class NotACluster:
    """A local TCP server that is no cluster: it answers in HTTP (``junk``) or never says a word (``silent``).

    Both pass the TCP pre-check; the second is what hung Dask's handshake (no deadline there).
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._open: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.mode == "junk":
                with conn:
                    conn.settimeout(1)
                    try:
                        conn.recv(65536)
                        conn.sendall(b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/html\r\n\r\n<h1>nope</h1>\n")
                    except OSError:
                        pass
            else:
                self._open.append(conn)  # held open, unanswered, until the test ends

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        for conn in self._open:
            conn.close()


@pytest.fixture(params=["junk", "silent"])
def not_a_cluster(request, monkeypatch):
    import tidal.experiment.backends as backends

    monkeypatch.setattr(backends, "CONNECT_TIMEOUT_S", 2.0)  # the deadline under test, made short
    server = NotACluster(request.param)
    yield server
    server.close()


@pytest.mark.parametrize("option, address, message", [
    ("dask", "tcp://127.0.0.1:{port}", "--dask: 'tcp://127.0.0.1:{port}' is not a Dask scheduler ("),
    ("ray", "127.0.0.1:{port}", "--ray: '127.0.0.1:{port}' is not a Ray cluster ("),
])
def test_cli_port_that_is_not_a_cluster_exits_2_within_the_deadline(tmp_path, scenario_file, monkeypatch, capsys,
                                                                    not_a_cluster, option, address, message):
    pytest.importorskip({"dask": "distributed", "ray": "ray"}[option])
    out = tmp_path / "out"
    argv = ["sweep", str(scenario_file), "--grid", "policy.target=0.5", f"--{option}",
            address.format(port=not_a_cluster.port), "--out", str(out), "--quiet"]
    assert cli(argv, monkeypatch) == 2
    err = capsys.readouterr().err
    assert message.format(port=not_a_cluster.port) in err, err
    assert "Traceback" not in err
    assert not out.exists()
