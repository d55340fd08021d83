"""Policy state persisted after every decision, atomically, and resumed by a restarted controller."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from tidal.core.errors import TidalInputError
from tidal.live import Controller, StateStore, controller_config_from_dict
from tidal.live.state import SavedState
from tidal.live.testing import RecordingActuator, ScriptedSource

POLICY = {"name": "target_utilization", "target": 0.5, "window": 0, "stabilization": {"down_window": "5m"}}


def config(state_file, policy=POLICY, **extra):
    data = {
        "policy": policy,
        "replicas": {"min": 1, "max": 20},
        "sync_period": "15s",
        "metrics": {"source": "balancer", "url": "http://127.0.0.1:9"},
        "state_file": str(state_file),
        **extra,
    }
    return controller_config_from_dict(data)


def controller(cfg, utilization: float, current: int):
    source = ScriptedSource({"utilization": utilization, "ready_replicas": current}, replicas=current)
    return Controller.from_config(cfg, source=source, actuator=RecordingActuator(replicas=current))


def test_restarted_controller_keeps_the_stabilization_history(tmp_path):
    state = tmp_path / "state" / "controller.json"
    cfg = config(state)
    first = controller(cfg, utilization=1.5, current=2)  # 2 * 1.5 / 0.5 = 6
    assert asyncio.run(first.step(1000.0)).desired == 6
    assert state.exists()

    # A minute later load drops: raw recommendation 1, but 6 was recommended within the 5-minute
    # down window, so a resumed controller holds 6 ...
    resumed = controller(cfg, utilization=0.05, current=6)
    assert resumed.resumed_at == 1000.0 and resumed.spec == 6
    record = asyncio.run(resumed.step(1060.0))
    assert (record.proposed, record.desired) == (6, 6) and "stabilized" in record.reason

    # ... whereas a controller that forgot (no state file) scales down at once.
    forgetful = controller(config(tmp_path / "other.json"), utilization=0.05, current=6)
    assert asyncio.run(forgetful.step(1060.0)).desired == 1

    # After the window, the resumed controller scales down too.
    assert asyncio.run(resumed.step(1000.0 + 301.0)).desired == 1


def test_state_file_is_json_written_atomically_after_each_decision(tmp_path):
    state = tmp_path / "controller.json"
    c = controller(config(state), utilization=1.0, current=2)

    async def go():
        for t in (10.0, 25.0, 40.0):
            await c.step(t)

    asyncio.run(go())
    doc = json.loads(state.read_text())
    assert doc["format"] == "tidal-controller-state/1" and doc["time"] == 40.0 and doc["spec"] == 4
    assert [entry[0] for entry in doc["policy_state"]["inner"]["history"]] == [10.0, 25.0, 40.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["controller.json"], "no temporary files left behind"


def test_a_failed_write_keeps_the_previous_state(tmp_path, monkeypatch):
    path = tmp_path / "s.json"
    store = StateStore(path)
    store.save(SavedState("abc", 1.0, 3, 0, {"x": 1}))

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        store.save(SavedState("abc", 2.0, 4, 0, {"x": 2}))
    monkeypatch.undo()
    assert store.load("abc").time == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_source_failure_count_survives_a_restart(tmp_path):
    cfg = config(tmp_path / "s.json", fallback={"failure_threshold": 2, "replicas": 5})
    first = controller(cfg, 0.5, 2)
    first.source.fail = True

    async def fail_twice():
        return [await first.step(t) for t in (1.0, 2.0)]

    assert [r.mode for r in asyncio.run(fail_twice())] == ["hold", "hold"]
    second = controller(cfg, 0.5, 2)
    second.source.fail = True
    record = asyncio.run(second.step(3.0))
    assert (record.mode, record.source_failures, record.desired) == ("fallback", 3, 5)


def test_state_of_another_policy_is_ignored(tmp_path, caplog):
    path = tmp_path / "s.json"
    first = controller(config(path), 1.5, 2)
    asyncio.run(first.step(1.0))
    other = controller(config(path, policy={"name": "static", "replicas": 3}), 1.5, 2)
    assert other.resumed_at is None and other.spec is None
    assert "another policy configuration" in caplog.text


def test_a_corrupt_state_file_is_an_input_error(tmp_path):
    path = tmp_path / "s.json"
    path.write_text("{not json")
    with pytest.raises(TidalInputError, match="state_file") as err:
        controller(config(path), 1.0, 1)
    assert "not a tidal controller state file" in str(err.value)
    path.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(TidalInputError, match="state_file"):
        controller(config(path), 1.0, 1)
