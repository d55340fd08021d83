"""Does a Ray cluster answer at this address? Run as ``python -m tidal.experiment._rayprobe ADDRESS TIMEOUT_S``.

Ray's own connect cannot be bounded: ``ray.init`` retries a GCS that does not answer 20 times,
about 40 s each, and a connection stuck in Ray's C++ client cannot be cancelled from Python. So
:class:`tidal.experiment.backends.RayBackend` asks in a child process, which it can always kill,
and whose stderr (Ray's C++ client logs every retry there) it keeps out of the user's terminal.

Prints one JSON line: ``{"ok": true}``, ``{"ok": false, "reason": "..."}``, or ``{"ok": null,
"reason": "..."}`` when this Ray has no API to ask with (the caller then lets ``ray.init`` try).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from typing import Any


def _gcs(address: str) -> Callable[[], object] | None:
    """A call that succeeds only if a Ray GCS answers at ``HOST:PORT`` (it fetches the cluster id)."""
    try:
        from ray._raylet import GcsClient  # what `ray status` and the autoscaler use
    except ImportError:
        return None
    return lambda: GcsClient(address=address).cluster_id


def _ray_client(address: str, timeout_s: float) -> Callable[[], object] | None:
    """A call that succeeds only if a gRPC server answers at ``ray://HOST:PORT`` (Ray Client speaks gRPC)."""
    try:
        import grpc  # Ray Client's own dependency (ray[client])
    except ImportError:
        return None
    target = address.removeprefix("ray://").rstrip("/")

    def check() -> None:
        with grpc.insecure_channel(target) as channel:
            grpc.channel_ready_future(channel).result(timeout=timeout_s)

    return check


def probe(address: str, timeout_s: float) -> dict[str, Any]:
    """``{"ok": ...}`` for ``address``, within ``timeout_s`` seconds (not counting ``import ray``)."""
    call = _ray_client(address, timeout_s) if address.startswith("ray://") else _gcs(address)
    if call is None:
        return {"ok": None, "reason": "this Ray version offers no way to ask"}
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            call()
            outcome["ok"] = True
        except BaseException as exc:  # noqa: BLE001 - any failure means "not a Ray cluster"
            text = " ".join(str(exc).split())
            outcome.update(ok=False, reason=text or type(exc).__name__)

    # A daemon thread: a call stuck in Ray's C++ client is abandoned at the deadline, not joined.
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not outcome:
        return {"ok": False, "reason": f"no answer from a Ray cluster within {timeout_s:g} s"}
    return outcome


def main(argv: list[str]) -> None:
    address, timeout_s = argv[0], float(argv[1])
    print(json.dumps(probe(address, timeout_s)), flush=True)
    # Skip interpreter shutdown: it would wait on Ray's threads, or a call still stuck in its client.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
