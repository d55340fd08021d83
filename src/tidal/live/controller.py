"""The live control loop: observe → decide → act, once per sync period.

:meth:`Controller.step` does one round at a given time (tests pass the clock in and never
sleep); :meth:`Controller.run` repeats it on the wall clock. The policy object is the very one
the simulator runs: it sees an :class:`~tidal.core.types.Observation` whose ``time`` is the
wall clock (Unix seconds) and whose metrics window covers what this controller scraped.

Robustness rules (DESIGN §4):

* the metrics source fails → hold the current count, and after more than
  ``fallback.failure_threshold`` consecutive failures go to the fallback count (KEDA);
* the actuator fails → retry with exponential backoff, a bounded number of times; the next
  step tries again since the count still differs;
* every count the controller asks for is clamped to ``[min, max]``;
* dry run decides and logs but never actuates;
* a configuration error is not an outage: a 401/403 from an API (:class:`AuthError`) or, at
  start, bounds the local balancer would refuse raise :class:`TidalInputError` out of
  :meth:`Controller.step` / :meth:`Controller.run` instead of holding forever.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tidal.config.scenario import ControlSpec
from tidal.core.errors import TidalInputError
from tidal.core.types import MetricsHistory, Observation, PodSample
from tidal.live.actuators import Actuator
from tidal.live.faults import Backoff, FallbackRule, Sleep, on_source_failure, retry
from tidal.live.metrics import ControllerMetrics
from tidal.live.sources import MetricsSource, Scrape
from tidal.live.state import SavedState, StateStore, policy_fingerprint
from tidal.policy.base import Policy
from tidal.policy.registry import effective_control

log = logging.getLogger(__name__)
#: One JSON line per decision (the CLI prints this logger's records as they are).
decision_log = logging.getLogger("tidal.live.decisions")

#: Metric names copied into each step record (for logs and the dashboard).
RECORDED_METRICS = ("rps", "concurrency", "utilization", "cpu_utilization", "queue_length", "latency_p50",
                    "latency_p95", "latency_p99", "drops", "ready_replicas")


@dataclass(frozen=True)
class StepRecord:
    """What one step saw and did.

    ``mode`` is ``policy`` (the policy decided), ``hold`` (source failing: keep the count) or
    ``fallback`` (source failing past the threshold). ``current`` is the count in force before
    the step, ``proposed`` the policy's or fallback's count, ``desired`` that count within
    ``[min, max]`` (``None`` when holding an unknown count).
    """

    time: float
    mode: str
    current: int | None
    proposed: int | None
    desired: int | None
    reason: str
    actuated: bool
    dry_run: bool
    ready: int
    starting: int
    draining: int
    source_failures: int
    metrics: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["metrics"] = dict(self.metrics)
        return out


class Controller:
    """Drive one service's replica count with one policy."""

    def __init__(
        self,
        policy: Policy,
        source: MetricsSource,
        actuator: Actuator,
        *,
        min_replicas: int,
        max_replicas: int,
        sync_period: float | None = None,
        fallback: FallbackRule = FallbackRule(),
        retry_backoff: Backoff = Backoff(),
        state_store: StateStore | None = None,
        fingerprint: str = "",
        dry_run: bool = False,
        sleep: Sleep = asyncio.sleep,
        history_len: int = 3600,
        name: str = "controller",
    ) -> None:
        if not 0 <= min_replicas <= max_replicas:
            raise ValueError(f"replica bounds must satisfy 0 <= min <= max, got {min_replicas}, {max_replicas}")
        if sync_period is None:  # the policy's upstream cadence (kpa 2 s, ray_serve 1 s), else 15 s
            sync_period = effective_control(ControlSpec(), policy.name).sync
        if sync_period <= 0:
            raise ValueError(f"sync_period must be > 0, got {sync_period}")
        self.policy = policy
        self.source = source
        self.actuator = actuator
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.sync_period = float(sync_period)
        self.fallback = fallback
        self.retry_backoff = retry_backoff
        self.state_store = state_store
        self.fingerprint = fingerprint
        self.dry_run = dry_run
        self.sleep = sleep
        self.name = name
        self.history = MetricsHistory(retention_s=max(3600.0, 10 * self.sync_period))
        self.records: deque[StepRecord] = deque(maxlen=history_len)
        self.metrics = ControllerMetrics()
        #: The count last known to be in force (actuated, or read from the system).
        self.spec: int | None = None
        self.source_failures = 0
        self.resumed_at: float | None = None
        self._resume()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: Any, *, dry_run: bool | None = None, source: MetricsSource | None = None,
                    actuator: Actuator | None = None, sleep: Sleep = asyncio.sleep) -> Controller:
        """Build from a :class:`~tidal.live.config.ControllerConfig` (sources/actuators injectable)."""
        from tidal.policy import build_policy

        policy = build_policy(config.policy, config.replicas.min, config.replicas.max)
        source = source if source is not None else build_source(config.metrics)
        if actuator is None:
            # The usual local setup gives the actuator the source's token file (often implicitly):
            # a refused token should then name the setting the user actually wrote.
            shared = getattr(config.actuator, "token_file", None) == getattr(config.metrics, "token_file", None)
            actuator = build_actuator(config.actuator, sleep=sleep,
                                      token_field="metrics.token_file" if shared else "actuator.token_file")
        fb = config.fallback
        return cls(
            policy, source, actuator,
            min_replicas=config.replicas.min, max_replicas=config.replicas.max, sync_period=config.effective_sync_period,
            fallback=FallbackRule(fb.failure_threshold, None if fb.replicas == "hold" else fb.replicas, fb.behavior),
            retry_backoff=Backoff(config.retry.attempts, config.retry.backoff, 2.0, config.retry.max_backoff),
            state_store=None if config.state_file is None else StateStore(config.state_file),
            fingerprint=policy_fingerprint(config.policy),
            dry_run=config.dry_run if dry_run is None else dry_run,
            sleep=sleep,
            history_len=config.dashboard.history if config.dashboard is not None else 3600,
            name=config.name,
        )

    def _resume(self) -> None:
        if self.state_store is None:
            return
        saved = self.state_store.load(self.fingerprint)
        if saved is None:
            return
        try:
            self.policy.load_state_dict(dict(saved.policy_state))
        except (ValueError, KeyError, TypeError) as exc:
            raise TidalInputError(f"state_file {self.state_store.path}",
                                  f"policy state does not load ({exc}); move the file away to start fresh") from None
        self.spec = saved.spec
        self.source_failures = saved.source_failures
        self.resumed_at = saved.time
        log.info("resumed from %s (saved at %.3f, spec %s)", self.state_store.path, saved.time, saved.spec)

    # ------------------------------------------------------------------ one step
    async def step(self, now: float) -> StepRecord:
        """Observe, decide and act once at time ``now`` (Unix seconds in live use)."""
        started = time.perf_counter()
        scrape: Scrape | None = None
        error: str | None = None
        try:
            scrape = await self.source.scrape(now)
        except TidalInputError:
            raise  # a refused token: holding would hide it forever
        except Exception as exc:  # noqa: BLE001 — the loop survives any source failure
            error = _one_line(exc)
            self.source_failures += 1
            self.metrics.source_errors.inc()
            log.warning("metrics source failed (%d in a row): %s", self.source_failures, error)
        else:
            self.source_failures = 0

        current = await self._current(scrape)
        pods = await self._pods(scrape)
        ready, starting, draining = _counts(pods, scrape, current)
        values: Mapping[str, float] = {}
        if scrape is not None:
            values = scrape.metrics
            self.history.record(now, values)
            replicas = current if current is not None else ready + starting
            obs = Observation(time=now, replicas=replicas, ready=ready, starting=starting, pods=tuple(pods or ()),
                              metrics=self.history.view(now))
            try:
                decision = self.policy.decide(obs)
                proposed, mode, reason = decision.replicas, "policy", decision.reason or self.policy.describe()
            except Exception as exc:  # noqa: BLE001 — a policy bug must not stop the loop; hold instead
                log.exception("policy %s failed; holding", self.policy.describe())
                proposed, mode, reason = current, "hold", f"policy error ({_one_line(exc)}): hold"
        else:
            fb = on_source_failure(self.fallback, self.source_failures, current, error or "")
            proposed, mode, reason = fb.replicas, fb.mode, fb.reason

        desired = None if proposed is None else self.clamp(proposed)
        if desired is not None and desired != proposed:
            reason = f"{reason} (clamped to {desired})"
        actuated, act_error = False, None
        if desired is not None and desired != current and not self.dry_run:
            try:
                await retry(lambda: self.actuator.scale(desired), self.retry_backoff, self.sleep,
                            on_error=self._actuation_failed)
                actuated = True
                self.spec = desired
            except TidalInputError:
                raise  # a refused token: no later step can succeed either
            except Exception as exc:  # noqa: BLE001 — retried next step: the count still differs
                act_error = _one_line(exc)
                log.error("actuation to %d failed after %d attempts: %s", desired, self.retry_backoff.attempts,
                          act_error)
        elif current is not None and not self.dry_run:
            self.spec = current

        record = StepRecord(
            time=now, mode=mode, current=current, proposed=proposed, desired=desired, reason=reason,
            actuated=actuated, dry_run=self.dry_run, ready=ready, starting=starting, draining=draining,
            source_failures=self.source_failures,
            metrics={k: float(values[k]) for k in RECORDED_METRICS if k in values},
            error=act_error or error,
        )
        self.records.append(record)
        self._persist(now)
        self.metrics.decisions.labels(mode=mode).inc()
        if desired is not None:
            self.metrics.desired.set(desired)
        self.metrics.decision_seconds.observe(time.perf_counter() - started)
        decision_log.info(json.dumps({"event": "decision", "controller": self.name, **record.as_dict()}))
        return record

    def clamp(self, replicas: int) -> int:
        """``replicas`` within ``[min, max]``."""
        return min(max(int(replicas), self.min_replicas), self.max_replicas)

    async def _current(self, scrape: Scrape | None) -> int | None:
        """The count in force: as the data plane reports it, else as the actuator reads it, else ours."""
        if scrape is not None and scrape.replicas is not None:
            return scrape.replicas
        try:
            value = await self.actuator.current()
        except TidalInputError:
            raise
        except Exception as exc:  # noqa: BLE001
            log.debug("cannot read the current count: %s", _one_line(exc))
            value = None
        return value if value is not None else self.spec

    async def _pods(self, scrape: Scrape | None) -> Sequence[PodSample] | None:
        if scrape is not None and scrape.pods is not None:
            return scrape.pods
        lister: Callable[[], Any] | None = getattr(self.actuator, "pods", None)
        if lister is None:
            return None
        try:
            return await lister()
        except Exception as exc:  # noqa: BLE001 — pods are optional context for the policy
            log.warning("cannot list pods: %s", _one_line(exc))
            return None

    def _actuation_failed(self, attempt: int, exc: BaseException) -> None:
        self.metrics.actuation_errors.inc()
        log.warning("actuation attempt %d/%d failed: %s", attempt, self.retry_backoff.attempts, _one_line(exc))

    def _persist(self, now: float) -> None:
        if self.state_store is None:
            return
        try:
            self.state_store.save(SavedState(self.fingerprint, now, self.spec, self.source_failures,
                                             self.policy.state_dict()))
        except (OSError, TypeError, ValueError) as exc:
            # The decision stands; a later step writes again.
            log.error("cannot save controller state to %s: %s", self.state_store.path, exc)

    # ------------------------------------------------------------------ loop
    async def run(self, *, steps: int | None = None, stop: asyncio.Event | None = None,
                  clock: Callable[[], float] = time.time) -> int:
        """Step every ``sync_period`` on ``clock`` until ``stop`` is set or ``steps`` are done.

        Steps start on a fixed grid; a step that overruns its period is followed at once by the
        next, without a burst of catch-up steps. Returns the number of steps taken. First,
        :meth:`check_bounds` (a configuration error raises before any step).
        """
        await self.check_bounds()
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        done = 0
        while not stop.is_set() and (steps is None or done < steps):
            await self.step(clock())
            done += 1
            if steps is not None and done >= steps:
                break
            next_at += self.sync_period
            delay = next_at - loop.time()
            if delay < 0:
                next_at = loop.time()
                delay = 0.0
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass
        return done

    async def check_bounds(self) -> None:
        """Fail at start if the actuator's own bounds would refuse counts within ours.

        The local balancer reports its ``[min, max]`` (``tidal serve --min/--max``) and answers 400
        to any other count, so a controller allowed to ask for more (or fewer) would fail its
        actuations for as long as the policy wants those counts. Raises :class:`TidalInputError`
        naming ``replicas``. An actuator that reports no bounds, or cannot be reached yet, is not
        checked (the loop copes with a balancer that comes up later); a refused token raises.
        """
        bounds = getattr(self.actuator, "bounds", None)
        if bounds is None:
            return
        try:
            got = await bounds()
        except TidalInputError:
            raise
        except Exception as exc:  # noqa: BLE001 — not up yet: the loop holds and retries as usual
            log.warning("cannot check the replica bounds of %s now: %s", _describe(self.actuator), _one_line(exc))
            return
        if got is None:
            return
        lo, hi = got
        if self.min_replicas < lo or self.max_replicas > hi:
            raise TidalInputError(
                "replicas", f"min..max = {self.min_replicas}..{self.max_replicas} is not within the bounds of "
                f"{_describe(self.actuator)} ({lo}..{hi}), which refuses any other count; narrow replicas "
                f"or start tidal serve with --min {self.min_replicas} --max {self.max_replicas}")

    async def aclose(self) -> None:
        """Close the source's and actuator's connections."""
        for part in (self.source, self.actuator):
            close = getattr(part, "aclose", None)
            if close is not None:
                try:
                    await close()
                except Exception as exc:  # noqa: BLE001
                    log.debug("closing %r: %s", part, exc)

    def describe(self) -> dict[str, Any]:
        """Static facts for the dashboard header."""
        return {
            "name": self.name,
            "policy": self.policy.describe(),
            "min": self.min_replicas,
            "max": self.max_replicas,
            "sync_period": self.sync_period,
            "dry_run": self.dry_run,
            "source": _describe(self.source),
            "actuator": _describe(self.actuator),
            "failure_threshold": self.fallback.failure_threshold,
            "fallback": "hold" if self.fallback.replicas is None else self.fallback.replicas,
        }


def _counts(pods: Sequence[PodSample] | None, scrape: Scrape | None, current: int | None) -> tuple[int, int, int]:
    """(ready, starting, draining) from the pods, else from the ``ready_replicas`` metric."""
    if pods is not None:
        ready = sum(1 for p in pods if p.ready)
        draining = sum(1 for p in pods if p.draining)
        return ready, len(pods) - ready - draining, draining
    reported = None if scrape is None else scrape.metrics.get("ready_replicas")
    ready = int(round(reported)) if reported is not None else (current or 0)
    return ready, max(0, (current or 0) - ready), 0


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " ")
    return text or type(exc).__name__


def _describe(part: Any) -> str:
    describe = getattr(part, "describe", None)
    return describe() if callable(describe) else type(part).__name__


def build_source(spec: Any) -> MetricsSource:
    """A metrics source from its config block (reads the token file now: errors name the field)."""
    from tidal.live.config import BalancerSourceSpec, read_token
    from tidal.live.sources import BalancerSource, PrometheusSource

    token = read_token(spec.token_file, "metrics.token_file")
    if isinstance(spec, BalancerSourceSpec):
        return BalancerSource(spec.url, token, spec.timeout)
    return PrometheusSource(spec.url, spec.queries, token, spec.timeout)


def build_actuator(spec: Any, sleep: Sleep = asyncio.sleep, token_field: str = "actuator.token_file") -> Actuator:
    """An actuator from its config block (``token_field``: the setting a refused token is blamed on)."""
    from tidal.live.actuators import KubernetesActuator, LocalActuator
    from tidal.live.config import LocalActuatorSpec, read_token

    if isinstance(spec, LocalActuatorSpec):
        return LocalActuator(spec.url, read_token(spec.token_file, "actuator.token_file"), spec.timeout,
                             token_field=token_field)
    try:
        return KubernetesActuator.from_kubeconfig(
            spec.namespace, spec.deployment, None if spec.kubeconfig is None else str(spec.kubeconfig), spec.context,
            timeout=spec.timeout, conflict_retries=spec.conflict_retries, sleep=sleep, list_pods=spec.pods)
    except Exception as exc:  # noqa: BLE001 — missing/invalid kubeconfig is a configuration problem
        raise TidalInputError("actuator.kubeconfig", f"cannot load a Kubernetes configuration: {_one_line(exc)}") from None
