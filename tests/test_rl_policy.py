"""The ``rl`` policy: features, the Q model's files, the registry, and simulator/env agreement."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

import tidal.policy.rl_policy as rl_policy  # registers "rl"
from tidal.config import scenario_from_dict
from tidal.core.errors import TidalInputError
from tidal.core.types import MetricsHistory, Observation, PodSample
from tidal.policy import build_policy
from tidal.policy.rl_policy import QPolicy
from tidal.rl.features import (
    DEFAULT_DISCRETIZER,
    FEATURE_HIGH,
    FEATURE_NAMES,
    Discretizer,
    FeatureSpec,
    extract,
)
from tidal.rl.qtable import QModel, load_model

SRC = Path(__file__).resolve().parents[1] / "src" / "tidal"
SPEC = FeatureSpec(max_replicas=10, replica_capacity=40.0, slo_latency=0.5, concurrency=4, window=10.0)


def observe(*, rps=80.0, replicas=2, ready=2, starting=0, p99=0.2, queue=0.0, utilization=0.5, drops=0.0,
            time=100.0):
    history = MetricsHistory()
    for t in (80.0, 90.0, 100.0):
        history.record(t, {"rps": rps, "utilization": utilization, "queue_length": queue, "latency_p99": p99,
                           "drops": drops, "ready_replicas": ready})
    pods = [PodSample(id=i, ready=i < ready, started_at=0.0, ready_at=0.0 if i < ready else None, in_flight=0)
            for i in range(ready + starting)]
    return Observation(time=time, replicas=replicas, ready=ready, starting=starting, pods=pods,
                       metrics=history.view(time))


def band_model(features: FeatureSpec = SPEC) -> QModel:
    """A hand-made table: +2 above load 1.2, +1 from 0.9, -1 below 0.45, else hold; hold while starting."""
    disc = DEFAULT_DISCRETIZER
    actions = (-2, -1, 0, 1, 2)
    q = np.zeros((disc.n_states, len(actions)))
    edges = disc.edges[0]
    for load_bin in range(len(edges) + 1):
        lo = 0.0 if load_bin == 0 else edges[load_bin - 1]
        best = 4 if lo >= 1.2 else 3 if lo >= 0.9 else 1 if lo < 0.45 else 2
        q[load_bin * 2 + 0, best] = 1.0  # nothing starting
        q[load_bin * 2 + 1, 2 if lo < 1.2 else best] = 1.0  # replicas starting: wait unless far behind
    return QModel(q, actions, features, disc, {"made": "by hand"})


# --------------------------------------------------------------------------- layering


@pytest.mark.parametrize("path", ["rl/features.py", "rl/qtable.py", "policy/rl_policy.py"])
def test_policy_side_modules_import_neither_sim_nor_gymnasium(path):
    tree = ast.parse((SRC / path).read_text())
    modules = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    modules += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    allowed = ("tidal.core", "tidal.config", "tidal.policy", "tidal.rl.features", "tidal.rl.qtable")
    for module in modules:
        if module.startswith("tidal"):
            assert module.startswith(allowed), f"{path} imports {module}"
        assert not module.startswith(("gymnasium", "tidal.sim")), f"{path} imports {module}"
    if path == "rl/features.py":
        assert all(not m.startswith("tidal") or m.startswith("tidal.core") for m in modules)


# --------------------------------------------------------------------------- features


def test_features_are_normalised_and_clipped():
    f = dict(zip(FEATURE_NAMES, extract(observe(rps=80.0, replicas=2, p99=0.25, queue=4.0, starting=1), SPEC),
                 strict=True))
    assert f["demand"] == pytest.approx(80 / 400)
    assert f["load"] == pytest.approx(80 / 80)
    assert f["utilization"] == pytest.approx(0.5)
    assert f["queue"] == pytest.approx(4 / (2 * 4))
    assert f["p99"] == pytest.approx(0.5)
    assert f["ready"] == pytest.approx(0.2) and f["starting"] == pytest.approx(0.1) and f["spec"] == pytest.approx(0.2)
    huge = extract(observe(rps=1e6, replicas=0, ready=0, p99=100.0, queue=1e6, drops=2e6), SPEC)
    assert huge.dtype == np.float32
    assert (huge <= FEATURE_HIGH).all() and (huge >= 0).all()
    assert huge[FEATURE_NAMES.index("load")] == FEATURE_HIGH[FEATURE_NAMES.index("load")]
    empty = Observation(time=0.0, replicas=1, ready=1, starting=0, pods=[], metrics=MetricsHistory().view(0.0))
    assert (extract(empty, SPEC)[:6] == 0).all()  # no metrics yet: zeros, not NaN


def test_discretizer_indexes_mixed_radix_and_validates():
    disc = Discretizer(("load", "starting"), ((0.5, 1.0), (1e-6,)))
    assert disc.sizes == (3, 2) and disc.n_states == 6
    vec = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
    vec[FEATURE_NAMES.index("load")] = 1.0  # on an edge: the upper bin
    vec[FEATURE_NAMES.index("starting")] = 0.1
    assert disc.index(vec) == 2 * 2 + 1
    assert Discretizer.from_dict(json.loads(json.dumps(disc.to_dict()))) == disc
    with pytest.raises(ValueError, match="unknown feature 'lod'"):
        Discretizer(("lod",), ((1.0,),))
    with pytest.raises(ValueError, match="strictly increasing"):
        Discretizer(("load",), ((1.0, 0.5),))
    with pytest.raises(ValueError, match="replica_capacity"):
        FeatureSpec(max_replicas=3, replica_capacity=0.0, slo_latency=1.0)


# --------------------------------------------------------------------------- the policy


def test_policy_applies_the_greedy_delta_and_is_stateless():
    policy = QPolicy(band_model())
    assert policy.decide(observe(rps=60.0, replicas=2)).replicas == 2  # load 0.75: hold
    assert policy.decide(observe(rps=76.0, replicas=2)).replicas == 3  # load 0.95: +1
    assert policy.decide(observe(rps=200.0, replicas=2)).replicas == 4  # load 2.5: +2
    assert policy.decide(observe(rps=10.0, replicas=2)).replicas == 1  # load 0.125: -1
    assert policy.decide(observe(rps=76.0, replicas=2, starting=1)).replicas == 2  # wait for the cold start
    assert policy.decide(observe(rps=10.0, replicas=0, ready=0)).replicas == 2  # no replica at all: +2
    decision = policy.decide(observe(rps=76.0))
    assert "rl state" in decision.reason and "+1" in decision.reason
    assert policy.state_dict() == {}
    policy.load_state_dict({})


def test_untrained_model_holds():
    model = QModel.untrained(SPEC)
    for rps in (0.0, 10.0, 80.0, 1000.0):
        assert QPolicy(model).decide(observe(rps=rps, replicas=3, ready=3)).replicas == 3


def test_ties_prefer_the_smallest_change_then_up():
    q = np.zeros((DEFAULT_DISCRETIZER.n_states, 5))
    q[:, [0, 1, 3, 4]] = 1.0  # -2, -1, +1, +2 tie above hold
    assert QModel(q, (-2, -1, 0, 1, 2), SPEC).greedy(0) == 3
    q[:, 3] = 0.0
    assert QModel(q, (-2, -1, 0, 1, 2), SPEC).greedy(0) == 1


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_save_load_round_trip_gives_identical_actions(tmp_path, suffix):
    rng = np.random.default_rng(0)
    model = QModel(rng.normal(size=(DEFAULT_DISCRETIZER.n_states, 5)), (-2, -1, 0, 1, 2), SPEC,
                   info={"episodes": 3, "nan": float("nan")})
    path = QPolicy(model).save(tmp_path / f"q{suffix}")
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.q, model.q)
    assert loaded.actions == model.actions and loaded.features == model.features
    assert loaded.discretizer == model.discretizer
    assert loaded.info == {"episodes": 3, "nan": None}
    vectors = rng.uniform(0, FEATURE_HIGH, size=(500, len(FEATURE_HIGH))).astype(np.float32)
    assert [model.act(v) for v in vectors] == [loaded.act(v) for v in vectors]
    observations = [observe(rps=r, replicas=n, ready=n) for r in (0, 20, 70, 150, 400) for n in (1, 3, 8)]
    a, b = QPolicy(model), build_policy({"name": "rl", "model": str(path)})
    assert [a.decide(o).replicas for o in observations] == [b.decide(o).replicas for o in observations]
    assert b.describe() == f"rl(q{suffix})"
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:  # plain arrays, no pickled objects
            assert sorted(npz.files) == ["meta", "q"]


def test_save_rejects_other_suffixes(tmp_path):
    with pytest.raises(ValueError, match=r"\.npz or \.json"):
        band_model().save(tmp_path / "q.pkl")


@pytest.mark.parametrize("case", ["missing", "directory", "garbage-npz", "garbage-json", "wrong-arrays",
                                  "wrong-format", "wrong-shape", "json-list"])
def test_missing_or_corrupt_model_file_names_the_path(tmp_path, case):
    model = band_model()
    path = tmp_path / ("q.json" if "json" in case or case == "wrong-format" else "q.npz")
    if case == "directory":
        path.mkdir()
    elif case == "garbage-npz":
        path.write_bytes(b"\x00not a zip archive")
    elif case == "garbage-json":
        path.write_text("{not json")
    elif case == "json-list":
        path.write_text("[1, 2]")
    elif case == "wrong-arrays":
        np.savez(path, table=np.zeros(3))
    elif case == "wrong-format":
        path.write_text(json.dumps({**model.to_dict(), "format": "other/9"}))
    elif case == "wrong-shape":
        data = model.to_dict()
        data["q"] = data["q"][:-1]
        path = tmp_path / "q.json"
        path.write_text(json.dumps(data))
    with pytest.raises(TidalInputError) as info:
        load_model(path)
    assert str(path) in str(info.value)
    with pytest.raises(TidalInputError) as info:
        build_policy({"name": "rl", "model": str(path)})
    assert str(path) in str(info.value)


def test_config_errors_name_the_field():
    with pytest.raises(TidalInputError, match=r"policy\.model: required field missing"):
        build_policy({"name": "rl"})
    with pytest.raises(TidalInputError, match=r"policy\.greedy: unknown key"):
        build_policy({"name": "rl", "model": "q.npz", "greedy": True})
    assert rl_policy.RLConfig(model="x.npz").model == Path("x.npz")


def test_policy_in_the_simulator_matches_a_greedy_rollout_of_the_env(tmp_path):
    """The same table gives the same decisions through tidal.sim (registry, Bounded) and the env."""
    from test_rl_env import STEP_LOAD

    from tidal.rl.env import ScalingEnv, scenario_features
    from tidal.sim import simulate

    scenario = scenario_from_dict(STEP_LOAD)
    path = band_model(scenario_features(scenario)).save(tmp_path / "band.npz")
    scenario = scenario_from_dict({**STEP_LOAD, "policy": {"name": "rl", "model": str(path)}})
    result = simulate(scenario)
    env = ScalingEnv(scenario)
    model = load_model(path)
    obs, _ = env.reset(options={"sim_seed": scenario.seed})
    decided, cost, done = [], 0.0, False
    while not done:
        obs, _, _, done, info = env.step(model.act(obs))
        decided.append(info["replicas"])
        cost += info["cost"]
    assert decided == result.ticks.column("desired").to_pylist()
    assert cost == pytest.approx(result.summary.cost, rel=1e-12)
    assert max(decided) > 2  # it did scale up for the step load
