"""Reusable benchmark pieces: a gunicorn server on loopback, a load generator in its own process, results, a table.

Everything here only ever talks to 127.0.0.1. The server and the load generator are separate processes (the load
generator is started with the `spawn` method), so the client's Python work does not run inside a server worker; on
a small machine they still share the CPU, which is why `run.py` reports ratios to a baseline measured in the same run
rather than absolute figures.

Typical use (see run.py):

    with GunicornServer("bench_app:app", workers=2, env={...}) as server:
        check_request(server.port, spec)
        result = measure("register read", server.port, spec, LoadSettings(duration=10, concurrency=8))
    print_results(baseline=[...], cases=[(result, ratio)])
"""

from __future__ import annotations

import http.client
import math
import multiprocessing
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from rich.console import Console
from rich.table import Table

LOOPBACK = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent  # wsgi.py lives here: targets like "wsgi:app" import from it
# gunicorn's worker heartbeat files: on tmpfs, so a slow shared disk cannot stall a worker. No data goes there.
WORKER_TMP_DIR = Path("/dev/shm")  # noqa: S108

# Hard bounds on a single measurement, whatever the caller asks for.
MAX_REQUESTS_PER_RUN = 5_000_000
MAX_ERROR_SAMPLES = 5
NOISY_SPREAD_PERCENT = 20  # baseline runs further apart than this: say the ratios are rough


# --------------------------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------------------------


class ServerError(RuntimeError):
    """gunicorn did not start, or did not become ready in time."""


def free_port() -> int:
    """A TCP port that is free on loopback right now (another process may still take it: callers retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def base_url(port: int) -> str:
    """The URL a server on 127.0.0.1:`port` is reached at, exactly as clients write it (no trailing slash)."""
    return f"http://{LOOPBACK}:{port}"


def issuer_env(port: int) -> dict[str, str]:
    """`EXCHANGE_ISSUER` for a server on `port`: the exchange checks DPoP `htu` and client-assertion `aud` against
    it, so it must be the base URL the load generator sends to. For `port_env=` of `GunicornServer`/`ServerPool`."""
    return {"EXCHANGE_ISSUER": base_url(port)}


def children_of(pid: int) -> list[int]:
    """The live child processes of `pid` (Linux /proc; empty elsewhere)."""
    children = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
            children.append(int(entry.name))
    return children


def process_cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time the processes have used so far (Linux /proc; NaN when unreadable)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return math.nan
        utime, stime = fields[fields.rindex(")") + 2:].split()[11:13]
        ticks += int(utime) + int(stime)
    return ticks / os.sysconf("SC_CLK_TCK")


class GunicornServer:
    """`gunicorn <target>` in a subprocess, bound to 127.0.0.1 on a free port, sync workers, no access log.

    `start()` returns once `ready_path` answers 200 (or raises `ServerError` with the tail of gunicorn's log);
    `stop()` sends SIGTERM, waits, and kills on timeout. Usable as a context manager.

    `env` is added to the server's environment; `port_env(port)`, if given, is added on top once the port is chosen
    (e.g. `issuer_env`, for settings that name the server's own URL). Targets import from bench/ and the project root.
    """

    def __init__(
        self,
        target: str,
        *,
        workers: int = 2,
        env: Mapping[str, str] | None = None,
        port_env: Callable[[int], Mapping[str, str]] | None = None,
        ready_path: str = "/healthz",
        ready_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.target = target
        self.workers = workers
        self.env = dict(env or {})
        self.port_env = port_env
        self.ready_path = ready_path
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.extra_args = list(extra_args)
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    def command(self, port: int) -> list[str]:
        args = [
            sys.executable, "-m", "gunicorn",
            "--bind", f"{LOOPBACK}:{port}",
            "--workers", str(self.workers),
            "--worker-class", "sync",
            "--pythonpath", f"{BENCH_DIR},{PROJECT_ROOT}",
            "--log-level", "warning",
            "--error-logfile", "-",
            "--graceful-timeout", "5",
            "--timeout", "60",
        ]  # no --access-logfile: gunicorn then writes no access log
        if WORKER_TMP_DIR.is_dir():
            args += ["--worker-tmp-dir", str(WORKER_TMP_DIR)]
        return [*args, *self.extra_args, self.target]

    def start(self, attempts: int = 3) -> GunicornServer:
        last: ServerError | None = None
        for _ in range(attempts):
            try:
                self._start_once(free_port())
                return self
            except ServerError as e:
                last = e
                self.stop()
                if "in use" not in str(e):  # only a port taken between free_port() and gunicorn's bind is retried
                    break
            except BaseException:  # Ctrl-C while waiting, Popen failing, ...: leave no gunicorn behind
                self.stop()
                raise
        assert last is not None
        raise last

    def _start_once(self, port: int) -> None:
        self.port = port
        env = {**os.environ, **self.env, **(self.port_env(port) if self.port_env else {})}
        self._log_file = tempfile.TemporaryFile(prefix="gunicorn-", suffix=".log")
        self._process = subprocess.Popen(
            self.command(port), env=env, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ServerError(f"gunicorn {self.target} exited with {self._process.returncode}:\n{self.log_tail()}")
            if self._is_ready():
                return
            time.sleep(0.1)
        raise ServerError(f"gunicorn {self.target} not ready after {self.ready_timeout:.0f}s:\n{self.log_tail()}")

    @property
    def base_url(self) -> str:
        return base_url(self.port)

    def pids(self) -> tuple[int, ...]:
        """The gunicorn master and its workers (for `process_cpu_seconds`); empty when not running."""
        if self._process is None or self._process.poll() is not None:
            return ()
        return (self._process.pid, *children_of(self._process.pid))

    def _is_ready(self) -> bool:
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=2)
        try:
            conn.request("GET", self.ready_path)
            response = conn.getresponse()
            response.read()
            return response.status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)  # graceful: the master stops its workers
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=self.stop_timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, chars: int = 4000) -> str:
        if self._log_file is None:
            return ""
        self._log_file.flush()
        self._log_file.seek(0)
        text: str = self._log_file.read().decode(errors="replace")
        return text[-chars:]

    def __enter__(self) -> GunicornServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------------------------------
# What to send
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signed:
    """What a signer adds to one request: headers (on top of the spec's, replacing same-named ones) and, if not None,
    the body (replacing the spec's)."""

    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None


class BoundSigner(Protocol):
    def sign(self, method: str, path: str) -> Signed:
        """Headers and/or body for the next request `method path` (fresh proofs, renewed tokens, ...)."""
        ...


class Signer(Protocol):
    """Per-request signing in the load generator (client assertions, DPoP proofs, tokens).

    The signer itself is configuration and must be picklable (plain data: JWK dicts, ids, URLs). `bind()` is called
    once per load thread (and once by `check_request`), in the process that sends, and returns the object whose
    `sign()` runs before every request: it may parse keys once and keep per-thread state such as an access token.
    `sign()` may do its own HTTP (fetching a token); it runs inside the timed request, so its cost is in the latency.
    An exception from `bind()` or `sign()` counts as a failed request.
    """

    def bind(self) -> BoundSigner: ...


@dataclass(frozen=True)
class RequestSpec:
    """The requests of one case. Each load thread cycles through `paths` (starting at a different offset), so a case
    can spread its reads over many records. Must be picklable: it crosses into the load-generator process.

    With a `signer`, every request is signed just before it is sent, inside the timed section (see `Signer`)."""

    paths: tuple[str, ...]
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    expect_status: tuple[int, ...] = (200,)
    signer: Signer | None = None

    def __post_init__(self) -> None:
        if not self.paths or not all(p.startswith("/") for p in self.paths):
            raise ValueError("paths must be a non-empty sequence of absolute paths ('/...')")


@dataclass(frozen=True)
class LoadSettings:
    duration: float = 10.0  # seconds measured
    warmup: float = 1.0  # seconds of load before measuring (workers import lazily, caches fill)
    concurrency: int = 8  # client threads, each with its own keep-alive connection
    request_timeout: float = 10.0  # per request (connect, send, read)

    def __post_init__(self) -> None:
        if not (0 < self.duration <= 3600 and 0 <= self.warmup <= 600 and 1 <= self.concurrency <= 512):
            raise ValueError("duration must be in (0, 3600], warmup in [0, 600], concurrency in [1, 512]")


class RequestCheckError(RuntimeError):
    """The first request of a case did not get the status it expects: measuring it would only count errors."""


def check_request(port: int, spec: RequestSpec, timeout: float = 10.0) -> int:
    """Send the case's first request once (signed, if the spec has a signer), outside the measurement; return the body
    size. Raises on a bad status."""
    body, headers = spec.body, dict(spec.headers)
    if spec.signer is not None:
        try:
            body, headers = _apply(spec.signer.bind().sign(spec.method, spec.paths[0]), body, headers)
        except Exception as e:  # e.g. the signer's token request was refused: a set-up failure, not a crash
            raise RequestCheckError(f"{spec.method} {spec.paths[0]}: signer failed: {type(e).__name__}: {e}") from e
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request(spec.method, spec.paths[0], body=body, headers=headers)
        response = conn.getresponse()
        answer = response.read()
    finally:
        conn.close()
    if response.status not in spec.expect_status:
        raise RequestCheckError(
            f"{spec.method} {spec.paths[0]} -> {response.status}, expected {spec.expect_status}: {answer[:500]!r}"
        )
    return len(answer)


def _apply(signed: Signed, body: bytes | None, headers: dict[str, str]) -> tuple[bytes | None, dict[str, str]]:
    merged = {**headers, **dict(signed.headers)}
    return (body if signed.body is None else signed.body), merged


# --------------------------------------------------------------------------------------------------------------------
# The load generator (runs in a separate, spawned process)
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class LoadOutcome:
    """Raw output of one load run: latencies (seconds) of the requests started inside the measured window."""

    latencies: list[float]
    errors: int
    error_samples: list[str]
    body_bytes: int
    elapsed: float  # from the start of the measured window until the last thread stopped
    server_cpu_s: float = math.nan  # CPU time the server's processes used in the measured window, if given their pids


def _load_thread(
    port: int, spec: RequestSpec, settings: LoadSettings, offset: int, measure_from: float, stop_at: float,
    out: dict[str, Any],
) -> None:
    latencies: list[float] = []
    errors = 0
    samples: list[str] = []
    body_bytes = 0
    limit = MAX_REQUESTS_PER_RUN // settings.concurrency
    headers = dict(spec.headers)
    paths = spec.paths
    i = offset
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=settings.request_timeout)
    perf_counter = time.perf_counter
    signer: BoundSigner | None = None
    try:
        while len(latencies) < limit:
            started = perf_counter()
            if started >= stop_at:
                break
            path = paths[i % len(paths)]
            i += 1
            problem: str | None = None
            size = 0
            try:
                body, request_headers = spec.body, headers
                if spec.signer is not None:  # timed: a partner pays for its signatures (and token renewals) too
                    if signer is None:
                        signer = spec.signer.bind()
                    body, request_headers = _apply(signer.sign(spec.method, path), body, headers)
                # http.client keeps the connection open between requests and reconnects by itself after the server
                # closes it (gunicorn's sync worker closes after every response).
                conn.request(spec.method, path, body=body, headers=request_headers)
                response = conn.getresponse()
                size = len(response.read())
                if response.status not in spec.expect_status:
                    problem = f"{spec.method} {path} -> {response.status}"
            except (OSError, http.client.HTTPException) as e:
                problem = f"{spec.method} {path} -> {type(e).__name__}: {e}"
            except Exception as e:  # a signer failing (e.g. its token request refused) is a failed request too
                problem = f"{spec.method} {path} -> signer: {type(e).__name__}: {e}"
                conn.close()
            finished = perf_counter()
            if started < measure_from:  # warm-up
                if problem is not None:
                    time.sleep(0.01)
                continue
            if problem is None:
                latencies.append(finished - started)
                body_bytes += size
            else:
                errors += 1
                if len(samples) < MAX_ERROR_SAMPLES and problem not in samples:
                    samples.append(problem)
                time.sleep(0.01)  # do not spin on a refused connection
    finally:
        conn.close()
        out["latencies"] = latencies
        out["errors"] = errors
        out["samples"] = samples
        out["body_bytes"] = body_bytes
        out["stopped"] = perf_counter()


def generate_load(port: int, spec: RequestSpec, settings: LoadSettings,
                  server_pids: Sequence[int] = ()) -> LoadOutcome:
    """Drive 127.0.0.1:`port` with `settings.concurrency` threads: warm up, then measure for `settings.duration`.
    With `server_pids` (a gunicorn master first), also the CPU time those processes and the master's children use
    from the start to the end of the measured window.

    Runs in whatever process calls it; `measure()` calls it in a spawned process.
    """
    start = time.perf_counter()
    measure_from = start + settings.warmup
    stop_at = measure_from + settings.duration
    cpu: dict[str, float] = {}

    def sample_cpu() -> None:
        time.sleep(max(0.0, measure_from - time.perf_counter()))
        # the master's workers as they are now (all booted by the end of the warm-up), and any other pids given
        pids = list(dict.fromkeys([*server_pids, *children_of(server_pids[0])]))
        cpu["from"] = process_cpu_seconds(pids)
        time.sleep(max(0.0, stop_at - time.perf_counter()))
        cpu["to"] = process_cpu_seconds(pids)

    sampler = threading.Thread(target=sample_cpu, name="cpu-sampler", daemon=True)
    if server_pids:
        sampler.start()
    outputs: list[dict[str, Any]] = [{} for _ in range(settings.concurrency)]
    threads = [
        threading.Thread(
            target=_load_thread,
            args=(port, spec, settings, n * len(spec.paths) // settings.concurrency, measure_from, stop_at, outputs[n]),
            name=f"load-{n}",
            daemon=True,
        )
        for n in range(settings.concurrency)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        # A thread's last request started before stop_at, and each request is bounded by request_timeout.
        thread.join(timeout=max(0.0, stop_at - time.perf_counter()) + 3 * settings.request_timeout + 5)
    latencies: list[float] = []
    errors = 0
    samples: list[str] = []
    body_bytes = 0
    stopped = measure_from
    for thread, out in zip(threads, outputs, strict=True):
        if thread.is_alive() or "stopped" not in out:
            errors += 1
            samples.append(f"{thread.name} did not finish")
            continue
        latencies.extend(out["latencies"])
        errors += out["errors"]
        samples.extend(out["samples"])
        body_bytes += out["body_bytes"]
        stopped = max(stopped, out["stopped"])
    if server_pids:
        sampler.join(timeout=5)
    return LoadOutcome(
        latencies=latencies,
        errors=errors,
        error_samples=list(dict.fromkeys(samples))[:MAX_ERROR_SAMPLES],
        body_bytes=body_bytes,
        elapsed=max(stopped - measure_from, 1e-9),
        server_cpu_s=cpu.get("to", math.nan) - cpu.get("from", math.nan),
    )


def _load_process_main(port: int, spec: RequestSpec, settings: LoadSettings, results: Any,
                       server_pids: Sequence[int] = ()) -> None:
    try:
        results.put(("ok", generate_load(port, spec, settings, server_pids)))
    except BaseException as e:  # reported to the parent instead of dying silently
        results.put(("error", f"{type(e).__name__}: {e}"))


class LoadGeneratorError(RuntimeError):
    """The load-generator process failed or overran its time bound."""


def run_load_process(port: int, spec: RequestSpec, settings: LoadSettings,
                     server_pids: Sequence[int] = ()) -> LoadOutcome:
    """`generate_load` in a separate process (spawn), bounded in time; the process is killed if it overruns."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(
        target=_load_process_main, args=(port, spec, settings, results, tuple(server_pids)), name="bench-load",
        daemon=True,
    )
    # Interpreter start-up, the run itself, and the threads' own join bound (see generate_load).
    bound = 30 + settings.warmup + settings.duration + 3 * settings.request_timeout + 5
    process.start()
    try:
        deadline = time.monotonic() + bound
        while True:
            try:
                status, payload = results.get(timeout=0.5)
                break
            except queue.Empty:
                if not process.is_alive():  # died before reporting (e.g. failed to start): do not wait out the bound
                    raise LoadGeneratorError(f"load generator exited with {process.exitcode} and no result") from None
                if time.monotonic() > deadline:
                    raise LoadGeneratorError(f"load generator gave no result within {bound:.0f}s") from None
        process.join(timeout=10)
    finally:
        if process.is_alive():
            process.terminate()
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
        results.close()
    if status != "ok":
        raise LoadGeneratorError(str(payload))
    assert isinstance(payload, LoadOutcome)
    return payload


# --------------------------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of an ascending sequence; NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = math.ceil(q / 100 * len(sorted_values))
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


@dataclass
class Result:
    """One measured run (or several combined). `requests`, `rps` and the latency figures count successful responses
    only (failed ones are in `errors`); latencies are milliseconds per request, measured by the client, and include
    queueing for a free worker and, with sync workers, the TCP connect."""

    name: str
    requests: int
    errors: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_bytes: float
    runs: int = 1
    error_samples: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list, repr=False)  # seconds, sorted; not exported
    server_cpu_s: float = math.nan  # CPU time of the server's processes over the measured window(s)

    @property
    def cpu_ms(self) -> float:
        """Server CPU per successful response, milliseconds (all its workers together): what one request costs the
        server whatever else competes for the cores, unlike req/s (NaN when not measured)."""
        return self.server_cpu_s * 1000 / self.requests if self.requests else math.nan

    @classmethod
    def from_outcome(cls, name: str, outcome: LoadOutcome) -> Result:
        result = cls._build(name, outcome.latencies, outcome.errors, outcome.elapsed, outcome.body_bytes,
                            outcome.error_samples, runs=1)
        result.server_cpu_s = outcome.server_cpu_s
        return result

    @classmethod
    def combine(cls, name: str, results: Sequence[Result]) -> Result:
        """Several runs of the same case as one: requests/s is total requests over total time (the mean rate when
        the runs last equally long); percentiles are over all the runs' requests."""
        if not results:
            raise ValueError("nothing to combine")
        latencies = [x for r in results for x in r.latencies]
        body_bytes = sum(r.mean_bytes * r.requests for r in results)
        samples = list(dict.fromkeys(s for r in results for s in r.error_samples))[:MAX_ERROR_SAMPLES]
        combined = cls._build(name, latencies, sum(r.errors for r in results), sum(r.duration_s for r in results),
                              round(body_bytes), samples, runs=sum(r.runs for r in results))
        combined.server_cpu_s = sum(r.server_cpu_s for r in results)  # NaN if any run lacks it
        return combined

    @classmethod
    def _build(cls, name: str, latencies: Iterable[float], errors: int, elapsed: float, body_bytes: int,
               samples: list[str], *, runs: int) -> Result:
        ordered = sorted(latencies)
        n = len(ordered)
        return cls(
            name=name,
            requests=n,
            errors=errors,
            duration_s=elapsed,
            rps=n / elapsed if elapsed > 0 else 0.0,
            p50_ms=percentile(ordered, 50) * 1000,
            p90_ms=percentile(ordered, 90) * 1000,
            p99_ms=percentile(ordered, 99) * 1000,
            max_ms=(ordered[-1] if ordered else math.nan) * 1000,
            mean_bytes=body_bytes / n if n else 0.0,
            runs=runs,
            error_samples=samples,
            latencies=ordered,
        )

    def to_dict(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return None if math.isnan(x) else round(x, 3)

        return {
            "name": self.name, "runs": self.runs, "requests": self.requests, "errors": self.errors,
            "duration_s": round(self.duration_s, 3), "rps": round(self.rps, 1),
            "p50_ms": num(self.p50_ms), "p90_ms": num(self.p90_ms), "p99_ms": num(self.p99_ms),
            "max_ms": num(self.max_ms), "mean_bytes": round(self.mean_bytes), "error_samples": self.error_samples,
            "server_cpu_ms_per_request": num(self.cpu_ms),
        }


def measure(name: str, port: int, spec: RequestSpec, settings: LoadSettings,
            server_pids: Sequence[int] = ()) -> Result:
    """One warm-up + measured run against 127.0.0.1:`port`, load generated in a separate process; with the server's
    `server_pids` (`GunicornServer.pids()`), also its CPU time per request."""
    return Result.from_outcome(name, run_load_process(port, spec, settings, server_pids))


def ratio(case: Result, baseline: Result) -> float:
    """`case_rps / baseline_rps`: the figure. Below 1 means the case is slower than the baseline."""
    return case.rps / baseline.rps if baseline.rps > 0 else math.nan


@dataclass(frozen=True)
class Comparison:
    """A line `label: 0.42x` comparing two cases of the same run: the ratio of their `x baseline` figures, i.e. each
    case's req/s taken relative to the baseline runs around it first, so drift between the two cases cancels."""

    numerator: str  # case names
    denominator: str
    label: str = ""

    def value(self, cases: Sequence[tuple[Result, Result]]) -> tuple[float, float, float] | None:
        """(comparison, numerator's x baseline, denominator's x baseline), or None if either case did not run."""
        found = {result.name: ratio(result, against) for result, against in cases}
        if self.numerator not in found or self.denominator not in found:
            return None
        top, bottom = found[self.numerator], found[self.denominator]
        return (top / bottom if bottom > 0 else math.nan), top, bottom


@dataclass(frozen=True)
class Target:
    """A goal for one case, printed next to its `case / baseline` line with whether this run met it: a floor for its
    `x baseline` figure (`target: secured read >= 0.35x bare Flask: not met`) or a ceiling for its server CPU per
    request over the baseline's (`target: cpu <= 6.50x bare Flask's: 17.7x, not met`)."""

    case: str
    minimum: float | None = None  # the case's req/s over the baseline's req/s it should reach
    max_cpu: float | None = None  # the case's cpu ms/req over the baseline's it should stay within

    def label(self, baseline: str) -> str:
        if self.minimum is not None:
            return f"target: {self.case} >= {self.minimum:.2f}x {baseline}"
        return f"target: cpu <= {self.max_cpu:.2f}x {baseline}'s"

    def value(self, result: Result, against: Result) -> float:
        if self.minimum is not None:
            return ratio(result, against)
        return result.cpu_ms / against.cpu_ms if against.cpu_ms else math.nan

    def met(self, value: float) -> bool:
        if math.isnan(value):
            return False
        return value >= self.minimum if self.minimum is not None else value <= (self.max_cpu or math.nan)


# --------------------------------------------------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------------------------------------------------


def make_console(*, stderr: bool = False) -> Console:
    """A rich console that does not squeeze the table to 80 columns when output goes to a file or a pipe."""
    console = Console(stderr=stderr, soft_wrap=True)
    if not console.is_terminal:
        console = Console(stderr=stderr, soft_wrap=True, width=140)
    return console


def _ms(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2f}"


def results_table(baseline: Result, cases: Sequence[tuple[Result, Result]], *, title: str = "") -> Table:
    """`cases` pairs each case with the baseline its ratio is taken against (usually the baseline runs around it)."""
    table = Table(title=title or None, title_justify="left")
    table.add_column("case")
    table.add_column("runs", justify="right")
    table.add_column("requests", justify="right")
    table.add_column("req/s", justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p90 ms", justify="right")
    table.add_column("p99 ms", justify="right")
    table.add_column("max ms", justify="right")
    table.add_column("errors", justify="right")
    table.add_column("bytes/resp", justify="right")
    table.add_column("cpu ms/req", justify="right")
    table.add_column("x baseline", justify="right")

    def row(result: Result, against: Result | None, style: str | None = None) -> None:
        errors = f"[red]{result.errors}[/]" if result.errors else "0"
        table.add_row(
            result.name, str(result.runs), str(result.requests), f"{result.rps:.0f}", _ms(result.p50_ms),
            _ms(result.p90_ms), _ms(result.p99_ms), _ms(result.max_ms), errors, f"{result.mean_bytes:.0f}",
            _ms(result.cpu_ms), "1.00x" if against is None else f"{ratio(result, against):.2f}x", style=style,
        )

    row(baseline, None, style="dim")
    for result, against in cases:
        row(result, against)
    return table


def print_results(
    baseline: Result,
    cases: Sequence[tuple[Result, Result]],
    *,
    baseline_runs: Sequence[Result] = (),
    title: str = "",
    console: Console | None = None,
    comparisons: Sequence[Comparison] = (),
    targets: Sequence[Target] = (),
) -> None:
    """The table, the spread of the baseline runs (drift), one `case / baseline: 0.42x` line per case (with its
    target, if it has one, and whether it was met), one line per comparison between cases, error samples."""
    console = console or make_console()
    console.print(results_table(baseline, cases, title=title))
    if len(baseline_runs) > 1:
        rates = [r.rps for r in baseline_runs]
        spread = (max(rates) - min(rates)) / (sum(rates) / len(rates)) * 100 if sum(rates) else math.nan
        console.print(
            f"baseline runs: {', '.join(f'{x:.0f}' for x in rates)} req/s (spread {spread:.1f}% of their mean)"
        )
        if spread > NOISY_SPREAD_PERCENT:
            console.print(
                f"[yellow]the baseline moved by more than {NOISY_SPREAD_PERCENT}% during the run: the machine is busy; "
                "take the ratios as rough, or run again (longer, or with --rounds)[/]"
            )
    for result, against in cases:
        x = ratio(result, against)
        line = f"[bold]{result.name} / {baseline.name}: {x:.2f}x[/]"
        for target in (t for t in targets if t.case == result.name):
            value = target.value(result, against)
            verdict = "[green]met[/]" if target.met(value) else "[red]not met[/]"
            shown = "" if target.minimum is not None else f"{value:.1f}x, "
            line += f"  ({target.label(baseline.name)}: {shown}{verdict})"
        console.print(line)
    for comparison in comparisons:
        value = comparison.value(cases)
        if value is not None:
            label = comparison.label or f"{comparison.numerator} / {comparison.denominator}"
            console.print(f"[bold]{label}: {value[0]:.2f}x[/] (x baseline {value[1]:.3f} / {value[2]:.3f})")
    for result in [baseline, *(r for r, _ in cases)]:
        for sample in result.error_samples:
            console.print(f"[red]error in {result.name}:[/] {sample}", markup=True, highlight=False)


def machine_info() -> dict[str, Any]:
    import platform

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


class ServerPool:
    """Servers started on first use, one per (target, extra environment), all stopped by `close()`.

    Keeping a server up across the interleaved runs (baseline, case, baseline, ...) means each run measures the same
    warm processes; idle sync workers cost next to nothing while another server is under load.
    """

    def __init__(
        self, *, workers: int, env: Mapping[str, str] | None = None,
        port_env: Callable[[int], Mapping[str, str]] | None = None,
    ) -> None:
        self.workers = workers
        self.env = dict(env or {})
        self.port_env = port_env  # for every server, e.g. issuer_env
        self._servers: dict[tuple[str, tuple[tuple[str, str], ...]], GunicornServer] = {}

    def get(self, target: str, env: Mapping[str, str] | None = None) -> GunicornServer:
        key = (target, tuple(sorted((env or {}).items())))
        server = self._servers.get(key)
        if server is None:
            server = GunicornServer(target, workers=self.workers, env={**self.env, **(env or {})},
                                    port_env=self.port_env)
            self._servers[key] = server  # registered before start(), so close() stops a half-started one too
            server.start()
        return server

    def close(self) -> None:
        for server in self._servers.values():
            server.stop()
        self._servers.clear()

    def __enter__(self) -> ServerPool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
