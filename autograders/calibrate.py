"""Thresholds are measured, not guessed (``deepgrade calibrate``).

The reference runs over N seeds (20 by default), and each equivalent rewrite on seed 1, with
thresholds switched off; every metric a check compares against a named threshold is recorded.
The threshold starts as the worst correct run moved by the configured margin (``below``:
worst * (1 + margin); ``above``: worst * (1 - margin)). Then the chance that a correct solution
fails it on an unseen seed is bounded: with the runs' mean and spread taken at their 95 %
confidence limits towards the threshold, a normal model gives an upper bound on that false-fail
rate; where the bound is over 1 % the threshold moves out until it is 1 %. The planted mistakes
that should fail that check are graded too, and calibration fails loudly if the threshold would
let one of them pass. The distributions, the bounds, the chosen thresholds and the reference's
learning-curve band are written back into ``assignment.yaml``.
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
from autograders.validate import Job, apply_mistake, rewrites, run_jobs


class CalibrationError(RuntimeError):
    pass


def _metric_values(jobs: list[Job]) -> tuple[dict[str, list[float]], dict[str, str]]:
    values: dict[str, list[float]] = {}
    owner: dict[str, str] = {}
    for job in jobs:
        seen: set[str] = set()  # one value per run, however many checks compare against the threshold
        for check in job.result.get("checks", []):
            for key, value in check.get("metrics", {}).items():
                if key not in seen:
                    seen.add(key)
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


MAX_FALSE_FAIL = 0.01  # the most a correct solution may fail a threshold, at 95 % confidence
CONFIDENCE = 0.95


def _pessimistic(values: list[float], direction: str) -> tuple[float, float, float]:
    """(mean, spread, sign): the runs' mean at its 95 % confidence limit towards the failing side,
    their spread at its upper limit (chi-square), and +1 for ``below``, -1 for ``above``."""
    from scipy import stats

    n = len(values)
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    sign = 1.0 if direction == "below" else -1.0  # distance to the threshold, positive on the passing side
    sd_high = sd * ((n - 1) / stats.chi2.ppf(1 - CONFIDENCE, n - 1)) ** 0.5
    return mean + sign * stats.t.ppf(CONFIDENCE, n - 1) * sd / n**0.5, sd_high, sign


def false_fail_bound(values: list[float], threshold: float, direction: str) -> float:
    """An upper 95 % confidence bound on the chance that a correct run lands on the failing side of
    ``threshold``, under a normal model taken at its pessimistic limits. Spread-free values give 0 or 1."""
    from scipy import stats

    if len(values) < 2 or statistics.stdev(values) == 0.0:
        return 0.0 if _passes(statistics.fmean(values), threshold, direction) else 1.0
    mean_near, sd_high, sign = _pessimistic(values, direction)
    return float(stats.norm.sf(sign * (threshold - mean_near) / sd_high))


def one_percent_threshold(values: list[float], direction: str) -> float:
    """The threshold whose false-fail bound is exactly :data:`MAX_FALSE_FAIL`."""
    from scipy import stats

    mean_near, sd_high, sign = _pessimistic(values, direction)
    return mean_near + sign * stats.norm.isf(MAX_FALSE_FAIL) * sd_high


def observed_bound(failures: int, runs: int) -> float:
    """The distribution-free (Clopper-Pearson) 95 % upper bound on a rate seen ``failures`` times
    in ``runs``: what the seeds alone prove, without the normal model."""
    from scipy import stats

    return 1.0 if failures >= runs else float(stats.beta.ppf(CONFIDENCE, failures + 1, runs - failures))


def lenient(a: float, b: float, direction: str) -> float:
    return max(a, b) if direction == "below" else min(a, b)


def _uncaught_mistakes(assignment: Assignment, broken: list[Job], specs: dict[str, Any]) -> list[str]:
    """Each check a planted mistake must lose either failed even with thresholds off (for a reason
    of its own), or one of its thresholds, as chosen, catches the mistake's value."""
    problems = []
    for job in broken:
        mistake = next(m for m in assignment.mistakes if f"mistake {m.id}" == job.label)
        for check in job.result.get("checks", []):
            if check["id"] not in mistake.loses or not check["passed"]:
                continue
            keys = [k for k in check.get("metrics", {}) if k in specs]
            caught = [k for k in keys if not _passes(
                check["metrics"][k], specs[k]["value"], specs[k].get("direction", "below"))]
            if keys and not caught:
                values = ", ".join(f"{k}={check['metrics'][k]:.4g} against {specs[k]['value']:.4g}"
                                   for k in keys)
                problems.append(f"no threshold of {check['id']} catches mistake '{mistake.id}' ({values}); a "
                                f"threshold that fails correct runs at most {MAX_FALSE_FAIL:.0%} of the time cannot "
                                "separate them: rework the check")
    return problems


def _passes(value: float, threshold: float, direction: str) -> bool:
    return value <= threshold if direction == "below" else value >= threshold


def calibrate(assignment: Assignment, seeds: int = 20, workers: int = 2,
              on_done: Callable[[Job], None] | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"deepgrade-calibrate-{assignment.name}-") as tmp:
        jobs = [Job(assignment, f"reference seed {s}", assignment.source_notebook, s, calibrating=True)
                for s in range(1, seeds + 1)]
        jobs += [Job(assignment, f"rewrite {r.id}", apply_mistake(assignment, r, Path(tmp) / f"rewrite-{r.id}.ipynb"),
                     1, calibrating=True) for r in rewrites(assignment)]
        jobs += [Job(assignment, f"mistake {m.id}", apply_mistake(assignment, m, Path(tmp) / f"{m.id}.ipynb"), 1,
                     calibrating=True) for m in assignment.mistakes]
        run_jobs(jobs, workers, Path(tmp), on_done)
        curves = _curves([j for j in jobs if j.label.startswith("reference")])
    correct = [j for j in jobs if not j.label.startswith("mistake")]
    broken = [j for j in jobs if j.label.startswith("mistake")]
    for job in correct:
        failing = [c["id"] for c in job.result.get("checks", []) if not c["passed"]]
        if job.result.get("status") != "graded" or failing:
            raise CalibrationError(f"{job.label} does not pass: {job.result.get('message') or failing}")
    values, owner = _metric_values(correct)
    specs = assignment.config.setdefault("thresholds", {})
    missing = set(specs) - set(values)
    if missing:
        raise CalibrationError(f"no check measured the thresholds {sorted(missing)}")
    problems: list[str] = []
    for key, spec in specs.items():
        direction, margin = spec.get("direction", "below"), float(spec.get("margin", 0.25))
        threshold = choose(values[key], direction, margin)
        if len(values[key]) > 2 and false_fail_bound(values[key], threshold, direction) > MAX_FALSE_FAIL:
            threshold = lenient(threshold, one_percent_threshold(values[key], direction), direction)
        spec["value"] = float(f"{threshold:.6g}")
        bound = false_fail_bound(values[key], spec["value"], direction) if len(values[key]) > 2 else 1.0
        spec["reference"] = {"values": [float(f"{v:.6g}") for v in values[key]],
                             "median": float(f"{statistics.median(values[key]):.6g}"),
                             "worst": float(f"{choose(values[key], direction, 0.0):.6g}"),
                             "false_fail": {"runs": len(values[key]), "bound": float(f"{bound:.3g}"),
                                            "observed_bound": float(f"{observed_bound(0, len(values[key])):.3g}"),
                                            "confidence": CONFIDENCE}}
        spec["broken"] = {}
        for job in broken:
            mistake = next(m for m in assignment.mistakes if f"mistake {m.id}" == job.label)
            measured = [c.get("metrics", {}).get(key) for c in job.result.get("checks", [])
                        if c["id"] == owner[key]]
            value = measured[0] if measured and measured[0] is not None else None
            spec["broken"][mistake.id] = None if value is None else float(f"{value:.6g}")
    problems += _uncaught_mistakes(assignment, broken, specs)
    assignment.config["calibration"] = {
        "seeds": list(range(1, seeds + 1)), "rewrites": [r.id for r in rewrites(assignment)],
        "date": datetime.now(UTC).strftime("%Y-%m-%d"), "curves": curves,
    }
    if problems:
        raise CalibrationError("; ".join(problems))
    assignment.save()
    return specs
