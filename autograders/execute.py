"""Execute a submitted notebook: run *inside* the sandbox, with nbclient and the kernel together.

``python -m autograders.execute WORKDIR --seed N --cell-timeout S`` reads
``WORKDIR/submission.ipynb``, seeds the kernel, runs every code cell (errors do not stop
the run; a cell past its time limit is interrupted and the run goes on) and writes, after
every cell, the executed notebook and ``cells.json``: per autograder cell, whether it ran and
the first error raised before it. Artifacts land in ``WORKDIR/artifacts`` through ``export``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import nbformat

from autograders.artifacts import CELLS_FILE
from autograders.export import EXPORT_DIR_ENV

EXECUTED = "executed.ipynb"
SUBMISSION = "submission.ipynb"
MAX_OUTPUT_CHARS = 20_000

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

    def __init__(self, nb: Any, workdir: Path):
        self.nb = nb
        self.workdir = workdir
        self.cells: dict[str, dict[str, Any]] = {}
        self.cause: tuple[str, str] | None = None  # first error since the previous autograder cell

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
        name = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or f"cell {cell_index}"
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
        executed = nbformat.from_dict(dict(self.nb))
        executed.cells = list(self.nb.cells[1:])
        tmp = self.workdir / (EXECUTED + ".tmp")
        nbformat.write(executed, tmp)
        tmp.replace(self.workdir / EXECUTED)


def _truncate_outputs(cell: Any) -> None:
    for output in cell.get("outputs", []):
        text = output.get("text")
        if isinstance(text, str) and len(text) > MAX_OUTPUT_CHARS:
            output["text"] = text[:MAX_OUTPUT_CHARS] + f"\n[... output truncated at {MAX_OUTPUT_CHARS} characters]\n"


def execute(workdir: Path, seed: int, cell_timeout: int) -> None:
    from nbclient import NotebookClient

    nb = nbformat.read(workdir / SUBMISSION, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(preamble(nb, seed)))
    tracker = _Tracker(nb, workdir)
    os.environ[EXPORT_DIR_ENV] = str(workdir / "artifacts")
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ["PYTHONHASHSEED"] = str(seed)
    client = NotebookClient(
        nb, timeout=cell_timeout, allow_errors=True, interrupt_on_timeout=True,
        error_on_timeout={"ename": "CellTimeout",
                          "evalue": f"the cell was stopped after {cell_timeout} s (the assignment's per-cell limit)",
                          "traceback": []},
        kernel_name="python3", resources={"metadata": {"path": str(workdir)}},
        on_cell_executed=tracker.on_cell_executed, startup_timeout=120,
    )
    client.execute()
    tracker.save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cell-timeout", type=int, default=300)
    args = parser.parse_args()
    execute(args.workdir, args.seed, args.cell_timeout)


if __name__ == "__main__":
    main()
