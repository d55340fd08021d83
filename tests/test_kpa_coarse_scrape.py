"""KPA fed by scrapes coarser than Knative's one second: each sample fills the seconds it covers."""

from __future__ import annotations

from tidal.core.types import MetricsHistory, Observation
from tidal.policy import build_policy


def test_fifteen_second_scrapes_size_like_one_second_scrapes():
    decisions = {}
    for scrape in (1.0, 15.0):
        policy = build_policy({"name": "kpa", "container_concurrency": 10,
                               "container_concurrency_target_percentage": 100})
        history = MetricsHistory()
        t = 0.0
        replicas = 10
        while t < 180.0:
            t += scrape
            history.record(t, {"concurrency": 200.0, "rps": 100.0, "ready_replicas": float(replicas)})
        obs = Observation(time=t, replicas=replicas, ready=replicas, starting=0, pods=(),
                          metrics=history.view(t))
        decisions[scrape] = policy.decide(obs).replicas
    # 200 in flight at 10 per pod: 20 pods either way (not 200/15 from empty seconds).
    assert decisions[1.0] == 20
    assert decisions[15.0] == 20
