"""The hub load benchmark's smoke run: a real hub, 2 students, every phase, nothing left running.

Not a timed test: it proves bench/hub_load.py still works, so the full run (30 students, on a
quiet machine) does not fail on code rot.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("sign-in", "token", "spawn", "kernel", "fetch", "submit", "stop")


def _hub_load_processes() -> set[int]:
    """Processes whose command line points into a hub_load data folder (its DEEPGRADE_HOME)."""
    found = set()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if any("deepgrade-hubload-" in part for part in proc.info["cmdline"] or ()):
            found.add(proc.info["pid"])
    return found


def test_hub_load_smoke() -> None:
    before = _hub_load_processes()
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "hub_load.py"), "--smoke"], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "2 students, 2 at once" in out, out
    assert "grading on submit: off (DEEPGRADE_WORKERS=0)" in out, out
    for phase in PHASES:
        assert f"\n  {phase} " in out, f"no row for {phase}:\n{out}"
    for line in ("failures: 0", "hub (jupyterhub, proxy, services): CPU mean", "student servers: RSS peak",
                 "machine CPU: mean"):
        assert line in out, out
    [result] = json.loads(out.strip().splitlines()[-1])
    assert result["failures"] == [] and result["servers_peak"] == 2
    assert all(result["p95"][phase] > 0 for phase in PHASES), result["p95"]
    assert result["hub_rss_peak"] > 0 and result["servers_rss_peak"] > 0
    assert _hub_load_processes() - before == set(), "servers or hub processes outlived the benchmark"
