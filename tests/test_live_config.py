"""``tidal run``'s config file and command: validation naming the field, exit 2, a bounded real run."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from pathlib import Path

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tidal.cli import main as cli_main
from tidal.cli import run as run_cmd
from tidal.core.errors import TidalInputError
from tidal.live import Controller, controller_config_from_dict, load_controller_config
from tidal.live.config import KubernetesActuatorSpec, LocalActuatorSpec
from tidal.live.testing import FakeBalancer

REPO = Path(__file__).resolve().parents[1]

BASE = {
    "policy": {"name": "target_utilization", "target": 0.6, "window": "30s"},
    "replicas": {"min": 1, "max": 8},
    "sync_period": "2s",
    "metrics": {"source": "balancer", "url": "http://127.0.0.1:8080", "token_file": "admin.token"},
}


def cfg(**changes):
    data = json.loads(json.dumps(BASE))
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


@pytest.mark.parametrize("policy, sync_period, expected", [
    ({"name": "kpa"}, None, 2.0), ({"name": "hpa"}, None, 15.0), ({"name": "ray_serve"}, None, 1.0),
    ({"name": "target_utilization"}, None, 15.0), ({"name": "kpa"}, "10s", 10.0)])
def test_sync_period_defaults_to_the_policys_cadence(tmp_path, policy, sync_period, expected):
    (tmp_path / "admin.token").write_text("secret")
    config = controller_config_from_dict(cfg(policy=policy, sync_period=sync_period), base_dir=tmp_path)
    assert config.effective_sync_period == expected
    assert Controller.from_config(config).sync_period == expected


def test_defaults_and_the_implied_local_actuator(tmp_path):
    config = controller_config_from_dict(cfg(), base_dir=tmp_path)
    assert config.sync_period == 2.0 and config.fallback.failure_threshold == 3 and config.fallback.replicas == "hold"
    assert isinstance(config.actuator, LocalActuatorSpec)
    assert config.actuator.url == "http://127.0.0.1:8080"
    # Input files resolve against the config file's folder.
    assert config.metrics.token_file == (tmp_path / "admin.token").absolute()
    assert config.actuator.token_file == config.metrics.token_file
    assert config.dashboard is None and config.state_file is None and not config.dry_run


def test_absolute_input_paths_are_kept(tmp_path):
    token = (tmp_path / "elsewhere" / "admin.token").absolute()
    kubeconfig = (tmp_path / "kube.conf").absolute()
    config = controller_config_from_dict(cfg(metrics={"source": "balancer", "token_file": str(token)}),
                                         base_dir=tmp_path / "configs")
    assert config.metrics.token_file == token and config.actuator.token_file == token
    config = controller_config_from_dict(cfg(actuator={"kind": "kubernetes", "deployment": "web",
                                                       "kubeconfig": str(kubeconfig)}), base_dir=tmp_path)
    assert config.actuator.kubeconfig == kubeconfig


def test_kubernetes_and_prometheus_blocks():
    config = controller_config_from_dict(cfg(
        metrics={"source": "prometheus", "url": "http://127.0.0.1:9090", "queries": {"rps": "sum(rate(x[1m]))"}},
        actuator={"kind": "kubernetes", "namespace": "prod", "deployment": "web"},
        fallback={"failure_threshold": 2, "replicas": 4, "behavior": "currentReplicasIfHigher"},
        dashboard={"port": 0},
    ))
    assert isinstance(config.actuator, KubernetesActuatorSpec) and config.actuator.conflict_retries == 5
    assert config.fallback.replicas == 4 and config.dashboard.port == 0


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"replicas": {"min": 5, "max": 2}}, "replicas", "min (5) must be <= max (2)"),
    ({"replicas": {"min": -1, "max": 2}}, "replicas.min", "greater than or equal to 0"),
    ({"sync_period": "0s"}, "sync_period", "greater than 0"),
    ({"sync_period": "soon"}, "sync_period", "expected a duration"),
    ({"metrics": {"source": "graphite", "url": "x"}}, "metrics", "unknown value 'graphite'"),
    ({"metrics": {"url": "x"}}, "metrics", "missing 'source' (balancer or prometheus)"),
    ({"metrics": {"source": "balancer", "urll": "x"}}, "metrics.urll", "unknown key"),
    ({"metrics": {"source": "prometheus", "url": "http://prom:9090", "queries": {"qps": "up"}}}, "metrics.queries",
     "unknown metric 'qps'"),
    ({"metrics": {"source": "prometheus", "url": "http://prom:9090", "queries": {"rps": "up"}}}, "actuator",
     "required unless metrics.source is balancer"),
    # A URL without a scheme would pass validation and then fail every scrape: a silent endless hold.
    ({"metrics": {"source": "prometheus", "url": "localhost:9090", "queries": {"rps": "up"}}}, "metrics.url",
     "expected an http:// or https:// URL with a host, got 'localhost:9090' (did you mean 'http://localhost:9090'?)"),
    ({"metrics": {"source": "balancer", "url": "127.0.0.1:8080"}}, "metrics.url", "did you mean 'http://127.0.0.1:8080'"),
    ({"metrics": {"source": "balancer", "url": "ftp://host"}}, "metrics.url", "expected an http:// or https:// URL"),
    ({"metrics": {"source": "balancer", "url": "http://:8080"}}, "metrics.url", "with a host"),
    ({"metrics": {"source": "balancer", "url": "http://host:99999"}}, "metrics.url", "Port out of range"),
    ({"actuator": {"kind": "local", "url": "balancer:8080"}}, "actuator.url", "expected an http:// or https:// URL"),
    ({"metrics_server": {"port": -1}}, "metrics_server.port", "greater than or equal to 0"),
    ({"dashboard": {"port": 9100}, "metrics_server": {"port": 9100}}, "metrics_server.port",
     "the dashboard already serves /metrics on port 9100"),
    ({"actuator": {"kind": "kubernetes"}}, "actuator.deployment", "required field missing"),
    ({"fallback": {"failure_threshold": 3, "replicas": 20}}, "fallback.replicas", "outside replicas.min..max"),
    ({"fallback": {"replicas": "sometimes"}}, "fallback.replicas", "hold"),
    ({"fallback": {"failure_threshold": -1}}, "fallback.failure_threshold", "greater than or equal to 0"),
    ({"retry": {"attempts": 0}}, "retry.attempts", "greater than or equal to 1"),
    ({"dashboard": {"port": 70000}}, "dashboard.port", "less than or equal to 65535"),
    ({"policy": {"name": "nope"}}, "policy.name", "unknown policy 'nope'"),
    ({"policy": {"name": "target_utilization", "target": -1}}, "policy.target", "greater than 0"),
    ({"policy": {"name": "static", "replicas": 2, "colour": "red"}}, "policy.colour", "unknown key"),
    ({"replicas": None}, "replicas", "required field missing"),
    ({"surprise": 1}, "surprise", "unknown key"),
])
def test_bad_config_names_the_field(changes, field, message):
    with pytest.raises(TidalInputError) as err:
        controller_config_from_dict(cfg(**changes), source="ctl.yaml")
    assert err.value.where == f"ctl.yaml: {field}"
    assert message in err.value.problem


def test_token_file_problems_name_the_field(tmp_path):
    from tidal.live import build_source

    config = controller_config_from_dict(cfg(), base_dir=tmp_path)
    with pytest.raises(TidalInputError, match="metrics.token_file: file not found"):
        build_source(config.metrics)
    (tmp_path / "admin.token").write_text("  \n")
    with pytest.raises(TidalInputError, match="metrics.token_file: .* is empty"):
        build_source(config.metrics)


def test_the_example_config_is_valid():
    config = load_controller_config(REPO / "examples" / "live_local.yaml")
    assert config.metrics.source == "balancer" and config.dashboard is not None


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def tidal_main(monkeypatch):
    """The ``tidal`` command line, in-process."""
    yield cli_main.main
    # The command prints decisions through a handler on stdout; drop it with the captured stdout.
    decisions = logging.getLogger("tidal.live.decisions")
    for handler in [h for h in decisions.handlers if getattr(h, "_tidal_decisions", False)]:
        decisions.removeHandler(handler)
    decisions.propagate = True


def test_bad_config_exits_2_naming_the_field_and_writes_nothing(tidal_main, tmp_path, capsys):
    path = tmp_path / "ctl.yaml"
    state = tmp_path / "state.json"
    path.write_text(yaml.safe_dump(cfg(replicas={"min": 3, "max": 1}, state_file=str(state))))
    assert tidal_main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "ctl.yaml: replicas" in err and "min (3) must be <= max (1)" in err and "Traceback" not in err
    assert not state.exists()
    assert tidal_main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err
    path.write_text("policy: [unclosed")
    assert tidal_main(["run", str(path)]) == 2
    assert "invalid YAML" in capsys.readouterr().err
    path.write_text(yaml.safe_dump(cfg()))
    assert tidal_main(["run", str(path), "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err


def test_check_validates_only(tidal_main, tmp_path, capsys):
    path = tmp_path / "ctl.yaml"
    path.write_text(yaml.safe_dump(cfg()))
    assert tidal_main(["run", str(path), "--check"]) == 0
    assert "ok" in capsys.readouterr().err


class BalancerThread:
    """A fake balancer on its own event loop in a thread (the CLI runs its own ``asyncio.run``)."""

    def __init__(self, token: str, bounds: tuple[int, int] | None = None) -> None:
        self.balancer = FakeBalancer(token=token, replicas=2, bounds=bounds)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> FakeBalancer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.balancer.start(), self.loop).result(10)
        return self.balancer

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self.balancer.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def test_run_drives_the_balancer_and_prints_one_json_line_per_decision(tidal_main, tmp_path, capsys):
    (tmp_path / "admin.token").write_text("cli-token\n")
    with BalancerThread("cli-token") as balancer:
        balancer.stats["utilization"] = 0.9  # 2 replicas at 90 % for a 30 % target -> 6
        data = cfg(policy={"name": "target_utilization", "target": 0.3, "window": "10s"}, sync_period="50ms",
                   state_file=str(tmp_path / "state.json"))
        data["metrics"]["url"] = balancer.url
        (tmp_path / "ctl.yaml").write_text(yaml.safe_dump(data))
        assert tidal_main(["run", str(tmp_path / "ctl.yaml"), "--steps", "2", "--dashboard-port", "0"]) == 0
        desired_after = balancer.desired
        assert tidal_main(["run", str(tmp_path / "ctl.yaml"), "--steps", "1", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(lines) == 3 and all(entry["event"] == "decision" for entry in lines)
    # 2 replicas at 90 % for a 30 % target: 6; the fake keeps reporting 90 %, so then the maximum.
    assert lines[0]["desired"] == 6 and lines[0]["actuated"]
    assert lines[1]["desired"] == 8 and desired_after == 8
    assert lines[2]["dry_run"] and not lines[2]["actuated"]
    assert "dashboard http://127.0.0.1:" in err and "(dry run)" in err
    assert json.loads((tmp_path / "state.json").read_text())["format"] == "tidal-controller-state/1"


def test_a_refused_token_exits_2_naming_the_token_file(tidal_main, tmp_path, capsys):
    (tmp_path / "admin.token").write_text("not-the-token\n")
    with BalancerThread("cli-token") as balancer:
        data = cfg(sync_period="50ms")
        data["metrics"]["url"] = balancer.url
        (tmp_path / "ctl.yaml").write_text(yaml.safe_dump(data))
        assert tidal_main(["run", str(tmp_path / "ctl.yaml"), "--steps", "3"]) == 2
        assert balancer.desired == 2  # nothing was changed
    out, err = capsys.readouterr()
    # The actuator shares the source's (implied) token file: the message names the one in the file.
    assert "metrics.token_file: GET" in err and "HTTP 401 (the token was refused)" in err and "Traceback" not in err
    assert out.strip() == ""  # no decision was taken on a refused token


def test_bounds_outside_the_balancers_exit_2_before_any_decision(tidal_main, tmp_path, capsys):
    (tmp_path / "admin.token").write_text("cli-token\n")
    with BalancerThread("cli-token", bounds=(0, 4)) as balancer:
        data = cfg(sync_period="50ms")  # replicas 1..8 against the balancer's 0..4
        data["metrics"]["url"] = balancer.url
        (tmp_path / "ctl.yaml").write_text(yaml.safe_dump(data))
        assert tidal_main(["run", str(tmp_path / "ctl.yaml"), "--steps", "1"]) == 2
    out, err = capsys.readouterr()
    assert "replicas: min..max = 1..8 is not within the bounds" in err and "(0..4)" in err
    assert "Traceback" not in err and out.strip() == ""


def test_metrics_server_serves_prometheus_text_without_the_dashboard(tmp_path):
    """``metrics_server`` alone: /metrics and /healthz on their own port, no page."""
    from tidal.live.runner import run_controller

    (tmp_path / "admin.token").write_text("cli-token\n")

    async def go(url):
        data = cfg(sync_period="50ms", metrics_server={"port": 0})
        data["metrics"]["url"] = url
        config = controller_config_from_dict(data, base_dir=tmp_path)
        servers: list = []
        stop = asyncio.Event()
        task = asyncio.create_task(run_controller(config, stop=stop, servers=servers))
        try:
            while not servers or len(servers[0].controller.records) < 2:
                assert not task.done(), task.exception()
                await asyncio.sleep(0.02)
            (server,) = servers
            async with aiohttp.ClientSession() as session:
                answers = {}
                for path in ("metrics", "healthz", "", "api/history"):
                    async with session.get(server.url + path) as resp:
                        answers[path] = (resp.status, await resp.text())
            return answers
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)

    with BalancerThread("cli-token") as balancer:
        answers = asyncio.run(asyncio.wait_for(go(balancer.url), 30))
    status, text = answers["metrics"]
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text)}
    policy_decisions = [s.value for s in families["tidal_controller_decisions"].samples
                        if s.name == "tidal_controller_decisions_total" and s.labels["mode"] == "policy"]
    assert policy_decisions[0] >= 2
    assert answers["healthz"] == (200, "ok")
    assert answers[""][0] == 404 and answers["api/history"][0] == 404  # no dashboard page


def test_a_controller_built_in_code_takes_the_policys_cadence():
    from tidal.policy import build_policy

    source, actuator = object(), object()  # not used until the controller steps
    for block, expected in (({"name": "kpa"}, 2.0), ({"name": "hpa"}, 15.0), ({"name": "static", "replicas": 2}, 15.0)):
        controller = Controller(build_policy(block), source, actuator, min_replicas=0, max_replicas=4)
        assert controller.sync_period == expected, block
