"""Execute a submitted notebook: run *inside* the sandbox, with nbclient and the kernel together.

``python -m autograders.execute WORKDIR --seed N --cell-timeout S --output-limit C`` reads
``WORKDIR/submission.ipynb``, seeds the kernel, runs every code cell (errors do not stop
the run; a cell past its time limit is interrupted and the run goes on) and writes, after
every cell, the executed notebook and ``cells.json``: per autograder cell, whether it ran and
the first error raised before it. Artifacts land in ``WORKDIR/artifacts`` through ``export``.

The notebook keeps at most C characters of output in all (each output at most 20,000): output
past the budget is dropped as it arrives, so a notebook that prints gigabytes costs no memory,
and one note says so. ``execution.json`` records the output count and, if the kernel died (for
example killed at the memory limit), the cell it died in. Everything here runs in the sandbox,
so the runner treats these files as claims for messages, never as scores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from autograders.artifacts import CELLS_FILE
from autograders.export import EXPORT_DIR_ENV

# jsonschema (under nbformat) imports rfc3987_syntax for its "iri" format when installed, and
# that package compiles a grammar on import: 1.5 s of CPU in every sandbox. No notebook schema
# field is an IRI, so the runner goes without it (jsonschema skips the format on ImportError).
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[assignment]

import nbformat  # noqa: E402

EXECUTED = "executed.ipynb"
SUBMISSION = "submission.ipynb"
EXECUTION_FILE = "execution.json"
READY = "kernel-ready"  # written by a warm start once its kernel has imported what it preloads
MAX_OUTPUT_CHARS = 20_000
MAX_ERROR_LINE = 2_000
STARTED = "deepgrade-runner: the kernel is up"  # printed before the first student cell runs
DEFAULT_OUTPUT_LIMIT = 2_000_000
KERNEL_DIED_EXIT = 3
WARM_START_FAILED_EXIT = 4

PREAMBLE = """\
import os as _os
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import random as _random, numpy as _np
_random.seed({seed}); _np.random.seed({seed})
del _os, _random, _np
"""
# Only notebooks that use Keras pay for importing TensorFlow (several seconds cold).
KERAS_PREAMBLE = """\
import keras as _keras, tensorflow as _tf
_keras.utils.set_random_seed({seed})
_tf.config.experimental.enable_op_determinism()
del _keras, _tf
"""


def preamble(nb: Any, seed: int) -> str:
    """Seeds every generator the notebook can reach before the student's first cell runs."""
    uses_keras = any(word in cell.get("source", "") for cell in nb.cells
                     for word in ("keras", "tensorflow"))
    return PREAMBLE.format(seed=seed) + (KERAS_PREAMBLE.format(seed=seed) if uses_keras else "")


def grade_id(cell: Any) -> str | None:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta.get("grade_id") if meta.get("grade") or meta.get("locked") else None


class _Tracker:
    """Follows execution cell by cell and saves progress, so a killed run still leaves evidence."""

    def __init__(self, nb: Any, workdir: Path, output_limit: int = DEFAULT_OUTPUT_LIMIT):
        self.nb = nb
        self.workdir = workdir
        self.cells: dict[str, dict[str, Any]] = {}
        self.cause: tuple[str, str] | None = None  # first error since the previous autograder cell
        self.budget = OutputBudget(output_limit)
        self.current: str | None = None  # the cell running now
        self.kernel_died_in: str | None = None

    def on_cell_execute(self, cell: Any, cell_index: int, **_: Any) -> None:
        self.current = None if cell_index == 0 else _cell_name(cell, cell_index)
        self.budget.cell_outputs = cell.setdefault("outputs", [])
        if cell_index == 0:  # the kernel answered: from here on, what happens is the student's doing
            print(STARTED, flush=True)

    def on_cell_executed(self, cell: Any, cell_index: int, execute_reply: Any, **_: Any) -> None:
        if cell_index == 0:  # the preamble is ours, not the student's
            return
        reply = (execute_reply or {}).get("content", {})
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if reply.get("ename") == "CellTimeout":  # nbclient's reply after interrupting a slow cell
            errors = [reply]
            cell.setdefault("outputs", []).append(nbformat.v4.new_output(
                "error", ename="CellTimeout", evalue=reply.get("evalue", ""), traceback=[]))
        error = f"{errors[0].get('ename')}: {str(errors[0].get('evalue'))[:300]}" if errors else None
        name = _cell_name(cell, cell_index)
        gid = grade_id(cell)
        if gid:
            # Report the root cause: an earlier failing cell explains this cell's NameError.
            cause = self.cause or ((error, gid) if error else (None, None))
            self.cells[gid] = {"ran": True, "error": cause[0], "error_cell": cause[1]}
            self.cause = None
        elif error and self.cause is None:
            self.cause = (error, name)
        _truncate_outputs(cell)
        self.save()

    def save(self) -> None:
        (self.workdir / CELLS_FILE).write_text(json.dumps(self.cells, indent=1))
        (self.workdir / EXECUTION_FILE).write_text(json.dumps(
            {**self.budget.report(), "kernel_died_in": self.kernel_died_in}, indent=1))
        executed = nbformat.from_dict(dict(self.nb))
        executed.cells = list(self.nb.cells[1:])
        tmp = self.workdir / (EXECUTED + ".tmp")
        nbformat.write(executed, tmp)
        tmp.replace(self.workdir / EXECUTED)


def _cell_name(cell: Any, cell_index: int) -> str:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or f"cell {cell_index}"


class OutputBudget:
    """The characters of output the whole notebook may keep; what arrives past it is dropped.

    Everything that reaches the notebook counts: streams, display data, results, errors and
    display updates (which replace an earlier output's data in place)."""

    def __init__(self, limit: int):
        self.limit = max(0, int(limit))
        self.kept = 0
        self.dropped = 0  # outputs dropped or cut
        self.noted = False
        self.cell_outputs: list[Any] | None = None  # the running cell's outputs, where the note goes

    def note(self) -> Any:
        return nbformat.v4.new_output(
            "stream", name="stderr",
            text=f"\n[deepgrade] the notebook's output reached the limit of {self.limit:,} characters; "
                 "further output was dropped (print less, for example with verbose=0)\n")

    def _note_once(self, outs: list[Any] | None) -> None:
        if not self.noted and outs is not None:
            outs.append(self.note())
            self.noted = True

    def admit(self, outs: list[Any], out: Any, display_id: str | None = None) -> None:
        """``out`` was just appended to ``outs``: keep it, cut it, or drop it."""
        if out.get("output_type") == "error":  # errors stay (the grader reports them), kept short
            out["traceback"] = [str(line)[:MAX_ERROR_LINE] for line in list(out.get("traceback", []))[-20:]]
            out["evalue"] = str(out.get("evalue", ""))[:MAX_ERROR_LINE]
            self.kept += len(out["evalue"]) + sum(map(len, out["traceback"]))
            return
        size = _output_size(out)
        left = 0 if self.noted else self.limit - self.kept
        if size <= left:
            self.kept += size
            return
        self.dropped += 1
        if left > 0 and isinstance(out.get("text"), str):
            out["text"] = out["text"][:left]
            self.kept += left
        elif display_id:  # nbclient remembers its index for later updates: empty it, keep its place
            out["data"], out["metadata"] = {"text/plain": ""}, {}
        elif outs and outs[-1] is out:
            outs.pop()
        self._note_once(outs)

    def admit_update(self, content: dict[str, Any], copies: int) -> None:
        """A display update about to replace ``copies`` outputs: counted in full, emptied past the budget."""
        size = _output_size(content) * max(1, copies)
        if not self.noted and size <= self.limit - self.kept:
            self.kept += size
            return
        self.dropped += 1
        content["data"], content["metadata"] = {"text/plain": ""}, {}
        self._note_once(self.cell_outputs)

    def report(self) -> dict[str, Any]:
        return {"output_limit": self.limit, "output_chars": self.kept, "outputs_dropped": self.dropped}


def _output_size(out: Any) -> int:
    if isinstance(out.get("text"), str):
        return len(out["text"])
    data = out.get("data") or {}
    if not isinstance(data, dict):
        return len(str(data))
    return sum(len(v) if isinstance(v, str) else len(json.dumps(v, default=str)) for v in data.values())


def _client_class() -> type:
    """nbclient's client with every output counted against the budget as it arrives."""
    from nbclient import NotebookClient

    class BudgetClient(NotebookClient):
        budget: OutputBudget | None = None

        def output(self, outs, msg, display_id, cell_index):
            out = super().output(outs, msg, display_id, cell_index)
            if out is not None and self.budget is not None:
                self.budget.admit(outs, out, display_id)
            return out

        def _update_display_id(self, display_id, msg):
            if self.budget is not None and display_id in self._display_id_map:
                copies = sum(len(indices) for indices in self._display_id_map[display_id].values())
                self.budget.admit_update(msg.setdefault("content", {}), copies)
            super()._update_display_id(display_id, msg)

    return BudgetClient


def _truncate_outputs(cell: Any) -> None:
    for output in cell.get("outputs", []):
        text = output.get("text")
        if isinstance(text, str) and len(text) > MAX_OUTPUT_CHARS:
            output["text"] = text[:MAX_OUTPUT_CHARS] + f"\n[... output truncated at {MAX_OUTPUT_CHARS} characters]\n"


def execute(workdir: Path, seed: int, cell_timeout: int, output_limit: int = DEFAULT_OUTPUT_LIMIT) -> int:
    """Run the notebook; 0 when every cell was run, ``KERNEL_DIED_EXIT`` when the kernel died."""
    return asyncio.run(_execute(workdir, {"seed": seed, "cell_timeout": cell_timeout,
                                          "output_limit": output_limit}))


async def _execute(workdir: Path, settings: dict[str, Any] | None, preload: list[str] = (),
                   seed: int = 0) -> int:
    """With ``settings`` None this is a warm start: start the kernel, import ``preload`` in it, write
    ``READY``, then wait for the settings as one JSON line on stdin (EOF: never used, exit)."""
    from nbclient.exceptions import DeadKernelError

    os.environ[EXPORT_DIR_ENV] = str(workdir / "artifacts")
    # JupyterLab's own backend: figures become PNG outputs, so the feedback page shows the student's plots
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    client = _client_class()(
        nbformat.v4.new_notebook(), allow_errors=True, interrupt_on_timeout=True, kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}}, startup_timeout=120, store_widget_state=False,
        shutdown_kernel="immediate")  # the sandbox ends with this process; a polite shutdown only waits
    if settings is None:
        os.environ["PYTHONHASHSEED"] = str(seed)
        client.km = client.create_kernel_manager()
        await client.async_start_new_kernel()
        await client.async_start_new_kernel_client()
        reply = await client.kc.execute_interactive(warmup_code(preload), timeout=300)
        if reply["content"].get("status") != "ok":  # the pool discards this sandbox; the grading runs cold
            print(f"warm start failed: {reply['content'].get('ename')}: {reply['content'].get('evalue')}",
                  file=sys.stderr)
            await client._async_cleanup_kernel()
            return WARM_START_FAILED_EXIT
        (workdir / READY).write_text("ready\n")
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if not line.strip():
            await client._async_cleanup_kernel()
            return 0
        settings = json.loads(line)
    else:
        seed = settings["seed"]
        os.environ["PYTHONHASHSEED"] = str(seed)
    cell_timeout = settings["cell_timeout"]
    nb = nbformat.read(workdir / SUBMISSION, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(preamble(nb, seed)))
    tracker = _Tracker(nb, workdir, settings["output_limit"])
    client.nb, client.timeout, client.budget = nb, cell_timeout, tracker.budget
    client.error_on_timeout = {
        "ename": "CellTimeout", "traceback": [],
        "evalue": f"the cell was stopped after {cell_timeout} s (the assignment's per-cell limit)"}
    client.on_cell_execute, client.on_cell_executed = tracker.on_cell_execute, tracker.on_cell_executed
    try:
        await client.async_execute()
    except DeadKernelError:
        # Killed from outside (usually at the memory limit): what ran so far is kept and graded.
        tracker.kernel_died_in = tracker.current or "the kernel's start"
        tracker.save()
        print(f"the kernel died while running {tracker.kernel_died_in}; the cells after it did not run",
              file=sys.stderr)
        return KERNEL_DIED_EXIT
    tracker.save()
    return 0


def warmup_code(modules: list[str]) -> str:
    """Imports the notebook will need anyway. One that fails fails the warm start, and the
    submission runs cold: its cells must never meet a half-finished import (a partly imported
    matplotlib, for one, breaks every later ``import matplotlib.pyplot``)."""
    return "\n".join(["import os as _os", "_os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')",
                      *(f"import {name}" for name in modules), "del _os"])


def notebook_imports(nb: Any) -> list[str]:
    """Top-level modules the notebook's code cells import, in order (what a warm kernel preloads)."""
    import ast

    names: list[str] = []
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        try:
            tree = ast.parse(cell.get("source", ""))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found = [node.module.split(".")[0]]
            else:
                continue
            names += [n for n in found if n not in names]
    if "keras" in names and "tensorflow" not in names:
        names.append("tensorflow")  # the preamble's seeding imports it for Keras notebooks
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cell-timeout", type=int, default=300)
    parser.add_argument("--output-limit", type=int, default=DEFAULT_OUTPUT_LIMIT,
                        help="characters of output the whole notebook keeps")
    parser.add_argument("--warm", action="store_true",
                        help="start the kernel and import --preload now; read the settings (JSON with seed, "
                             "cell_timeout, output_limit) from stdin once the submission is in WORKDIR")
    parser.add_argument("--preload", default="", help="comma-separated modules a warm kernel imports")
    args = parser.parse_args()
    if args.warm:
        preload = [m for m in args.preload.split(",") if m]
        sys.exit(asyncio.run(_execute(args.workdir, None, preload, args.seed)))
    sys.exit(execute(args.workdir, args.seed, args.cell_timeout, args.output_limit))


if __name__ == "__main__":
    main()
