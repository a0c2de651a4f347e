"""Attacks on the grader, each one a real submission graded through ``runner.grade`` in the
bubblewrap sandbox: the reference notebook of keras-intro/01 with an attacker's edit.

Every test checks two things: the score is what the honest parts earn (the attacked part earns
nothing extra) and the outcome is recorded in words. Attacks on different grade cells share a
submission where they cannot interfere, so that the whole module grades six notebooks, two at a
time. Payloads that would run on the trusted side touch a marker file on the host; each such
test proves the marker stays absent, and, where cheap, that the same payload does create it
when run deliberately (so the check is not vacuous).

The attacks here: monkeypatched autograder functions, forged verdict files, monkeypatched numpy
and keras, reading hidden tests, hidden data and another submission, network (host loopback,
outside, DNS), writes outside the work directory, a manifest path traversal, a pickle in place of
a model, pickled arrays, a Lambda layer, a symlink to a hidden file, an injected Keras config,
an output flood, a fork bomb, a memory bomb, and a script in an output (escaped on the
feedback page). ``tests/test_grading.py`` adds edited, deleted, retyped and
duplicated autograder cells, malformed JSON, non-UTF-8, an exception, an infinite loop and the
whole-run time limit; ``tests/test_sandbox.py`` the file-size, disk and stdout floods.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import socket
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pytest

from autograders.assignment import Assignment, repo_root
from autograders.execute import DEFAULT_OUTPUT_LIMIT, EXECUTED, OutputBudget
from autograders.gradebook import lay_out
from autograders.sandbox import remove_tree
from autograders.validate import Job, run_jobs
from datasets.registry import candidates
from tests.conftest import cell, copy_assignment, edited_notebook

FULL = 15.0
LIMITS = {"time": 240, "cell_timeout": 60, "check_time": 240, "memory": 2048}
PROBE = f"deepgrade-attack-probe-{uuid.uuid4().hex[:8]}.txt"  # a new, harmless file name


# -- notebook surgery ----------------------------------------------------------------------------
def _replace(nb, grade_id: str, old: str, new: str) -> None:
    target = cell(nb, grade_id)
    assert old in target.source, (grade_id, old)
    target.source = target.source.replace(old, new)


def _insert_after(nb, grade_id: str, source: str) -> None:
    index = nb.cells.index(cell(nb, grade_id))
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(source))


BROKEN_HELLO = ('layers.Dense(10, activation="relu"),\n    layers.Dense(1),',
                'layers.Dense(10, activation="relu"),\n    layers.Dense(2),')
BROKEN_SHOWN = ('layers.Dense(3, activation="relu")', 'layers.Dense(4, activation="relu")')

PATCH_AUTOGRADERS = """
import json, pathlib, sys
import autograders, autograders.results
import autograders.checks as _checks

class _Pass:  # every check now 'passes' whatever it is asked
    def __getattr__(self, name): return self
    def __call__(self, *args, **kwargs): return self

for _name in dir(_checks):
    if _name.startswith("check_"):
        setattr(_checks, _name, _Pass())
autograders.results.CheckFailure = type("NeverRaised", (Exception,), {})
_module = sys.modules["autograders.export"]
_real_export = _module.export
_forged = {"checks": [{"id": t, "passed": True, "score": 9, "points": 9} for t in ("test_hello_architecture",
           "test_hello_parameter_count")], "problems": []}

def export(grade_id, **objects):  # the locked autograder cells below call this one
    _real_export(grade_id, **objects)
    for where in ("checks.json", "result.json", "../checks.json", "../result.json"):
        try:
            pathlib.Path(where).write_text(json.dumps(_forged))
        except OSError:
            pass

_module.export = autograders.export = export
print("PATCHED autograders")
"""

# HTML and JavaScript in the student's outputs end up in feedback.html, which the hub serves.
SCRIPT_IN_OUTPUT = """
from IPython.display import HTML, display
display(HTML("<script>window.deepgradeXss = document.cookie</script><h1>15 / 15: all checks passed</h1>"))
"""

PATCH_NUMPY_KERAS = """
import numpy as np, keras
np.mean = lambda *args, **kwargs: 0.0
np.allclose = lambda *args, **kwargs: True
keras.ops.mean = lambda *args, **kwargs: 0.0
keras.losses.mean_squared_error = lambda *args, **kwargs: 0.0
keras.metrics.mean_squared_error = lambda *args, **kwargs: 0.0
keras.Model.evaluate = lambda self, *args, **kwargs: 0.0
keras.Model.count_params = lambda self: 41
print("PATCHED numpy and keras")
"""
# After the predictions are exported: would make an in-process checker see a perfect orbit.
PATCH_PREDICT = """
keras.Model.predict = lambda self, x, **kwargs: np.asarray(x, "float32").reshape(-1, 1) ** 2
print("PATCHED predict")
"""


def _probe_hidden(paths: list[str], hidden_test: str) -> str:
    return f"""
import json, os
_seen = {{p: os.path.exists(p) for p in {paths!r}}}
try:
    import datasets
    datasets.hidden_split("keras-intro/orbit")
    _seen["datasets.hidden_split()"] = True
except Exception as exc:
    _seen["datasets.hidden_split()"] = False
    print("hidden_split:", type(exc).__name__)
print("VISIBLE", json.dumps(_seen))
open({hidden_test!r}).read()
"""


def _probe_network(port: int) -> str:
    return f"""
import json, socket
_net = {{}}
for _name, _address in {{"host listener": ("127.0.0.1", {port}), "outside": ("1.1.1.1", 53)}}.items():
    try:
        socket.create_connection(_address, timeout=5).close()
        _net[_name] = "connected"
    except OSError as exc:
        _net[_name] = type(exc).__name__
try:
    socket.getaddrinfo("example.com", 80)
    _net["dns"] = "resolved"
except OSError as exc:
    _net["dns"] = type(exc).__name__
print("NETWORK", json.dumps(_net))
socket.create_connection(("127.0.0.1", {port}), timeout=5)
"""


def _probe_writes(targets: list[str], read_only_target: str) -> str:
    return f"""
import json, os
_writes = {{}}
for _target in {targets!r}:
    try:
        os.makedirs(os.path.dirname(_target), exist_ok=True)
        with open(_target, "w") as _f:
            _f.write("# overwritten by a student: every check passes\\n")
        _writes[_target] = "written (inside the sandbox)"
    except OSError as exc:
        _writes[_target] = type(exc).__name__
print("WRITES", json.dumps(_writes))
open({read_only_target!r}, "w")
"""


def _traverse_manifest(grade_id: str, host_file: Path) -> str:
    return f"""
import json, os, pathlib
_folder = pathlib.Path(os.environ["DEEPGRADE_EXPORT_DIR"]) / {grade_id!r}
_manifest = json.loads((_folder / "manifest.json").read_text())
_manifest["model"]["file"] = "../" * 30 + {str(host_file).lstrip("/")!r}
(_folder / "manifest.json").write_text(json.dumps(_manifest))
"""


PAYLOAD = """
import os, pathlib, pickle
class _Payload:  # unpickling it runs a shell command (on whichever side unpickles it)
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.system, ("touch " + self.marker,))
_export_dir = pathlib.Path(os.environ["DEEPGRADE_EXPORT_DIR"])
"""


def _pickle_instead_of_model(grade_id: str, marker: Path) -> str:
    return PAYLOAD + f"""
(_export_dir / {grade_id!r} / "model.keras").write_bytes(pickle.dumps(_Payload({str(marker)!r})))
"""


def _pickled_arrays(grade_id: str, marker: Path) -> str:
    return PAYLOAD + f"""
_evil = np.array([_Payload({str(marker)!r})], dtype=object)
np.savez(_export_dir / {grade_id!r} / "arrays.npz", twenty_min_orbit=_evil, eighty_min_orbit=_evil)
"""


def _symlinked_model(grade_id: str, target: Path) -> str:
    return f"""
import os, pathlib
_model = pathlib.Path(os.environ["DEEPGRADE_EXPORT_DIR"]) / {grade_id!r} / "model.keras"
_model.unlink()
_model.symlink_to({str(target)!r})
"""


def _injected_config(grade_id: str, marker: Path) -> str:
    return f"""
import json, os, pathlib, zipfile
_path = pathlib.Path(os.environ["DEEPGRADE_EXPORT_DIR"]) / {grade_id!r} / "model.keras"
with zipfile.ZipFile(_path) as _zip:
    _items = {{i.filename: _zip.read(i.filename) for i in _zip.infolist()}}
_config = json.loads(_items["config.json"])
_config["config"]["layers"].insert(1, {{"module": "subprocess", "class_name": "Popen",
                                       "config": {{"args": ["touch", {str(marker)!r}]}}, "registered_name": None}})
_items["config.json"] = json.dumps(_config).encode()
with zipfile.ZipFile(_path, "w") as _zip:
    for _name, _data in _items.items():
        _zip.writestr(_name, _data)
"""


def _lambda_model(marker: Path) -> str:
    # A lambda's bytecode is saved in the .keras file; it touches the marker wherever the marker's
    # folder exists (on the host, not in the sandbox, where it runs while the model is built).
    touch = (f"(__import__('pathlib').Path({str(marker)!r}).touch() "
             f"if __import__('os').path.isdir({str(marker.parent)!r}) else None, x)[1]")
    return f"""
count_model = keras.Sequential([
    keras.Input(shape=(3,)),
    layers.Dense(5, activation="relu"),
    layers.Lambda(lambda x: {touch}),
    layers.Dense(1),
])
n_params = 26
"""


FLOOD = """
for _line in range(2500):
    print("x" * 999)
"""

# Started from a small process: forked from the kernel itself, every fork would also keep a
# copy-on-write copy of each page the kernel wrote since the fork before, and the memory limit
# would stop the bomb too (both are recorded; this test wants the process limit alone).
FORK_BOMB = '''
import subprocess, sys
_bomb = """
import os, time
forks = 0
while True:
    try:
        if os.fork() == 0:
            time.sleep(3600)  # each child holds on to its process slot
            os._exit(0)
    except OSError:
        break
    forks += 1
open("fork-bomb.txt", "w").write(f"fork failed after {forks} forks")  # the output budget is spent
"""
subprocess.run([sys.executable, "-c", _bomb])
'''

MEMORY_BOMB = """
_hog = []
while True:
    _hog.append(np.ones(2**24))  # 128 MiB at a time, written so it is really used
"""


# -- the graded attacks --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    yield server
    server.close()


@pytest.fixture(scope="module")
def attack(first_assignment: Assignment, tmp_path_factory: pytest.TempPathFactory, listener) -> dict:
    """Grade every attack once, two at a time, and describe what each one aimed at."""
    tmp = tmp_path_factory.mktemp("attacks")
    quick = copy_assignment(first_assignment, tmp / "assignments", limits=LIMITS)
    markers = tmp / "markers"  # on the host only: a payload that runs on the trusted side creates one
    markers.mkdir()
    sentinel = tmp / "host-sentinel.txt"
    sentinel.write_text("original\n")
    hidden_test = quick.tests_dir / "test_introducing_keras.py"
    host_data = [str(p) for _, p in candidates("keras-intro/orbit") if p.exists()]
    hidden = [str(hidden_test), str(quick.path / "assignment.yaml"), str(first_assignment.tests_dir),
              str(repo_root() / "assignments"), str(tmp / "runs" / "000-monkeypatch-autograders"), *host_data]
    probes = [repo_root() / "autograders" / PROBE, Path(sys.prefix) / PROBE,
              first_assignment.tests_dir / PROBE]
    targets = {
        "hidden tests": hidden_test, "host /tmp": sentinel, "repository": probes[0],
        "virtualenv": probes[1], "assignments folder": probes[2],
    }
    port = listener.getsockname()[1]

    def monkeypatch_autograders(nb):
        _replace(nb, "hello-nets-solution", *BROKEN_HELLO)
        _insert_after(nb, "setup", PATCH_AUTOGRADERS)
        _insert_after(nb, "setup", SCRIPT_IN_OUTPUT)

    def monkeypatch_numpy_keras(nb):
        _replace(nb, "meteor-model-solution", "epochs=30", "epochs=0")
        _insert_after(nb, "meteor-model-solution", PATCH_NUMPY_KERAS)
        _insert_after(nb, "meteor-predictions", PATCH_PREDICT)

    def escape(nb):
        _insert_after(nb, "setup", _probe_hidden(hidden, str(hidden_test)))
        _insert_after(nb, "counting-solution", _probe_network(port))
        _insert_after(nb, "counting", _traverse_manifest("counting", quick.path / "assignment.yaml"))
        _replace(nb, "build-as-shown-solution", *BROKEN_SHOWN)
        _insert_after(nb, "build-as-shown-solution", _probe_writes([str(t) for t in targets.values()],
                                                                   str(probes[0])))

    def tamper(nb):
        _insert_after(nb, "hello-nets", _pickle_instead_of_model("hello-nets", markers / "pickle"))
        cell(nb, "counting-solution").source = _lambda_model(markers / "lambda")
        _insert_after(nb, "build-as-shown", _symlinked_model("build-as-shown", hidden_test))
        _insert_after(nb, "meteor-model", _injected_config("meteor-model", markers / "config"))
        _insert_after(nb, "meteor-predictions", _pickled_arrays("meteor-predictions", markers / "npz"))

    def flood_and_fork(nb):
        _insert_after(nb, "hello-nets", FLOOD)
        nb.cells.append(nbformat.v4.new_code_cell(FORK_BOMB))

    def memory_bomb(nb):
        cell(nb, "meteor-predictions-solution").source = MEMORY_BOMB

    attacks = {"monkeypatch-autograders": monkeypatch_autograders, "monkeypatch-numpy-keras": monkeypatch_numpy_keras,
               "escape": escape, "tamper": tamper, "flood-and-fork": flood_and_fork, "memory-bomb": memory_bomb}
    hashes = {str(p): _sha(p) for p in (hidden_test, quick.path / "assignment.yaml", sentinel)}
    jobs = [Job(quick, name, edited_notebook(quick, tmp / f"{name}.ipynb", edit), 1) for name, edit in attacks.items()]
    try:
        done = {job.label: job for job in run_jobs(jobs, workers=2, base=tmp / "runs")}
    finally:
        leaked = [p for p in probes if p.exists()]
        for p in leaked:  # never leave an attacker's file in the checkout, even when a test fails
            p.unlink()
    return {"jobs": done, "markers": markers, "hidden": hidden, "hidden_test": hidden_test, "hashes": hashes,
            "targets": targets, "leaked": leaked, "listener": listener, "sentinel": sentinel}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _result(attack: dict, name: str) -> dict:
    return attack["jobs"][name].result


def _check(result: dict, check_id: str) -> dict:
    return next(c for c in result["checks"] if c["id"] == check_id)


def _failed(result: dict) -> set[str]:
    return {c["id"] for c in result["checks"] if not c["passed"]}


def _cell_scores(result: dict) -> dict[str, float]:
    return {gid: c["score"] for gid, c in result["grade_cells"].items()}


def _executed(attack: dict, name: str) -> nbformat.NotebookNode:
    return nbformat.read(attack["jobs"][name].workdir / "sandbox" / EXECUTED, as_version=4)


def _printed(attack: dict, name: str, tag: str) -> dict:
    """The JSON an attack cell printed after ``tag``."""
    for c in _executed(attack, name).cells:
        for out in c.get("outputs", []):
            for line in out.get("text", "").splitlines():
                if line.startswith(tag + " "):
                    return json.loads(line[len(tag) + 1:])
    raise AssertionError(f"{name}: the attack cell printed no {tag} line")


# -- monkeypatching inside the kernel changes nothing in the trusted checker ------------------
def test_monkeypatched_autograder_functions_change_nothing(attack: dict) -> None:
    result = _result(attack, "monkeypatch-autograders")
    assert result["status"] == "graded", result["message"]
    outputs = json.dumps([c.get("outputs", []) for c in _executed(attack, "monkeypatch-autograders").cells])
    assert "PATCHED autograders" in outputs
    assert _failed(result) == {"test_hello_architecture", "test_hello_parameter_count"}
    assert result["score"] == FULL - 2 and _cell_scores(result)["hello-nets"] == 0
    assert "units" in _check(result, "test_hello_architecture")["message"]


def test_forged_verdict_files_are_ignored(attack: dict) -> None:
    job = attack["jobs"]["monkeypatch-autograders"]
    forged = json.loads((job.workdir / "sandbox" / "checks.json").read_text())
    assert forged["checks"][0]["passed"], "the forgery was written where the sandbox could write"
    real = json.loads((job.workdir / "checks.json").read_text())  # the checker's, outside the sandbox
    assert {c["id"] for c in real["checks"] if not c["passed"]} == {"test_hello_architecture",
                                                                   "test_hello_parameter_count"}
    assert json.loads((job.workdir / "result.json").read_text())["score"] == FULL - 2


def test_scripts_in_student_outputs_do_not_reach_the_feedback_page(attack: dict) -> None:
    job = attack["jobs"]["monkeypatch-autograders"]
    outputs = json.dumps([c.get("outputs", []) for c in _executed(attack, "monkeypatch-autograders").cells])
    assert "window.deepgradeXss" in outputs, "the attack ran"
    assert "<script>window.deepgradeXss" not in (job.workdir / "feedback.html").read_text()


def test_monkeypatched_numpy_and_keras_change_nothing(attack: dict) -> None:
    result = _result(attack, "monkeypatch-numpy-keras")
    outputs = json.dumps([c.get("outputs", []) for c in _executed(attack, "monkeypatch-numpy-keras").cells])
    assert "PATCHED numpy and keras" in outputs and "PATCHED predict" in outputs
    # an untrained model loses exactly what the planted mistake 'meteor-untrained' loses
    assert _failed(result) == {"test_meteor_generalizes", "test_meteor_training_converged",
                               "test_twenty_minute_orbit"}
    assert result["score"] == FULL - 4
    generalizes = _check(result, "test_meteor_generalizes")
    assert generalizes["measured"] > 100, generalizes  # the real error, not the patched 0.0
    assert "mse" in generalizes["message"].lower()


# -- what the sandbox hides and blocks -----------------------------------------------------------
def test_hidden_tests_and_hidden_data_do_not_exist_in_the_sandbox(attack: dict) -> None:
    for path in attack["hidden"]:
        assert Path(path).exists(), f"the probe is only meaningful if {path} exists on the host"
    assert any("datasets" in p for p in attack["hidden"]), "the full dataset (with hidden rows) is probed"
    seen = _printed(attack, "escape", "VISIBLE")
    assert not any(seen.values()), {p: v for p, v in seen.items() if v}
    assert set(seen) == set(attack["hidden"]) | {"datasets.hidden_split()"}
    hello = _result(attack, "escape")["execution"]["cells"]["hello-nets"]
    assert hello["error"].startswith("FileNotFoundError") and "test_introducing_keras.py" in hello["error"]


def test_network_is_blocked(attack: dict) -> None:
    net = _printed(attack, "escape", "NETWORK")
    assert net["host listener"] == "ConnectionRefusedError", net  # the sandbox's own, empty loopback
    assert net["outside"] != "connected" and net["dns"] != "resolved", net
    with pytest.raises(BlockingIOError):
        attack["listener"].accept()  # nothing ever reached the host's listener
    counting = _result(attack, "escape")["execution"]["cells"]["counting"]
    assert counting["error"].startswith("ConnectionRefusedError"), counting


def test_writes_outside_the_work_directory_are_refused_or_invisible(attack: dict) -> None:
    assert not attack["leaked"], f"files created on the host: {attack['leaked']}"
    for path, digest in attack["hashes"].items():
        assert _sha(Path(path)) == digest, f"{path} was changed"
    writes = _printed(attack, "escape", "WRITES")
    assert set(writes) == {str(t) for t in attack["targets"].values()}
    targets = attack["targets"]
    assert writes[str(targets["repository"])] == "OSError"  # read-only: errno EROFS
    assert writes[str(targets["virtualenv"])] == "OSError"
    shown = _result(attack, "escape")["execution"]["cells"]["build-as-shown"]
    assert "Read-only file system" in shown["error"], shown


def test_manifest_path_traversal_is_refused(attack: dict) -> None:
    result = _result(attack, "escape")
    # counting's model points outside the submission; build-as-shown is broken on purpose, so the
    # overwritten hidden tests would have handed it its point back had the write reached the host
    assert _failed(result) == {"test_count_architecture", "test_count_model_parameters", "test_shown_architecture"}
    assert "not a plain path inside the work folder" in _check(result, "test_count_architecture")["message"]
    assert result["score"] == FULL - 3 and result["status"] == "graded"


# -- artifacts are untrusted input -----------------------------------------------------------
def test_pickle_in_place_of_a_model_is_refused_and_never_run(attack: dict) -> None:
    result = _result(attack, "tamper")
    assert not any(attack["markers"].iterdir()), "a payload ran on the trusted side"
    check = _check(result, "test_hello_architecture")
    assert not check["passed"] and "is not a Keras archive" in check["message"], check
    assert _cell_scores(result)["hello-nets"] == 0
    # the same bytes do run when unpickled: the marker is real
    payload = attack["jobs"]["tamper"].workdir / "sandbox" / "artifacts" / "hello-nets" / "model.keras"
    pickle.loads(payload.read_bytes())
    assert (attack["markers"] / "pickle").exists()
    (attack["markers"] / "pickle").unlink()


def test_pickled_arrays_are_refused_and_never_run(attack: dict) -> None:
    result = _result(attack, "tamper")
    assert not (attack["markers"] / "npz").exists()
    check = _check(result, "test_prediction_shapes")
    assert not check["passed"] and "could not be read safely" in check["message"]
    assert _cell_scores(result)["meteor-predictions"] == 0


def test_lambda_layer_is_refused_by_safe_mode(attack: dict) -> None:
    result = _result(attack, "tamper")
    assert not (attack["markers"] / "lambda").exists()
    check = _check(result, "test_count_architecture")
    assert not check["passed"] and "cannot be loaded safely" in check["message"], check
    assert _cell_scores(result)["counting"] == 1  # n_params is still right
    # loaded unsafely and called, the same file runs its code on the host
    import keras
    import numpy as np

    model_file = attack["jobs"]["tamper"].workdir / "sandbox" / "artifacts" / "counting" / "model.keras"
    keras.models.load_model(model_file, safe_mode=False)(np.zeros((1, 3), "float32"))
    assert (attack["markers"] / "lambda").exists()
    (attack["markers"] / "lambda").unlink()


def test_symlink_to_a_hidden_file_is_refused(attack: dict) -> None:
    result = _result(attack, "tamper")
    link = attack["jobs"]["tamper"].workdir / "sandbox" / "artifacts" / "build-as-shown" / "model.keras"
    assert link.is_symlink() and link.resolve() == attack["hidden_test"].resolve()
    check = _check(result, "test_shown_architecture")
    assert not check["passed"] and "is or passes through a link" in check["message"]
    assert "def test_" not in json.dumps(result), "nothing of the hidden file reaches the result"


def test_injected_keras_config_is_refused_and_never_run(attack: dict) -> None:
    result = _result(attack, "tamper")
    assert not (attack["markers"] / "config").exists()
    check = _check(result, "test_meteor_architecture")
    assert not check["passed"] and "cannot be loaded safely" in check["message"], check
    # the history is a claim that counts only against a model that loads, so only the typed answer scores
    assert _cell_scores(result) == {"hello-nets": 0, "counting": 1, "build-as-shown": 0, "meteor-model": 0,
                                    "meteor-predictions": 0}
    assert result["score"] == 1 and result["status"] == "graded"


# -- resource limits -----------------------------------------------------------------------------
def test_output_flood_is_cut_at_the_limit_and_noted(attack: dict) -> None:
    result = _result(attack, "flood-and-fork")
    assert f"output limit: the notebook printed more than {DEFAULT_OUTPUT_LIMIT:,} characters" in result["message"]
    texts = [o.get("text", "") for c in _executed(attack, "flood-and-fork").cells for o in c.get("outputs", [])]
    assert sum(len(t) for t in texts) <= DEFAULT_OUTPUT_LIMIT
    assert sum("reached the limit of 2,000,000 characters" in t for t in texts) == 1
    assert result["score"] == FULL, _failed(result)


def test_fork_bomb_hits_the_process_limit_and_grading_finishes(attack: dict) -> None:
    result = _result(attack, "flood-and-fork")
    assert "process limit reached: the notebook tried to start more than 256 processes" in result["message"]
    assert not result["execution"]["timed_out"]
    assert not any("memory" in s for s in result["execution"]["limits_exceeded"]), result["message"]
    assert result["execution"]["usage"]["pids_peak"] >= 200
    assert "fork failed after" in (attack["jobs"]["flood-and-fork"].workdir / "sandbox" / "fork-bomb.txt").read_text()
    assert result["score"] == FULL and result["status"] == "graded"


def test_memory_bomb_is_stopped_and_what_ran_before_still_counts(attack: dict) -> None:
    result = _result(attack, "memory-bomb")
    assert "stopped: the notebook used more than 2048 MiB of memory" in result["message"], result["message"]
    assert "the kernel died while running meteor-predictions-solution" in result["message"]
    assert _failed(result) == {"test_prediction_shapes", "test_twenty_minute_orbit"}
    assert "did not run" in _check(result, "test_prediction_shapes")["message"]
    assert result["score"] == FULL - 2 and result["status"] == "graded"
    assert result["execution"]["usage"]["memory_peak_mib"] <= 2048


def test_default_limits_leave_room_for_tensorflow(attack: dict) -> None:
    """The honest parts of every attack ran Keras under 256 processes and threads."""
    usage = _result(attack, "monkeypatch-autograders")["execution"]["usage"]
    assert 10 <= usage["pids_peak"] < 128 and usage["memory_peak_mib"] < 1024
    assert not _result(attack, "monkeypatch-autograders")["execution"]["limits_exceeded"]
    assert _result(attack, "escape")["execution"]["limits_not_enforced"] == []  # CPU quota included


# -- the output budget itself (no grading) -------------------------------------------------------
def test_output_budget_keeps_errors_and_notes_once() -> None:
    budget = OutputBudget(10)
    outs: list = []
    for text in ("12345", "678901234", "more"):
        out = nbformat.v4.new_output("stream", name="stdout", text=text)
        outs.append(out)
        budget.admit(outs, out)
    error = nbformat.v4.new_output("error", ename="ValueError", evalue="x" * 5000, traceback=["t"] * 100)
    outs.append(error)
    budget.admit(outs, error)
    texts = [o.get("text") for o in outs if o.output_type == "stream"]
    assert texts[:2] == ["12345", "67890"] and sum("reached the limit of 10" in t for t in texts) == 1
    assert "more" not in texts and outs[-1] is error and len(error.traceback) == 20
    # the error is kept (cut to 2,000 characters and 20 lines) and counted like everything else
    assert budget.report() == {"output_limit": 10, "output_chars": 10 + 2000 + 20, "outputs_dropped": 2}


# -- the trusted side's boundary: what a sandbox leaves behind is hostile -------------------------
# Two more submissions of the numpy-only dl-python/01 (12 points, a few seconds each): one leaves
# pipes and links where the trusted side reads (and kills its runner so that nothing repairs them),
# the other probes its own identity, floods through display updates and leaves a tree deeper than
# PATH_MAX. On the code before the reader existed, the first hung the grader for ever.
NUMPY = "dl-python/01-basics-with-numpy"
NUMPY_FULL = 12.0
BOUNDARY_LIMITS = {"time": 90, "cell_timeout": 60, "check_time": 120, "output": 100_000}


def _links_and_pipes(secret: Path) -> str:
    return f"""
import os, signal
def _swap(path, make):
    if os.path.lexists(path):
        os.remove(path)
    make(path)
_swap("cells.json", os.mkfifo)                                    # a read would block for ever
_swap("execution.json", lambda p: os.symlink("/dev/zero", p))    # a read would never end
_swap("executed.ipynb", lambda p: os.symlink({str(secret)!r}, p))  # another notebook into the feedback
os.mkdir("executed.ipynb.tmp")                                    # the runner's next save fails
_swap("artifacts/relu/manifest.json", os.mkfifo)                  # the checker's read would block
os.kill(os.getppid(), signal.SIGKILL)                             # the runner: nothing repairs the above
"""


IDENTITY_FLOOD_AND_DEPTH = """
import json, os
from IPython.display import display
try:
    open("/etc/shadow").read()
    _shadow = "readable"
except OSError as exc:
    _shadow = type(exc).__name__
print("IDENTITY", json.dumps({"uid": os.getuid(), "euid": os.geteuid(), "shadow": _shadow}))
_handle = display("a small start", display_id=True)
_handle.update("x" * 5_000_000)  # replaces the output in place: counted against the budget too
_base = os.getcwd()
for _ in range(3000):  # deeper than PATH_MAX: whoever walks this folder must not recurse
    os.mkdir("d")
    os.chdir("d")
os.chdir(_base)
"""


@pytest.fixture(scope="module")
def boundary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("boundary")
    numpy = copy_assignment(Assignment.load(NUMPY), tmp / "assignments", limits=BOUNDARY_LIMITS)
    secret = tmp / "instructor-source.ipynb"  # stands for any file on the grader's host
    secret.write_text(json.dumps({"cells": [], "note": "SOLUTIONS-OF-ANOTHER-ASSIGNMENT"}))
    edits = {"links-and-pipes": lambda nb: nb.cells.append(nbformat.v4.new_code_cell(_links_and_pipes(secret))),
             "identity-flood-depth": lambda nb: nb.cells.append(nbformat.v4.new_code_cell(IDENTITY_FLOOD_AND_DEPTH))}
    jobs = [Job(numpy, name, edited_notebook(numpy, tmp / f"{name}.ipynb", edit), 1) for name, edit in edits.items()]
    done: dict = {}
    grading = threading.Thread(target=lambda: done.update({j.label: j for j in run_jobs(jobs, workers=2,
                                                                                         base=tmp / "runs")}),
                               daemon=True)
    grading.start()
    grading.join(600)  # a read that blocks would hang here: fail instead
    assert not grading.is_alive(), "grading did not end: the trusted side blocked on a file the sandbox left"
    yield {"jobs": done, "secret": secret, "assignment": numpy, "tmp": tmp}
    remove_tree(tmp / "runs")  # pytest's own cleanup recurses, and gives up on a tree this deep


def test_pipes_and_links_left_by_the_sandbox_are_refused_not_followed(boundary: dict) -> None:
    job = boundary["jobs"]["links-and-pipes"]
    result = job.result
    assert result["status"] == "graded", result["message"]
    assert result["score"] == NUMPY_FULL - 1, result  # only the cell whose manifest became a pipe
    relu = {c["id"]: c for c in result["checks"] if c["grade_id"] == "relu"}
    assert relu and all(not c["passed"] and "refused" in c["message"] for c in relu.values()), relu
    assert result["execution"]["cells"] == {}  # the cell record was a pipe: refused, not read
    page = (job.workdir / "feedback.html").read_text()
    assert "SOLUTIONS-OF-ANOTHER-ASSIGNMENT" not in page and "is not shown here" in page
    course = boundary["tmp"] / "course"
    lay_out(course, "mallory", boundary["assignment"], job.workdir / "sandbox", job.workdir,
            datetime.now(UTC))
    autograded = course / "autograded" / "mallory" / boundary["assignment"].name
    copied = "".join(p.read_text(errors="replace") for p in autograded.rglob("*") if p.is_file())
    assert "SOLUTIONS-OF-ANOTHER-ASSIGNMENT" not in copied
    assert not any(p.is_symlink() for p in (course / "submitted").rglob("*"))


def test_student_is_never_root_and_display_updates_count_against_the_output_budget(boundary: dict) -> None:
    job = boundary["jobs"]["identity-flood-depth"]
    result = job.result
    executed = nbformat.read(job.workdir / "sandbox" / EXECUTED, as_version=4)
    identity = next(json.loads(line.split(" ", 1)[1]) for c in executed.cells for o in c.get("outputs", [])
                    for line in o.get("text", "").splitlines() if line.startswith("IDENTITY "))
    assert identity["uid"] != 0 and identity["euid"] != 0 and identity["shadow"] == "PermissionError", identity
    assert (job.workdir / "sandbox" / EXECUTED).stat().st_size < 1_000_000
    assert "output limit" in result["message"], result["message"]
    assert result["score"] == NUMPY_FULL, result["message"]


def test_a_tree_deeper_than_path_max_neither_crashes_the_watchers_nor_stays_behind(boundary: dict) -> None:
    job = boundary["jobs"]["identity-flood-depth"]
    assert job.result["status"] == "graded", job.result["message"]
    assert "cgroup_left_behind" not in job.result["execution"]["usage"]
    remove_tree(job.workdir)
    assert not job.workdir.exists()
