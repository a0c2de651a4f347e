"""The sandbox really isolates: no network, no view of hidden tests or data, and the
assignment's memory, process, file-size and disk limits; the development-only process sandbox
is honest about isolating nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from autograders.assignment import Limits, repo_root
from autograders.sandbox import (
    BubblewrapSandbox,
    ProcessSandbox,
    _own_cgroups,
    default_sandbox,
    disk_exceeded,
    file_size_exceeded,
    memory_exceeded,
    pids_exceeded,
    thread_env,
)

PROBE = """
import os, socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3).close()
    print("network: open")
except OSError as exc:
    print("network: blocked", type(exc).__name__)
for path in sys.argv[2:]:
    print(path, "visible" if os.path.exists(path) else "hidden")
open("written.txt", "w").write("ok")
for target in ("/usr/evil.txt", "/evil.txt"):
    try:
        open(target, "w")
        print(target, "writable")
    except OSError:
        print(target, "read-only")
print("uid", os.getuid())
"""


def _probe(sandbox, tmp_path: Path, port: int) -> str:
    hidden = [str(repo_root() / "assignments"), str((repo_root().parent / "shared").resolve()), "/root/.ssh"]
    run = sandbox.run([sys.executable, "-c", PROBE, str(port), *hidden], workdir=tmp_path, readonly=[],
                      env={}, timeout=60)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "written.txt").read_text() == "ok"
    return run.stdout


def test_bubblewrap_blocks_network_and_hides_hidden_files(tmp_path: Path, listener: int) -> None:
    assert BubblewrapSandbox.available(), "bubblewrap must be installed (make test installs it)"
    out = _probe(BubblewrapSandbox(), tmp_path, listener)
    assert "network: blocked" in out
    assert "assignments hidden" in out
    assert "shared hidden" in out
    assert "/usr/evil.txt read-only" in out


def test_process_sandbox_isolates_nothing_and_says_so(tmp_path: Path, listener: int) -> None:
    sandbox = ProcessSandbox()
    out = _probe(sandbox, tmp_path, listener)
    assert "network: open" in out  # the same probe that bubblewrap blocks gets through
    assert "assignments visible" in out
    assert sandbox.development_only and "development only" in sandbox.isolation


def test_wall_clock_limit_kills_the_whole_process_group(tmp_path: Path) -> None:
    code = "import subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"
    run = BubblewrapSandbox().run([sys.executable, "-c", code], workdir=tmp_path, readonly=[], env={}, timeout=3)
    assert run.timed_out and run.duration < 30


def test_default_sandbox_is_bubblewrap_here() -> None:
    assert default_sandbox().isolation == "bubblewrap"
    assert default_sandbox("process").development_only


# -- resource limits (cgroups, rlimits, watchdog) -------------------------------------------------
def _bwrap_run(code: str, tmp_path: Path, limits: Limits | None = None, timeout: float = 60, **traits):
    return BubblewrapSandbox(**traits).run([sys.executable, "-c", code], workdir=tmp_path, readonly=[], env={},
                                           timeout=timeout, limits=limits)


def test_memory_limit_kills_the_biggest_process_and_says_so(tmp_path: Path) -> None:
    # Like a notebook kernel: the child dies, the runner that started it lives on.
    code = ("import subprocess, sys\n"
            "bomb = 'b = []\\nwhile True: b.append(bytearray(10**7))'\n"
            "print('child', subprocess.run([sys.executable, '-c', bomb]).returncode)\n")
    run = _bwrap_run(code, tmp_path, Limits(memory=200))
    assert "child -9" in run.stdout, run.stderr
    assert run.exceeded == [memory_exceeded(Limits(memory=200))]
    assert "more than 200 MiB of memory" in run.exceeded[0]
    assert 100 < run.usage["memory_peak_mib"] <= 200


def test_process_limit_counts_processes_and_threads(tmp_path: Path) -> None:
    code = ("import os, threading, time\n"
            "threads = []\n"
            "try:\n"
            "    for n in range(100):\n"
            "        t = threading.Thread(target=time.sleep, args=(2,)); t.start(); threads.append(t)\n"
            "except RuntimeError as exc:\n"
            "    print('thread failed after', len(threads), exc)\n"
            "for n in range(100):\n"
            "    try:\n"
            "        if os.fork() == 0:\n"
            "            time.sleep(2); os._exit(0)\n"
            "    except OSError as exc:\n"
            "        print('fork failed after', n, exc); break\n")
    run = _bwrap_run(code, tmp_path, Limits(pids=24))
    assert "thread failed after" in run.stdout and "fork failed after" in run.stdout, run.stdout + run.stderr
    assert run.exceeded == [pids_exceeded(Limits(pids=24))]
    assert "more than 24 processes or threads" in run.exceeded[0]


def test_file_size_is_capped_and_core_dumps_are_off(tmp_path: Path) -> None:
    code = ("import resource\n"
            "print('core', resource.getrlimit(resource.RLIMIT_CORE))\n"
            "try:\n"
            "    with open('big.bin', 'wb') as f:\n"
            "        for _ in range(5): f.write(b'x' * 2**20)\n"
            "except OSError as exc:\n"
            "    print('write failed:', exc.strerror)\n")
    run = _bwrap_run(code, tmp_path, max_file_size=2)
    assert "core (0, 0)" in run.stdout and "write failed: File too large" in run.stdout, run.stdout + run.stderr
    assert (tmp_path / "big.bin").stat().st_size == 2 * 2**20
    assert run.exceeded == [file_size_exceeded(2, ["big.bin"])]


def test_disk_watchdog_kills_a_run_that_fills_its_work_directory(tmp_path: Path) -> None:
    code = ("import time\n"
            "for i in range(40):\n"
            "    open(f'f{i}', 'wb').write(b'x' * 2**20)\n"
            "time.sleep(60)\n")
    run = _bwrap_run(code, tmp_path, timeout=90, disk_limit=20)
    assert not run.timed_out and run.duration < 30
    assert run.exceeded == [disk_exceeded(20)]


def test_a_flood_on_stdout_costs_the_grader_no_memory(tmp_path: Path) -> None:
    """The runner keeps the tail of what the command prints, never all of it."""
    flood = "import os\nfor _ in range(400): os.write(1, b'y' * 2**20)\nprint('the end')"
    driver = (f"import resource, sys\nfrom pathlib import Path\nfrom autograders.sandbox import BubblewrapSandbox\n"
              f"before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
              f"run = BubblewrapSandbox().run([sys.executable, '-c', {flood!r}], workdir=Path({str(tmp_path)!r}), "
              f"readonly=[], env={{}}, timeout=120)\n"
              f"grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
              f"print(len(run.stdout), run.stdout.endswith('the end\\n'), grew // 1024)\n")
    proc = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=180,
                          cwd=repo_root())
    kept, tail, grew_mib = proc.stdout.split()
    assert tail == "True" and int(kept) < 1_100_000, proc.stdout + proc.stderr
    assert int(grew_mib) < 100, f"the grader grew by {grew_mib} MiB while 400 MiB were printed"


def test_each_run_gets_its_own_cgroup_and_leaves_none_behind(tmp_path: Path) -> None:
    """Runs from several threads at once: each is limited on its own, and cleaned up."""
    bomb = "b = []\nwhile True: b.append(bytearray(10**7))"
    calm = "import time; time.sleep(2); print('calm')"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with ThreadPoolExecutor(2) as pool:
        hog = pool.submit(_bwrap_run, bomb, tmp_path / "a", Limits(memory=150))
        ok = pool.submit(_bwrap_run, calm, tmp_path / "b", Limits(memory=150))
        hog, ok = hog.result(), ok.result()
    assert hog.returncode == -9 or hog.returncode == 137, hog
    assert hog.exceeded and not ok.exceeded and ok.stdout == "calm\n"
    mine = f"deepgrade-{os.getpid()}-"
    left = [p for folder, _ in _own_cgroups(Path("/sys/fs/cgroup")).values() for p in folder.iterdir()
            if p.name.startswith(mine)]
    assert left == []


def test_limits_that_cannot_be_enforced_are_recorded(tmp_path: Path) -> None:
    run = _bwrap_run("print('ran')", tmp_path, cgroup_root=str(tmp_path / "no-cgroups-here"))
    assert run.returncode == 0 and run.stdout == "ran\n"
    notes = " | ".join(run.unenforced)
    assert "memory: not enforced" in notes and "processes: not enforced" in notes
    if os.geteuid() == 0:
        assert "RLIMIT_NPROC does not bind root" in notes
    assert "cpus: not enforced (no writable 'cpu' cgroup controller here)" in notes
    dev = ProcessSandbox().run(["true"], workdir=tmp_path, readonly=[], env={}, timeout=10)
    assert len(dev.unenforced) == 4 and all("not enforced" in n for n in dev.unenforced)


def test_cgroups_are_enforced_on_this_machine(tmp_path: Path) -> None:
    """CI and the grading machines run as root with writable cgroups: nothing may fall back there."""
    run = _bwrap_run("print('ran')", tmp_path)
    assert run.unenforced == []
    assert run.usage["pids_peak"] >= 1 and run.usage["memory_peak_mib"] > 0


def test_cpu_quota_holds_a_run_to_its_cores(tmp_path: Path) -> None:
    """Two processes spinning for 3 s get 2 cores' worth without a limit, half a core with cpus=0.5."""
    code = ("import os, time\n"
            "def spin():\n"
            "    end = time.monotonic() + 3\n"
            "    while time.monotonic() < end: pass\n"
            "kids = [os.fork() for _ in range(2)]\n"
            "if 0 in kids: spin(); os._exit(0)\n"
            "for _ in kids: os.wait()\n"
            "t = os.times(); print(t.children_user + t.children_system)\n")
    limited = float(_bwrap_run(code, tmp_path, Limits(cpus=0.5)).stdout)
    assert 0 < limited < 0.5 * 3 * 1.2, limited  # CFS may hand out a little less than the quota
    if (os.cpu_count() or 1) >= 2:
        assert float(_bwrap_run(code, tmp_path, Limits(cpus=2)).stdout) > 2 * limited


def test_thread_pools_follow_the_cpu_limit() -> None:
    assert thread_env(Limits(cpus=1.0))["TF_NUM_INTRAOP_THREADS"] == "1"
    env = thread_env(Limits(cpus=6.5))
    assert env["OMP_NUM_THREADS"] == env["TF_NUM_INTEROP_THREADS"] == "7"


def test_gpu_assignments_get_the_nvidia_devices_or_say_there_are_none(tmp_path: Path, monkeypatch) -> None:
    """bubblewrap's fresh /dev has no GPU: a gpu assignment gets /dev/nvidia* bound in, and a
    machine without them records that the notebook ran on the CPU."""
    from autograders import sandbox as sandbox_module

    box = BubblewrapSandbox()
    argv = box.wrap(["true"], workdir=tmp_path, readonly=[], env={}, limits=Limits(gpu=True))
    devices = sandbox_module.gpu_devices()
    assert argv.count("--dev-bind") == len(devices)
    notes = box.confine(Limits(gpu=True), tmp_path).unenforced
    assert any("no NVIDIA device" in n for n in notes) == (not devices)
    monkeypatch.setattr(sandbox_module, "gpu_devices", lambda: [Path("/dev/nvidia0"), Path("/dev/nvidiactl")])
    argv = box.wrap(["true"], workdir=tmp_path, readonly=[], env={}, limits=Limits(gpu=True))
    assert argv[argv.index("--dev-bind"):argv.index("--dev-bind") + 6] == [
        "--dev-bind", "/dev/nvidia0", "/dev/nvidia0", "--dev-bind", "/dev/nvidiactl", "/dev/nvidiactl"]
    assert "--dev-bind" not in box.wrap(["true"], workdir=tmp_path, readonly=[], env={}, limits=Limits())


SPLIT_PROBE = r"""
import json, os, sys
import datasets
from datasets import split_secret
report = {"secret_files": [str(p) for p in (split_secret.secret_path(), *map(__import__('pathlib').Path, sys.argv[1:]))
                           if os.path.exists(p)]}
for what, call in (("hidden rows", lambda: datasets.hidden_split("keras-intro/orbit")),
                   ("which rows", lambda: datasets.hidden_mask(1797, datasets.Split(0.2, "digits"))),
                   ("league seed", lambda: __import__("datasets.league").league.league_seed())):
    try:
        call()
        report[what] = "rebuilt"
    except datasets.DatasetError as exc:
        report[what] = type(exc).__name__

print(json.dumps(report))
"""


def test_nothing_in_the_grading_sandbox_determines_the_hidden_rows(tmp_path: Path) -> None:
    """The split keys live with the platform's state; the sandbox a submission runs in (the same
    view as the notebook runner's) sees neither them nor the full data, so code there can rebuild
    neither the hidden rows nor the league's answer key, however it tries."""
    import json

    from autograders.assignment import Assignment
    from autograders.kernels import runner_command
    from datasets import ensure_secret, secret_path

    ensure_secret()
    secret = secret_path()
    work = tmp_path / "work"
    work.mkdir()
    command = runner_command(Assignment.load("keras-intro/01-introducing-keras"), work, [])
    run = BubblewrapSandbox().run([sys.executable, "-c", SPLIT_PROBE, str(secret)], workdir=work,
                                  readonly=command["readonly"], env=command["env"], timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["secret_files"] == [], report
    assert report["hidden rows"] in ("SecretUnavailable", "DatasetUnavailable"), report
    # even with a full public copy of the data (scikit-learn ships the digits), which rows are hidden
    # depends on a key the sandbox does not have
    assert report["which rows"] == "SecretUnavailable", report
    assert report["league seed"] in ("SecretUnavailable", "DatasetUnavailable"), report
