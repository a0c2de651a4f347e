"""Thresholds are measured, not guessed (``deepgrade calibrate``).

The reference runs over N seeds with thresholds switched off; every metric a check compares
against a named threshold is recorded. The threshold is the reference's worst seed moved by
the configured margin (``below``: worst * (1 + margin); ``above``: worst * (1 - margin)). The
planted mistakes that should fail that check are graded too, and calibration fails loudly if
the threshold would let one of them pass. The distributions, the chosen thresholds and the
reference's learning-curve band are written back into ``assignment.yaml``.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autograders.assignment import Assignment
from autograders.validate import Job, apply_mistake, run_jobs


class CalibrationError(RuntimeError):
    pass


def _metric_values(jobs: list[Job]) -> tuple[dict[str, list[float]], dict[str, str]]:
    values: dict[str, list[float]] = {}
    owner: dict[str, str] = {}
    for job in jobs:
        for check in job.result.get("checks", []):
            for key, value in check.get("metrics", {}).items():
                values.setdefault(key, []).append(value)
                owner[key] = check["id"]
    return values, owner


def _curves(jobs: list[Job]) -> dict[str, dict[str, list[float]]]:
    series: dict[str, list[list[float]]] = {}
    for job in jobs:
        for path in sorted((job.workdir / "sandbox" / "artifacts").glob("*/*.history.json")):
            history = json.loads(path.read_text()).get("history", {})
            if history.get("loss"):
                series.setdefault(f"{path.parent.name}: loss", []).append(history["loss"])
    bands = {}
    for label, runs in series.items():
        n = min(len(r) for r in runs)
        bands[label] = {"min": [round(min(r[i] for r in runs), 6) for i in range(n)],
                        "max": [round(max(r[i] for r in runs), 6) for i in range(n)]}
    return bands


def choose(values: list[float], direction: str, margin: float) -> float:
    worst = max(values) if direction == "below" else min(values)
    return worst * (1 + margin) if direction == "below" else worst * (1 - margin)


def calibrate(assignment: Assignment, seeds: int = 5, workers: int = 2,
              on_done: Callable[[Job], None] | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"deepgrade-calibrate-{assignment.name}-") as tmp:
        jobs = [Job(assignment, f"reference seed {s}", assignment.source_notebook, s, calibrating=True)
                for s in range(1, seeds + 1)]
        jobs += [Job(assignment, f"mistake {m.id}", apply_mistake(assignment, m, Path(tmp) / f"{m.id}.ipynb"), 1,
                     calibrating=True) for m in assignment.mistakes]
        run_jobs(jobs, workers, Path(tmp), on_done)
        curves = _curves([j for j in jobs if j.label.startswith("reference")])
    reference = [j for j in jobs if j.label.startswith("reference")]
    broken = [j for j in jobs if j.label.startswith("mistake")]
    for job in reference:
        failing = [c["id"] for c in job.result.get("checks", []) if not c["passed"]]
        if job.result.get("status") != "graded" or failing:
            raise CalibrationError(f"{job.label} does not pass: {job.result.get('message') or failing}")
    values, owner = _metric_values(reference)
    specs = assignment.config.setdefault("thresholds", {})
    missing = set(specs) - set(values)
    if missing:
        raise CalibrationError(f"no check measured the thresholds {sorted(missing)}")
    problems = []
    for key, spec in specs.items():
        direction, margin = spec.get("direction", "below"), float(spec.get("margin", 0.25))
        threshold = choose(values[key], direction, margin)
        spec["value"] = float(f"{threshold:.6g}")
        spec["reference"] = {"values": [float(f"{v:.6g}") for v in values[key]],
                             "median": float(f"{statistics.median(values[key]):.6g}"),
                             "worst": float(f"{choose(values[key], direction, 0.0):.6g}")}
        spec["broken"] = {}
        for job in broken:
            mistake = next(m for m in assignment.mistakes if f"mistake {m.id}" == job.label)
            measured = [c.get("metrics", {}).get(key) for c in job.result.get("checks", [])
                        if c["id"] == owner[key]]
            value = measured[0] if measured and measured[0] is not None else None
            spec["broken"][mistake.id] = None if value is None else float(f"{value:.6g}")
            passes = value is not None and (value <= threshold if direction == "below" else value >= threshold)
            if owner[key] in mistake.loses and passes:
                problems.append(f"threshold {key}={threshold:.4g} lets mistake '{mistake.id}' pass "
                                f"(it measured {value:.4g})")
    assignment.config["calibration"] = {
        "seeds": list(range(1, seeds + 1)), "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "curves": curves,
    }
    if problems:
        raise CalibrationError("; ".join(problems))
    assignment.save()
    return specs
