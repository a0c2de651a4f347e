"""The benchmarks are not timed tests: this only runs their smoke versions, so their code keeps working."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_grading_benchmark_smoke() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "grading.py"), "--smoke"], capture_output=True,
                          text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for line in ("sandbox, Python, kernel start and imports", "side by side", "speed-up of 2 workers over 1",
                 "over 1 worker on 1 core", "what the trusted side's limits cost"):
        assert line in proc.stdout, proc.stdout
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    (row,) = summary["references"]
    assert row["raw"] > 0 and row["cold"] > 0 and row["warm"] > 0 and row["nbgrader"] > 0
    assert row["trusted_limits"] > 0 and row["no_trusted_limits"] > 0
    assert row["cold_steps"]["execute"] > row["cold_steps"]["cells"] > 0
    cores = len(os.sched_getaffinity(0))
    assert [(run["workers"], run["cores"]) for run in summary["throughput"]] == [(1, cores), (2, cores), (1, 1)]
