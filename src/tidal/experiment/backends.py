"""Where variants run: in this process, on a local process pool, or on a Dask or Ray cluster.

Every backend offers the same few calls — :meth:`submit` one task for a future-like handle,
:meth:`wait_any` of several, :meth:`result` — so a sweep or a tuning loop is written once.
Results do not depend on the backend: a variant carries everything its run needs (see
:mod:`tidal.experiment.variant`).

Clusters are reached at an existing address; an address that does not answer, or answers in
another protocol (an HTTP server), is a :class:`TidalInputError` raised *before* anything runs,
within a deadline (Dask's handshake has none, and Ray would otherwise retry for minutes).
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any, Protocol

from tidal.core.errors import TidalInputError

log = logging.getLogger(__name__)

#: Seconds to wait for a cluster's scheduler to answer before calling it unreachable.
CONNECT_TIMEOUT_S = 10.0


class Backend(Protocol):
    """What a sweep or a tuning loop needs from an executor."""

    #: Tasks worth keeping in flight at once; ``None``: submit everything, the cluster queues.
    window: int | None

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> Any:
        """Start ``fn(arg)``; return a handle for :meth:`wait_any` and :meth:`result`."""

    def wait_any(self, handles: Collection[Any]) -> tuple[list[Any], list[Any]]:
        """Block until at least one task finished; return (finished, still running)."""

    def result(self, handle: Any) -> Any:
        """The finished task's return value (re-raises its exception)."""

    def cancel(self, handles: Collection[Any]) -> None:
        """Drop tasks not started yet (best effort)."""

    def close(self, abort: bool = False) -> None:
        """Release workers; ``abort`` stops running tasks instead of waiting for them."""


# --------------------------------------------------------------------------- local


class LocalBackend:
    """``jobs == 1``: run in this process, on ``submit``. Otherwise a spawn-context process pool.

    Spawn, not fork: the parent may hold numba's threads and open files, and spawn behaves the
    same on every platform. Workers ignore Ctrl-C so the parent alone decides what stops: on
    :meth:`close` with ``abort`` it terminates them rather than waiting for a long run.
    """

    def __init__(self, jobs: int) -> None:
        if jobs < 1:
            raise TidalInputError("--jobs", f"must be >= 1, got {jobs}")
        self.window = jobs
        self._pool: ProcessPoolExecutor | None = None

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> Future:
        if self.window == 1:
            # Run now: exceptions (KeyboardInterrupt included) surface at the caller, like a loop.
            future: Future = Future()
            future.set_result(fn(arg))
            return future
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.window, mp_context=multiprocessing.get_context("spawn"), initializer=_ignore_sigint,
            )
        return self._pool.submit(fn, arg)

    def wait_any(self, handles: Collection[Future]) -> tuple[list[Future], list[Future]]:
        done, pending = wait(handles, return_when=FIRST_COMPLETED)
        return list(done), list(pending)

    def result(self, handle: Future) -> Any:
        return handle.result()

    def cancel(self, handles: Collection[Future]) -> None:
        for handle in handles:
            handle.cancel()

    def close(self, abort: bool = False) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if not abort:
            pool.shutdown(wait=True)
            return
        terminate_pool(pool)


def terminate_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel queued work and stop the running workers now (a simulation can take minutes)."""
    terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        terminate()
        return
    # Before 3.14 there is no public way; shutdown() forgets the processes, so take them first.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# --------------------------------------------------------------------------- Dask


class DaskBackend:
    """An existing Dask cluster, reached through its scheduler address (``tcp://host:8786``)."""

    def __init__(self, address: str, timeout_s: float | None = None) -> None:
        # Looked up now, not at import, so that a caller (or a test) can change the module default.
        timeout_s = CONNECT_TIMEOUT_S if timeout_s is None else timeout_s
        try:
            from distributed import Client
        except ImportError:
            missing = "needs the 'distributed' package: pip install 'tidal[sweep-dask]'"
            raise TidalInputError("--dask", missing) from None
        if address.startswith("tcp://") or "://" not in address:
            # A refused TCP connection is known at once; Client() would wait out its timeout.
            host, port = _host_port(address, 8786, "--dask")
            check_reachable("--dask", "a Dask scheduler", address, host, port, timeout_s)
        # Client(timeout=...) bounds the TCP connect but not Dask's handshake that follows: a port
        # that accepts and never answers in Dask's protocol (an HTTP server) would hang it for good.
        _dask_handshake(address, timeout_s)
        try:
            self._client = Client(address, timeout=timeout_s, set_as_default=False)
        except Exception as exc:  # OSError on timeouts, ValueError on a bad scheme, anything from junk
            raise TidalInputError("--dask", f"{address!r} is not a Dask scheduler ({_reason(exc)})") from None
        self.window = None
        log.info("Dask cluster at %s", address)

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> Any:
        # pure=False: identical variants are separate runs, as on every other backend.
        return self._client.submit(fn, arg, pure=False)

    def wait_any(self, handles: Collection[Any]) -> tuple[list[Any], list[Any]]:
        from distributed import wait as dask_wait

        with self._client.as_current():  # wait() looks up the client; ours is not the default
            done, pending = dask_wait(list(handles), return_when="FIRST_COMPLETED")
        return list(done), list(pending)

    def result(self, handle: Any) -> Any:
        return handle.result()

    def cancel(self, handles: Collection[Any]) -> None:
        if handles:
            self._client.cancel(list(handles))

    def close(self, abort: bool = False) -> None:
        self._client.close()


# --------------------------------------------------------------------------- Ray


class RayBackend:
    """An existing Ray cluster: ``HOST:PORT`` (the head's GCS) or ``ray://HOST:PORT`` (Ray Client).

    A process already connected to that cluster (``ray.init`` earlier, as in a notebook) keeps
    its connection, and it is left open on :meth:`close`.
    """

    def __init__(self, address: str, timeout_s: float | None = None) -> None:
        timeout_s = CONNECT_TIMEOUT_S if timeout_s is None else timeout_s
        try:
            import ray
        except ImportError:
            raise TidalInputError("--ray", "needs the 'ray' package: pip install 'tidal[sweep-ray]'") from None
        self._ray = ray
        self._owned = False
        if ray.is_initialized():
            current = ray.get_runtime_context().gcs_address
            # Compare ports only: the session reports the node's IP where the user may give a name.
            if _host_port(current, 6379, "--ray")[1] != _host_port(address, 6379, "--ray")[1]:
                raise TidalInputError("--ray", f"this process is already connected to the Ray cluster at {current}")
        else:
            host, port = _host_port(address, 10001 if address.startswith("ray://") else 6379, "--ray")
            check_reachable("--ray", "a Ray cluster", address, host, port, timeout_s)
            # ray.init retries a GCS that does not answer 20 times, about 40 s each, with no option
            # to shorten it; so first ask the port a question only a Ray cluster answers, in time.
            _ray_probe(address, timeout_s)
            try:
                ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
            except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError, ...
                raise TidalInputError("--ray", f"cannot connect to a Ray cluster at {address!r}: {exc}") from None
            self._owned = True
        self.window = None
        self._remote: dict[Callable, Any] = {}

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> Any:
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self._ray.remote(num_cpus=1)(fn)
        return remote.remote(arg)

    def wait_any(self, handles: Collection[Any]) -> tuple[list[Any], list[Any]]:
        done, pending = self._ray.wait(list(handles), num_returns=1)
        return list(done), list(pending)

    def result(self, handle: Any) -> Any:
        return self._ray.get(handle)

    def cancel(self, handles: Collection[Any]) -> None:
        for handle in handles:
            self._ray.cancel(handle)

    def close(self, abort: bool = False) -> None:
        if self._owned:
            self._ray.shutdown()


# --------------------------------------------------------------------------- helpers


def imap_unordered(backend: Backend, fn: Callable[[Any], Any], args: Sequence[Any]) -> Iterator[tuple[int, Any]]:
    """Yield ``(index, fn(args[index]))`` as tasks finish, at most ``backend.window`` in flight.

    If the consumer stops early or anything raises (Ctrl-C included), tasks not started yet are
    cancelled; stopping running ones is :meth:`Backend.close` with ``abort``.
    """
    window = backend.window or max(1, len(args))
    pending: dict[Any, int] = {}
    submitted = 0
    try:
        while submitted < len(args) or pending:
            while submitted < len(args) and len(pending) < window:
                pending[backend.submit(fn, args[submitted])] = submitted
                submitted += 1
            done, _ = backend.wait_any(list(pending))
            for handle in done:
                yield pending.pop(handle), backend.result(handle)
    finally:
        if pending:
            backend.cancel(list(pending))


@contextmanager
def session(backend: Backend) -> Iterator[Backend]:
    """Close ``backend`` on exit: normally after its tasks, at once (abort) on an exception."""
    try:
        yield backend
    except BaseException:
        backend.close(abort=True)
        raise
    backend.close()


def connect(*, jobs: int, dask: str | None = None, ray: str | None = None) -> Backend:
    """The backend the options ask for: ``--dask``, ``--ray``, or a local pool of ``jobs``."""
    if dask and ray:
        raise TidalInputError("--ray", "give either --ray or --dask, not both")
    if dask:
        return DaskBackend(dask)
    if ray:
        return RayBackend(ray)
    return LocalBackend(jobs)


def _host_port(address: str, default_port: int, option: str) -> tuple[str, int]:
    text = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, str(default_port)
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not host or not 0 < number < 65536:
        raise TidalInputError(option, f"expected an address such as HOST:PORT, got {address!r}")
    return host.strip("[]"), number


def _reason(exc: BaseException) -> str:
    """A one-line reason for an error message: the exception's text, or its type when it has none."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _run_bounded(fn: Callable[[], Any], timeout_s: float) -> Any:
    """``fn()`` in a helper thread (so it has its own event loop, even under a running one).

    ``fn`` must bound itself by ``timeout_s``; the extra second here only covers its clean-up.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tidal-probe") as pool:
        return pool.submit(fn).result(timeout=timeout_s + 1.0)


def _dask_handshake(address: str, timeout_s: float) -> None:
    """Raise :class:`TidalInputError` unless ``address`` completes Dask's handshake within ``timeout_s``."""
    from distributed.comm import connect as dask_connect
    from distributed.security import Security

    # The TLS settings Client() would use (from Dask's configuration), so a tls:// scheduler passes.
    tls = Security().get_connection_args("client")

    async def handshake() -> None:
        comm = await asyncio.wait_for(dask_connect(address, timeout=timeout_s, **tls), timeout_s)
        await comm.close()

    try:
        _run_bounded(lambda: asyncio.run(handshake()), timeout_s)
    except (TimeoutError, asyncio.TimeoutError):
        reason = f"no Dask handshake within {timeout_s:g} s"
        raise TidalInputError("--dask", f"{address!r} is not a Dask scheduler ({reason})") from None
    except Exception as exc:  # whatever the peer sent: a closed stream, a frame that does not decode, ...
        reason = f"no valid Dask handshake: {_reason(exc)}"
        raise TidalInputError("--dask", f"{address!r} is not a Dask scheduler ({reason})") from None


#: Seconds on top of the probe's own deadline for its child process to start and import Ray.
RAY_PROBE_STARTUP_S = 60.0


def _ray_probe(address: str, timeout_s: float) -> None:
    """Raise :class:`TidalInputError` unless a Ray cluster answers at ``address`` within ``timeout_s``.

    The question is asked in a child process (:mod:`tidal.experiment._rayprobe`), because Ray's
    client cannot be interrupted: at the deadline the child is abandoned, and then killed.
    """
    command = [sys.executable, "-m", "tidal.experiment._rayprobe", address, repr(timeout_s)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s + RAY_PROBE_STARTUP_S,
                              check=False)
    except subprocess.TimeoutExpired:
        reason = f"no answer within {timeout_s + RAY_PROBE_STARTUP_S:g} s"
    else:
        lines = done.stdout.strip().splitlines()
        try:
            answer = json.loads(lines[-1])
        except (IndexError, ValueError):
            # The probe itself failed to run (this is not about the address): let ray.init decide.
            log.debug("Ray probe gave no answer (status %s): %s", done.returncode, done.stderr[-2000:])
            return
        if answer.get("ok") is not False:
            return  # a cluster answered, or this Ray has no way to ask: ray.init will say
        reason = str(answer.get("reason") or "no reason given")
    raise TidalInputError("--ray", f"{address!r} is not a Ray cluster ({reason})")


def check_reachable(option: str, what: str, address: str, host: str, port: int, timeout_s: float) -> None:
    """Raise :class:`TidalInputError` unless a TCP connection to ``host:port`` opens in time."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise TidalInputError(option, f"cannot reach {what} at {address!r}: {exc.strerror or exc}") from None
