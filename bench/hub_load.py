"""Hub load benchmark: N students hit one real hub at once, the way a class starts a lab.

On 127.0.0.1 this starts a real deepgrade hub (JupyterHub, configurable-http-proxy, the
exchange and formgrader services, the local spawner), adds an instructor and N students with
``deepgrade users import``, and the instructor releases dl-python/01-basics-with-numpy (the
cheapest assignment). Then every student, concurrently:

  sign-in   the real login form (GET /hub/login, POST the password)
  token     an API token asked with the browser's cookie (this client's stand-in for OAuth)
  spawn     POST their server, then follow its progress stream until ready, as the
            spawn-pending page does; an HTTP 429 (concurrent spawn limit) is retried after
            Retry-After, as the page tells a person to, and counted
  kernel    start a kernel on their server, run ``import numpy`` over the websocket
  fetch     nbgrader's assignment list extension fetches the release from the exchange
  submit    and submits it back; the exchange must then list the submission

Servers stay up until every student is done (so memory is what a full class costs), then
each student stops their own server (``stop``) and the hub is stopped with Ctrl-C.

    python bench/hub_load.py --students 30            # one class of 30
    python bench/hub_load.py --ramp 10,20,30,40       # fresh hub per N; largest N with 0 failures
    python bench/hub_load.py --smoke                  # 2 students, what `make test` runs

Grading on submit is switched off (DEEPGRADE_WORKERS=0): submissions are queued in the
exchange and not graded, so the figures are the hub's, not the graders' (bench/grading.py
measures those). The load generator shares the machine; its own CPU is printed too.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import platform
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil  # a dependency of ipykernel, so always in the environment
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tests.hubtools import PASSWORD, Hub, Session

COURSE, ASSIGNMENT = "dl-python", "01-basics-with-numpy"
INSTRUCTOR = "ines"
PHASES = ("sign-in", "token", "spawn", "kernel", "fetch", "submit")
CELL = "import numpy\nprint('numpy', numpy.__version__)"
MIB = 1024 * 1024


class Aborted(Exception):
    """Ctrl-C (or SIGTERM) arrived: students stop at their next phase."""


@dataclass
class StudentRun:
    """One student's timings (seconds per phase) and, if it failed, where and why."""

    name: str
    seconds: dict[str, float] = field(default_factory=dict)
    throttled: int = 0
    failure: tuple[str, str] | None = None


@dataclass
class Usage:
    """What the sampler saw: hub tree CPU and RSS, the student servers' RSS, the machine's CPU."""

    hub_cpu: list[float] = field(default_factory=list)
    hub_rss: list[int] = field(default_factory=list)
    servers_rss: list[int] = field(default_factory=list)
    servers: list[int] = field(default_factory=list)
    machine_cpu: list[float] = field(default_factory=list)
    parts_cpu: dict[str, list[float]] = field(default_factory=dict)
    parts_rss: dict[str, list[int]] = field(default_factory=dict)


HUB_PARTS = ("jupyterhub", "proxy", "exchange", "formgraders", "launcher")


def hub_part(proc: psutil.Process) -> str:
    """Which part of the hub a process is, from its command line (the launcher is ``deepgrade hub``)."""
    try:
        command = " ".join(proc.cmdline())
    except psutil.Error:
        return "launcher"
    for needle, part in (("configurable-http-proxy", "proxy"), ("hub.exchange.service", "exchange"),
                         ("jupyterhub-singleuser", "formgraders"), ("autograders.cli", "launcher"),
                         ("jupyterhub", "jupyterhub")):
        if needle in command:
            return part
    return "launcher"


def reason(error: BaseException) -> str:
    """One line per failure, long enough to diagnose, short enough to list 40 of them."""
    text = " ".join(str(error).split()) or repr(error)
    return f"{type(error).__name__}: {text[:300]}"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: with few students p95 is the slowest one, never an interpolation."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class Sampler(threading.Thread):
    """Samples the hub's process tree every ``interval`` seconds with psutil.

    The tree under the ``deepgrade hub`` process holds the launcher, jupyterhub, the proxy and
    the services, and also the student servers: a process belongs to a student when it or an
    ancestor runs with its working directory in the students' homes (the spawner starts each
    server there). RSS is summed per group, so pages shared between processes count twice.
    """

    def __init__(self, root_pid: int, homes: Path, interval: float = 1.0):
        super().__init__(name="hub-sampler", daemon=True)
        self.root_pid, self.homes, self.interval = root_pid, str(homes), interval
        self.usage = Usage()
        self.seen: dict[tuple[int, float], psutil.Process] = {}  # every process, to stop leftovers
        self._student: dict[tuple[int, float], bool] = {}
        self._part: dict[tuple[int, float], str] = {}
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=10)

    def tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.root_pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def _key(self, proc: psutil.Process) -> tuple[int, float] | None:
        try:
            return proc.pid, proc.create_time()
        except psutil.Error:
            return None

    def _is_student(self, proc: psutil.Process, parents: dict[int, psutil.Process]) -> bool:
        key = self._key(proc)
        if key is None:
            return False
        if key not in self._student:
            try:
                own = proc.cwd().startswith(self.homes)
            except psutil.Error:
                own = False
            parent = parents.get(proc.pid)
            self._student[key] = own or (parent is not None and self._is_student(parent, parents))
        return self._student[key]

    def sample(self) -> None:
        with self._lock:
            procs = self.tree()
            parents: dict[int, psutil.Process] = {}
            by_pid = {p.pid: p for p in procs}
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    if proc.ppid() in by_pid:
                        parents[proc.pid] = by_pid[proc.ppid()]
            hub_cpu, hub_rss, servers_rss, servers = 0.0, 0, 0, 0
            parts_cpu, parts_rss = dict.fromkeys(HUB_PARTS, 0.0), dict.fromkeys(HUB_PARTS, 0)
            for proc in procs:
                key = self._key(proc)
                if key is None:
                    continue
                cached = self.seen.setdefault(key, proc)  # cpu_percent needs the same object each time
                try:
                    cpu, rss = cached.cpu_percent(None), cached.memory_info().rss
                except psutil.Error:
                    continue
                if self._is_student(cached, parents):
                    servers_rss += rss
                    parent = parents.get(proc.pid)
                    servers += parent is None or not self._is_student(parent, parents)
                else:
                    hub_cpu, hub_rss = hub_cpu + cpu, hub_rss + rss
                    part = self._part.setdefault(key, hub_part(cached))
                    parts_cpu[part] += cpu
                    parts_rss[part] += rss
            self.usage.hub_cpu.append(hub_cpu)
            self.usage.hub_rss.append(hub_rss)
            self.usage.servers_rss.append(servers_rss)
            self.usage.servers.append(servers)
            self.usage.machine_cpu.append(psutil.cpu_percent(None))
            for part in HUB_PARTS:
                self.usage.parts_cpu.setdefault(part, []).append(parts_cpu[part])
                self.usage.parts_rss.setdefault(part, []).append(parts_rss[part])

    def leftovers(self) -> list[psutil.Process]:
        """Processes of this hub still running after it stopped (is_running checks the create time)."""
        return [p for p in self.seen.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def check_ok(response: requests.Response, what: str) -> dict[str, Any]:
    """nbgrader's extension answers 200 with success false on errors: both are failures."""
    if response.status_code != 200:
        raise RuntimeError(f"{what}: HTTP {response.status_code}: {response.text[:300]}")
    body = response.json()
    if not body.get("success", True):
        raise RuntimeError(f"{what}: {body.get('value') or body.get('error') or body}"[:400])
    return body


def spawn(session: Session, timeout: float, abort: threading.Event) -> int:
    """Start the student's server and wait for the ready event; returns how often it was throttled."""
    name, throttled = session.username, 0
    deadline = time.monotonic() + timeout
    while True:
        r = session.post(f"/hub/api/users/{name}/server", timeout=timeout)
        if r.status_code != 429:
            break
        throttled += 1
        wait = float(r.headers.get("Retry-After") or 30)
        if time.monotonic() + wait > deadline:
            raise TimeoutError(f"still throttled (HTTP 429) after {throttled} tries: {r.text[:200]}")
        if abort.wait(wait):
            raise Aborted()
    if r.status_code == 201:
        return throttled  # ready within the hub's slow_spawn_timeout
    if r.status_code != 202:
        raise RuntimeError(f"spawn request refused: HTTP {r.status_code}: {r.text[:300]}")
    url = f"{session.hub.url}/hub/api/users/{name}/server/progress"
    with session.http.get(url, stream=True, timeout=(30, max(1.0, deadline - time.monotonic()))) as events:
        if events.status_code != 200:
            raise RuntimeError(f"progress stream: HTTP {events.status_code}: {events.text[:300]}")
        for line in events.iter_lines(decode_unicode=True):
            if abort.is_set():
                raise Aborted()
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not ready within {timeout:.0f} s")
            if not line or not line.startswith("data:"):
                continue  # keepalive blank lines
            event = json.loads(line[5:])
            if event.get("ready"):
                return throttled
            if event.get("failed"):
                raise RuntimeError(f"spawn failed: {event.get('message')}")
    raise RuntimeError("progress stream ended without a ready event")


def run_student(hub: Hub, name: str, abort: threading.Event, spawn_timeout: float,
                sessions: dict[str, Session]) -> StudentRun:
    """The student's whole visit; the first phase that fails ends it and is recorded."""
    run = StudentRun(name)
    state: dict[str, Any] = {}

    def sign_in() -> None:
        state["browser"] = hub.login(name)

    def token() -> None:
        r = state["browser"].post(f"{hub.url}/hub/api/users/{name}/tokens", json={"note": "hub_load"},
                                  timeout=120)
        if r.status_code != 201:
            raise RuntimeError(f"token: HTTP {r.status_code}: {r.text[:300]}")
        sessions[name] = state["session"] = Session(hub, name, r.json()["token"])

    def start() -> None:
        run.throttled = spawn(state["session"], spawn_timeout, abort)

    def kernel() -> None:
        out = state["session"].run_code(CELL, timeout=180)
        if not out.startswith("numpy "):
            raise RuntimeError(f"the cell printed {out[:300]!r}")

    def action(which: str) -> Callable[[], None]:
        def call() -> None:
            check_ok(state["session"].post(f"/user/{name}/assignments/{which}",
                                           data={"course_id": COURSE, "assignment_id": ASSIGNMENT}), which)
        return call

    steps = {"sign-in": sign_in, "token": token, "spawn": start, "kernel": kernel,
             "fetch": action("fetch"), "submit": action("submit")}
    for phase in PHASES:
        if abort.is_set():
            run.failure = (phase, "aborted (Ctrl-C)")
            return run
        began = time.perf_counter()
        try:
            steps[phase]()
        except Aborted:
            run.failure = (phase, "aborted (Ctrl-C)")
            return run
        except Exception as error:
            run.failure = (phase, reason(error))
            return run
        run.seconds[phase] = time.perf_counter() - began
    try:  # not timed: the exchange, not the student's server, must hold the submission
        mine = state["session"].get(f"/services/exchange/api/courses/{COURSE}/submissions")
        listed = mine.json() if mine.status_code == 200 else []
        if len(listed) != 1 or (listed[0].get("grading") or {}).get("state") != "queued":
            raise RuntimeError(f"the exchange lists HTTP {mine.status_code}: {mine.text[:300]}")
    except Exception as error:
        run.failure = ("submit", f"not recorded: {reason(error)}")
    return run


def stop_server(session: Session, timeout: float = 120) -> float:
    """The student stops their server; returns the seconds until the hub no longer lists it."""
    began = time.perf_counter()
    r = session.request("DELETE", f"/hub/api/users/{session.username}/server", timeout=timeout)
    if r.status_code not in (202, 204):
        raise RuntimeError(f"stop: HTTP {r.status_code}: {r.text[:300]}")
    deadline = time.monotonic() + timeout
    while r.status_code == 202 and time.monotonic() < deadline:
        model = session.get(f"/hub/api/users/{session.username}").json()
        if "" not in model.get("servers", {}):
            return time.perf_counter() - began
        time.sleep(0.5)
    if r.status_code == 202:
        raise TimeoutError(f"server still listed after {timeout:.0f} s")
    return time.perf_counter() - began


def release(hub: Hub, timeout: float = 180) -> float:
    """The instructor releases the assignment through the formgrader, as in tests/test_hub.py."""
    began = time.perf_counter()
    ines = Session(hub, INSTRUCTOR, hub.token(INSTRUCTOR))
    path = f"/services/{COURSE}/formgrader/api/assignment/{ASSIGNMENT}/release"
    deadline = time.monotonic() + timeout
    while True:  # the formgrader service may still be starting when the hub answers
        r = ines.post(path)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(2)
    check_ok(r, "release")
    return time.perf_counter() - began


@contextlib.contextmanager
def no_interrupts() -> Iterator[None]:
    """Cleanup must finish, or student servers outlive the benchmark: a second Ctrl-C waits."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def shut_down(hub: Hub, sessions: dict[str, Session], sampler: Sampler | None,
              measured: bool) -> tuple[list[float], list[tuple[str, str, str]]]:
    """Stop each server (timed when ``measured``), then the hub; end any process of it left over."""
    stops: list[float] = []
    failures: list[tuple[str, str, str]] = []
    if hub.process is None:
        return stops, failures
    with no_interrupts():
        if hub.process.poll() is None and sessions:
            with ThreadPoolExecutor(max_workers=len(sessions)) as pool:
                futures = {pool.submit(stop_server, s, 120 if measured else 20): n
                           for n, s in list(sessions.items())}  # a late student thread may still add one
                for future in as_completed(futures):
                    try:
                        stops.append(future.result())
                    except Exception as error:
                        failures.append((futures[future], "stop", reason(error)))
        # every process of the tree, once more (a first time if Ctrl-C came while the hub started):
        # jupyterhub cut short leaves its proxy and services behind, reparented away from the tree
        sampler = sampler or Sampler(hub.process.pid, hub.data / "home")
        sampler.sample()
        if hub.process.poll() is None:
            code = hub.stop()
            if code != 0:
                failures.append(("hub", "stop", f"the hub exited with {code} on Ctrl-C"))
        left = sampler.leftovers()
        for proc in left:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _, alive = psutil.wait_procs(left, timeout=10)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        if left:
            failures.append(("hub", "stop", f"{len(left)} process(es) outlived the hub and were ended: "
                                            + ", ".join(_describe(p) for p in left)[:300]))
    return stops, failures


def _describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} {' '.join(proc.cmdline())[:60]}"
    except psutil.Error:
        return str(proc.pid)


def add_people(hub: Hub, students: list[str]) -> None:
    """One ``deepgrade users import`` for everyone: N ``users add`` would cost N interpreter starts."""
    roster = hub.data / "roster.csv"
    with open(roster, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["username", "role", "course", "password"])
        writer.writerow([INSTRUCTOR, "instructor", COURSE, PASSWORD])
        writer.writerows([name, "student", COURSE, PASSWORD] for name in students)
    hub.cli("users", "import", str(roster))


def run_class(students: int, concurrency: int, spawn_timeout: float, interval: float) -> dict[str, Any]:
    """One fresh hub, one class of ``students``; everything stopped before returning."""
    names = [f"student{i:03d}" for i in range(1, students + 1)]
    abort = threading.Event()
    sessions: dict[str, Session] = {}
    runs: list[StudentRun] = []
    sampler: Sampler | None = None
    setup: dict[str, float] = {}
    failures: list[tuple[str, str, str]] = []
    stops: list[float] = []
    generator = psutil.Process()
    with tempfile.TemporaryDirectory(prefix="deepgrade-hubload-") as folder:
        hub = Hub.create(Path(folder))
        hub.env["DEEPGRADE_WORKERS"] = "0"  # the exchange queues submissions; nothing grades them
        hub.env["TF_CPP_MIN_LOG_LEVEL"] = "3"
        completed = False
        try:
            began = time.perf_counter()
            add_people(hub, names)
            setup["users"] = time.perf_counter() - began
            began = time.perf_counter()
            hub.start(timeout=180)
            setup["hub start"] = time.perf_counter() - began
            setup["release"] = release(hub)
            assert hub.process is not None
            sampler = Sampler(hub.process.pid, hub.data / "home", interval)
            sampler.sample()  # primes cpu_percent; the idle hub's memory
            idle_rss = sampler.usage.hub_rss[-1]
            sampler.usage = Usage()
            sampler.start()
            print(f"hub up ({', '.join(f'{k} {v:.1f} s' for k, v in setup.items())}); "
                  f"running the class of {students}", flush=True)
            cpu_before = generator.cpu_times()
            began = time.perf_counter()
            pool = ThreadPoolExecutor(max_workers=max(1, min(concurrency, students)), thread_name_prefix="student")
            futures: list[Future[StudentRun]] = [
                pool.submit(run_student, hub, name, abort, spawn_timeout, sessions) for name in names]
            try:
                for future in as_completed(futures):
                    runs.append(future.result())
            except KeyboardInterrupt:
                abort.set()
                pool.shutdown(wait=False, cancel_futures=True)
                print("\ninterrupted: stopping the servers and the hub", file=sys.stderr, flush=True)
                raise
            pool.shutdown()
            wall = time.perf_counter() - began
            cpu_after = generator.cpu_times()
            sampler.stop()
            completed = True
        finally:
            if sampler is not None:
                sampler.stop()
            stops, failures = shut_down(hub, sessions, sampler, measured=completed)
            if completed and (any(r.failure for r in runs) or failures):
                log = hub.log.read_text(errors="replace") if hub.log and hub.log.exists() else ""
                print("hub log, last lines:\n  " + "\n  ".join(log.splitlines()[-25:]), file=sys.stderr)
    assert sampler is not None
    failures = [(r.name, *r.failure) for r in sorted(runs, key=lambda r: r.name) if r.failure] + failures
    generator_cpu = (sum(cpu_after[:2]) - sum(cpu_before[:2])) / wall * 100
    usage = sampler.usage
    return {"students": students, "concurrency": min(concurrency, students), "setup": setup, "wall": wall,
            "phases": {phase: [r.seconds[phase] for r in runs if phase in r.seconds] for phase in PHASES}
            | {"stop": stops},
            "throttled": sum(r.throttled for r in runs), "failures": failures,
            "hub_cpu_mean": _mean(usage.hub_cpu), "hub_cpu_peak": max(usage.hub_cpu, default=0.0),
            "hub_rss_idle": idle_rss, "hub_rss_peak": max(usage.hub_rss, default=0),
            "servers_rss_peak": max(usage.servers_rss, default=0), "servers_peak": max(usage.servers, default=0),
            "machine_cpu_mean": _mean(usage.machine_cpu), "machine_cpu_peak": max(usage.machine_cpu, default=0.0),
            "generator_cpu": generator_cpu, "samples": len(usage.hub_cpu),
            "hub_parts": {part: {"cpu_mean": _mean(usage.parts_cpu.get(part, [])),
                                 "cpu_peak": max(usage.parts_cpu.get(part, []), default=0.0),
                                 "rss_peak": max(usage.parts_rss.get(part, []), default=0)}
                          for part in HUB_PARTS}}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def machine() -> str:
    import jupyterhub

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{platform.machine()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 1024**3:.1f} GiB RAM, "
            f"load average {load} before the run · Python {platform.python_version()}, "
            f"JupyterHub {jupyterhub.__version__}")


def report(result: dict[str, Any]) -> None:
    """The table: p50 and p95 per phase, then failures, then the hub's CPU and memory."""
    n, cores = result["students"], os.cpu_count() or 1
    setup = ", ".join(f"{k} {v:.1f} s" for k, v in result["setup"].items())
    print(f"\n{n} student{'s' * (n != 1)}, {result['concurrency']} at once · setup: {setup} · "
          f"all students done in {result['wall']:.1f} s")
    print(f"  {'phase (seconds)':<16} {'ok':>4} {'p50':>7} {'p95':>7} {'max':>7}")
    for phase, values in result["phases"].items():
        print(f"  {phase:<16} {len(values):>4} {percentile(values, 0.5):7.2f} {percentile(values, 0.95):7.2f} "
              f"{max(values, default=math.nan):7.2f}")
    print(f"  spawns throttled (HTTP 429, retried after Retry-After): {result['throttled']}")
    print(f"failures: {len(result['failures'])}")
    for who, phase, why in result["failures"]:
        print(f"  {who} · {phase} · {why}")
    print(f"hub (jupyterhub, proxy, services): CPU mean {result['hub_cpu_mean']:.0f}%, peak "
          f"{result['hub_cpu_peak']:.0f}% (100% = one core, {cores * 100}% = all); RSS idle "
          f"{result['hub_rss_idle'] / MIB:.0f} MiB, peak {result['hub_rss_peak'] / MIB:.0f} MiB")
    for part, seen in result["hub_parts"].items():
        print(f"  {part:<12} CPU mean {seen['cpu_mean']:4.0f}%, peak {seen['cpu_peak']:4.0f}%; "
              f"RSS peak {seen['rss_peak'] / MIB:5.0f} MiB")
    servers = max(result["servers_peak"], 1)
    print(f"student servers: RSS peak {result['servers_rss_peak'] / MIB:.0f} MiB for {result['servers_peak']} "
          f"servers ({result['servers_rss_peak'] / MIB / servers:.0f} MiB each, kernels included while they ran)")
    print(f"machine CPU: mean {result['machine_cpu_mean']:.0f}%, peak {result['machine_cpu_peak']:.0f}% of all "
          f"cores; this load generator: {result['generator_cpu']:.0f}% of one core "
          f"({result['samples']} samples)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=0, help="students at once (default: all)")
    parser.add_argument("--ramp", help="comma-separated class sizes, each on a fresh hub, e.g. 10,20,30,40; "
                                       "stops at the first size with failures")
    parser.add_argument("--spawn-timeout", type=float, default=300,
                        help="seconds for a server to become ready, throttled retries included")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between CPU and memory samples")
    parser.add_argument("--smoke", action="store_true", help="2 students: checks the code runs")
    args = parser.parse_args()
    sizes = [2] if args.smoke else [int(s) for s in args.ramp.split(",")] if args.ramp else [args.students]
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM cleans up like Ctrl-C
    print(f"deepgrade hub load · {COURSE}/{ASSIGNMENT} · {machine()}")
    print("grading on submit: off (DEEPGRADE_WORKERS=0): submissions are queued in the exchange, not graded")
    results = []
    try:
        for size in sizes:
            result = run_class(size, args.concurrency or size, args.spawn_timeout, args.interval)
            report(result)
            results.append(result)
            if result["failures"]:
                break
    except KeyboardInterrupt:
        print("interrupted: everything was stopped", file=sys.stderr)
        return 130
    clean = [r["students"] for r in results if not r["failures"]]
    if len(sizes) > 1:
        print("\nramp")
        print(f"  {'students':>8} {'failures':>8} {'sign-in p95':>11} {'spawn p95':>9} {'hub CPU peak':>12} "
              f"{'hub RSS peak':>12}")
        for r in results:
            print(f"  {r['students']:>8} {len(r['failures']):>8} {percentile(r['phases']['sign-in'], 0.95):11.2f} "
                  f"{percentile(r['phases']['spawn'], 0.95):9.2f} {r['hub_cpu_peak']:11.0f}% "
                  f"{r['hub_rss_peak'] / MIB:8.0f} MiB")
        stopped = "" if len(results) == len(sizes) else f" (stopped after {results[-1]['students']} failed)"
        print(f"largest N with 0 failures: {max(clean) if clean else 'none'}{stopped}")
    summary = [{k: v for k, v in r.items() if k != "phases"}
               | {"p50": {p: percentile(v, 0.5) for p, v in r["phases"].items()},
                  "p95": {p: percentile(v, 0.95) for p, v in r["phases"].items()}} for r in results]
    print("\n" + json.dumps(summary, default=float))
    return 0 if results and not results[-1]["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
