"""Scenario validation: every bad input names its field and what was expected."""

from __future__ import annotations

import pytest

from tidal.config import load_scenario, scenario_from_dict
from tidal.core.errors import TidalInputError
from tidal.core.units import parse_duration, parse_rate
from tidal.policy import effective_control
from tidal.policy.registry import DEFAULT_SYNC_PERIOD

BASE = {"workload": {"kind": "constant", "rate": 10}, "service": {"service_time": "50ms"}, "duration": "1h"}


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("5m", 300), ("2h", 7200), ("250ms", 0.25),
                                           ("1h30m", 5400), (12, 12), ("1.5m", 90), ("1d", 86400)])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["5x", "", "m5", True, None, "1h 2x"])
def test_bad_durations(bad):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_rates():
    assert parse_rate("120/s") == 120
    assert parse_rate("600/min") == 10
    assert parse_rate(3) == 3
    with pytest.raises(ValueError):
        parse_rate("fast")


def _error(data: dict) -> str:
    with pytest.raises(TidalInputError) as info:
        scenario_from_dict(data)
    return str(info.value)


def test_defaults_fill_in():
    s = scenario_from_dict(BASE)
    assert s.duration == 3600
    assert s.service.service_time.distribution == "deterministic"
    assert s.control.sync_period is None and s.control.scrape_interval is None  # the policy's cadence
    control = effective_control(s.control, s.policy)  # target_utilization names none: 15 s
    assert control.scrape == control.sync == DEFAULT_SYNC_PERIOD == 15
    assert s.replicas.initial_count == s.replicas.min



@pytest.mark.parametrize("patch, where, what", [
    ({"workload": {"kind": "constant", "rate": -1}}, "workload.rate", "greater than or equal to 0"),
    ({"service": {"service_time": "50ms", "bogus": 1}}, "service.bogus", "unknown key"),
    ({"workload": {"kind": "wave", "rate": 1}}, "workload", "unknown value 'wave'"),
    ({"workload": {"rate": 1}}, "workload", "missing 'kind'"),
    ({"service": {"service_time": {"distribution": "gamma"}}}, "service.service_time", "needs 'mean'"),
    ({"service": {"service_time": "fast"}}, "service.service_time.mean", "expected a duration"),
    ({"replicas": {"min": 5, "max": 2}}, "replicas", "must not exceed max"),
    ({"replicas": {"min": 1, "max": 4, "initial": 9}}, "replicas", "must lie in"),
    ({"control": {"sync_period": "-5s"}}, "control.sync_period", "greater than 0"),
    ({"policy": {"target": 0.5}}, "policy", "needs a 'name'"),
    ({"load_balancer": {"algorithm": "fastest"}}, "load_balancer.algorithm", "Input should be"),
    ({"workload": {"kind": "trace", "path": "x.csv", "start": "10m", "end": "5m"}}, "workload", "after 'start'"),
])
def test_errors_name_the_field(patch, where, what):
    message = _error({**BASE, **patch})
    assert f": {where}:" in message or message.startswith(f"scenario: {where}:"), message
    assert what in message


def test_missing_scenario_file(tmp_path):
    with pytest.raises(TidalInputError, match="file not found"):
        load_scenario(tmp_path / "nope.yaml")


def test_yaml_syntax_error_names_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("workload:\n  kind: constant\n  rate: [1, 2\nservice: {}\n")
    with pytest.raises(TidalInputError, match=r"bad.yaml:\d+: invalid YAML"):
        load_scenario(path)


def test_trace_path_resolves_against_scenario_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "s.yaml"
    path.write_text("workload: {kind: trace, path: ../t.csv}\nservice: {service_time: 1s}\n")
    assert load_scenario(path).workload.path == (tmp_path / "sub" / ".." / "t.csv").absolute()
