"""bench/gpu_smoke.py: its CPU-only smoke run, and the parts that must hold on a GPU machine.

The GPU machines have keras with JAX or PyTorch but neither TensorFlow nor, perhaps, PyYAML or
pandas, so the script reads its YAML with a fallback parser and its data with numpy: those are
checked here against the real thing. The smoke run itself needs keras with a jax or torch
backend in this interpreter and is skipped, saying so, when neither is installed.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import yaml

from autograders.assignment import Assignment, find_all, repo_root

SCRIPT = repo_root() / "bench" / "gpu_smoke.py"


@pytest.fixture(scope="module")
def smoke() -> ModuleType:
    """The script as a module (importing it imports no Keras and no backend)."""
    spec = importlib.util.spec_from_file_location("gpu_smoke", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_smoke"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def test_fallback_yaml_reads_every_threshold_and_dataset_entry_like_pyyaml(smoke: ModuleType) -> None:
    for assignment in find_all(drafts=True):
        text = (assignment.path / "assignment.yaml").read_text()
        real, mine = yaml.safe_load(text), smoke.mini_yaml(text)
        for key, spec in (real.get("thresholds") or {}).items():
            for field in ("value", "direction"):
                assert mine["thresholds"][key].get(field) == spec.get(field), f"{assignment.id} {key}.{field}"
    text = (repo_root() / "datasets" / "registry.yaml").read_text()
    real, mine = yaml.safe_load(text), smoke.mini_yaml(text)
    assert real.keys() == mine.keys()
    for name, entry in real.items():
        for field in ("file", "sha256", "url", "split", "generator"):
            assert mine[name].get(field) == entry.get(field), f"{name}.{field}"


def test_thresholds_are_the_assignments_calibrated_ones(smoke: ModuleType) -> None:
    assignment = Assignment.load(smoke.ASSIGNMENT)
    expected = {key: (float(t), t.direction) for key, t in assignment.thresholds().items()}
    assert smoke.assignment_thresholds(assignment.path) == expected


def test_the_mirrored_checks_are_still_the_assignments_tests(smoke: ModuleType) -> None:
    """The script repeats some of the assignment's tests by name; a renamed one must show up here."""
    assignment = Assignment.load(smoke.ASSIGNMENT)
    source = "\n".join(p.read_text() for p in assignment.tests_dir.glob("test_*.py"))
    defined = set(re.findall(r"^def (test_\w+)\(", source, flags=re.M))
    assert set(smoke.MIRRORED_TESTS) <= defined


def test_without_a_verified_copy_the_data_is_synthetic_and_says_so(smoke: ModuleType, tmp_path: Path) -> None:
    entry = smoke.dataset_entry()
    (tmp_path / Path(entry["file"]).name).write_text("time_steps,y\n0,0\n")  # the wrong bytes
    orbit = smoke.load_orbit(tmp_path)
    assert orbit.synthetic
    assert "SYNTHETIC" in orbit.source and "is not the registered" in orbit.source
    assert orbit.x_public.shape[1] == 1 and orbit.x_public.dtype == np.float32
    # the same rows are held back as from the real file (the split depends on the row count only)
    assert len(orbit.y_public) + len(orbit.y_hidden) == 2000
    from datasets.registry import Split
    from datasets.splits import hidden_mask

    split = Split(entry["split"]["hidden_fraction"], entry["split"]["group"])
    assert len(orbit.y_hidden) == int(hidden_mask(2000, split).sum())


def test_the_real_orbit_is_found_checked_and_matches_the_synthetic_stand_in(smoke: ModuleType) -> None:
    from datasets.registry import mirror_dir

    mirror = mirror_dir()
    entry = smoke.dataset_entry()
    if mirror is None or not (mirror / entry["file"]).is_file():
        pytest.skip("no dataset mirror with the orbit data here")
    real = smoke.load_orbit(mirror)
    assert not real.synthetic and "sha256 checked" in real.source
    fake = smoke.load_orbit(mirror / "no-such-folder")
    assert fake.synthetic
    np.testing.assert_allclose(real.x_hidden, fake.x_hidden, rtol=1e-6)
    np.testing.assert_allclose(real.y_hidden, fake.y_hidden, rtol=1e-5)


def _backend() -> str | None:
    for name in ("jax", "torch"):
        if importlib.util.find_spec(name) is not None:
            return name
    return None


def test_smoke_run_trains_and_grades_on_the_cpu(tmp_path: Path) -> None:
    backend = _backend()
    if backend is None:
        pytest.skip("neither jax nor torch is installed in this environment: Keras here can only run "
                    "on TensorFlow, and the GPU smoke check runs Keras on jax or torch")
    if importlib.util.find_spec("keras") is None:
        pytest.skip("keras is not installed")
    out = tmp_path / "smoke.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--backend", backend, "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["smoke"] is True and result["backend"] == backend
    assert not result["tensorflow_imported"]
    assert result["cnn"]["cpu"]["platform"] == "cpu" and result["cnn"]["cpu"]["epoch_s"] > 0
    graded = result["assignment"]
    assert graded["passed"] and graded["platform"] == "cpu"
    assert [c["name"] for c in graded["checks"]] == [
        "test_meteor_architecture", "test_meteor_compile", "test_meteor_generalizes",
        "test_meteor_training_converged", "test_meteor_retrains", "test_twenty_minute_orbit"]
    assert "the reference passes the assignment's thresholds" in done.stdout
