"""What a load run recorded: one row per request, and the summary ``tidal load`` prints.

Rows live in typed arrays (a few dozen bytes per request), so an hour at 1,000 req/s stays
small. Times are seconds from the start of the run on the generator's monotonic clock.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: Why a request got no HTTP answer. ``cancelled``: the run was aborted while it was in flight.
ERROR_KINDS = ("timeout", "connect", "disconnect", "payload", "os", "cancelled", "other")
_ERROR_CODE = {kind: i for i, kind in enumerate(ERROR_KINDS)}
NO_ERROR = -1
PENDING = -2.0  # done time of a request still in flight


class RequestLog:
    """Per-request columns: scheduled, sent and answered times, HTTP status, error kind.

    ``status`` is 0 when no answer came (then ``error`` says why). Worker ids from the
    ``X-Tidal-Worker`` header are only counted.
    """

    def __init__(self) -> None:
        self.scheduled = array("d")
        self.sent = array("d")
        self.done = array("d")
        self.status = array("i")
        self.error = array("b")
        self.by_worker: Counter[str] = Counter()
        self.error_examples: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.sent)

    def start(self, scheduled: float, sent: float) -> int:
        """A request leaves; returns its row."""
        self.scheduled.append(scheduled)
        self.sent.append(sent)
        self.done.append(PENDING)
        self.status.append(0)
        self.error.append(NO_ERROR)
        return len(self.sent) - 1

    def answered(self, row: int, done: float, status: int, worker: str | None = None) -> None:
        self.done[row] = done
        self.status[row] = status
        if worker:
            self.by_worker[worker] += 1

    def failed(self, row: int, done: float, kind: str, detail: str = "") -> None:
        self.done[row] = done
        self.error[row] = _ERROR_CODE.get(kind, _ERROR_CODE["other"])
        if detail and kind not in self.error_examples:
            self.error_examples[kind] = detail[:300]

    def arrays(self) -> dict[str, np.ndarray]:
        """The columns as numpy arrays (copies)."""
        return {
            "scheduled": np.frombuffer(self.scheduled, np.float64).copy(),
            "sent": np.frombuffer(self.sent, np.float64).copy(),
            "done": np.frombuffer(self.done, np.float64).copy(),
            "status": np.frombuffer(self.status, np.int32).copy(),
            "error": np.frombuffer(self.error, np.int8).copy(),
        }


@dataclass(frozen=True)
class Percentiles:
    """Latency figures in seconds (``nan`` when there is no sample)."""

    count: int
    mean: float
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: np.ndarray) -> Percentiles:
        if values.size == 0:
            return cls(0, math.nan, math.nan, math.nan, math.nan, math.nan)
        p50, p95, p99 = np.percentile(values, (50, 95, 99))
        return cls(int(values.size), float(values.mean()), float(p50), float(p95), float(p99), float(values.max()))


@dataclass(frozen=True)
class LoadSummary:
    """Whole-run figures.

    ``planned``: requests whose scheduled time came before the run ended (all of the schedule
    unless stopped early; closed loop: equal to ``sent``); ``sent``: requests
    that left; ``responses``: HTTP answers received (any status); ``in_flight``: sent and not
    finished when the run ended (only after an abort). ``latency`` is over 2xx answers,
    ``latency_all`` over every answer; both from the moment the request left. ``send_lag`` is how
    late requests left against their schedule (large values mean the generator or its connection
    cap fell behind, and the server saw a gentler load than planned).
    """

    mode: str
    target: str
    duration_s: float
    span_s: float
    elapsed_s: float
    planned: int
    sent: int
    responses: int
    ok: int
    by_status: dict[str, int]
    errors: dict[str, int]
    in_flight: int
    offered_rps: float
    sent_rps: float
    response_rps: float
    ok_rps: float
    latency: Percentiles
    latency_all: Percentiles
    send_lag: Percentiles
    by_worker: dict[str, int] = field(default_factory=dict)
    error_examples: dict[str, str] = field(default_factory=dict)
    stopped_early: bool = False

    @property
    def lost(self) -> int:
        """Requests sent that got no HTTP answer."""
        return self.sent - self.responses

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def summarize(log: RequestLog, *, mode: str, target: str, duration_s: float, span_s: float, elapsed_s: float,
              planned: int, stopped_early: bool = False) -> LoadSummary:
    """Summarise a finished (or stopped) run.

    ``duration_s`` is the planned sending time, ``span_s`` the sending time actually used (less
    when stopped early), ``elapsed_s`` the time until the last answer.
    """
    a = log.arrays()
    finished = a["done"] != PENDING
    answered = finished & (a["status"] > 0)
    ok = answered & (a["status"] >= 200) & (a["status"] < 300)
    latency = a["done"] - a["sent"]
    statuses = Counter(int(s) for s in a["status"][answered])
    errors = Counter(ERROR_KINDS[int(e)] for e in a["error"][finished & ~answered])
    sent = len(log)
    n_ok = int(ok.sum())
    n_answered = int(answered.sum())
    span = max(span_s, 1e-9)
    return LoadSummary(
        mode=mode,
        target=target,
        duration_s=duration_s,
        span_s=span_s,
        elapsed_s=elapsed_s,
        planned=planned,
        sent=sent,
        responses=n_answered,
        ok=n_ok,
        by_status={str(k): v for k, v in sorted(statuses.items())},
        errors=dict(sorted(errors.items())),
        in_flight=int((~finished).sum()),
        offered_rps=planned / span,
        sent_rps=sent / span,
        response_rps=n_answered / max(elapsed_s, 1e-9),
        ok_rps=n_ok / max(elapsed_s, 1e-9),
        latency=Percentiles.of(latency[ok]),
        latency_all=Percentiles.of(latency[answered]),
        send_lag=Percentiles.of(np.maximum(a["sent"] - a["scheduled"], 0.0)),
        by_worker=dict(sorted(log.by_worker.items())),
        error_examples=dict(log.error_examples),
        stopped_early=stopped_early,
    )


def timeline(log: RequestLog, bin_s: float = 1.0) -> list[dict[str, Any]]:
    """Per-bin counts by send time: sent, ok (2xx), other statuses, errors, and 2xx latency p50/p99."""
    a = log.arrays()
    if len(log) == 0:
        return []
    bins = np.floor(a["sent"] / bin_s).astype(np.int64)
    latency = a["done"] - a["sent"]
    finished = a["done"] != PENDING
    ok = finished & (a["status"] >= 200) & (a["status"] < 300)
    rows = []
    for b in range(int(bins.max()) + 1):
        sel = bins == b
        lat = latency[sel & ok]
        p50, p99 = (np.percentile(lat, (50, 99)) if lat.size else (math.nan, math.nan))
        rows.append(_json_safe({
            "t": b * bin_s,
            "sent": int(sel.sum()),
            "ok": int((sel & ok).sum()),
            "other_status": int((sel & finished & (a["status"] > 0) & ~ok).sum()),
            "errors": int((sel & finished & (a["status"] == 0)).sum()),
            "latency_p50": float(p50),
            "latency_p99": float(p99),
        }))
    return rows
