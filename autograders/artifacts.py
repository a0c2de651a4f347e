"""Loading what a submission exported, on the trusted side, treating every byte as hostile.

Models load with ``safe_mode=True`` (no Lambda bytecode, no pickles), arrays with
``allow_pickle=False``, everything else is JSON. Symlinks and oversized files are refused.
A missing or broken artifact becomes a :class:`CheckFailure` that says why, using the
cell status the executor recorded (for example the exception the cell raised).
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

from autograders.export import MANIFEST
from autograders.results import CheckFailure

MAX_ARTIFACT_BYTES = 200 * 1024 * 1024
CELLS_FILE = "cells.json"


class Submission:
    """The artifacts one graded run produced, as the checker sees them."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._cache: dict[tuple[str, str], Any] = {}

    @cached_property
    def cells(self) -> dict[str, dict[str, Any]]:
        """Per grade cell: did it run, and which error did it raise (written by the executor)."""
        path = self.root / CELLS_FILE
        try:
            return json.loads(self._read(path, text=True))
        except (OSError, ValueError, CheckFailure):
            return {}

    def _safe_path(self, path: Path) -> Path:
        root = self.root.resolve()
        if path.is_symlink() or not path.resolve().is_relative_to(root):
            raise CheckFailure(f"artifact '{path.name}' is a link or points outside the submission; it was refused",
                               hint="export objects with export(...); do not create files in the export folder yourself")
        if path.exists() and path.stat().st_size > MAX_ARTIFACT_BYTES:
            raise CheckFailure(f"artifact '{path.name}' is larger than {MAX_ARTIFACT_BYTES // 2**20} MB; it was refused")
        return path

    def _read(self, path: Path, *, text: bool = False) -> Any:
        path = self._safe_path(path)
        return path.read_text() if text else path.read_bytes()

    def _cell_problem(self, grade_id: str) -> str:
        status = self.cells.get(grade_id)
        if status is None:
            return f"the autograder cell '{grade_id}' did not run"
        if status.get("error"):
            return f"{status['error']} (raised in cell '{status.get('error_cell')}')"
        return f"the autograder cell '{grade_id}' ran but exported nothing"

    def manifest(self, grade_id: str) -> dict[str, Any]:
        path = self.root / "artifacts" / grade_id / MANIFEST
        try:
            data = json.loads(self._read(path, text=True))
        except FileNotFoundError:
            raise CheckFailure(
                f"nothing was exported for '{grade_id}': {self._cell_problem(grade_id)}",
                hint="run the notebook from top to bottom (Kernel > Restart & Run All) and fix the first error",
            ) from None
        except ValueError:
            raise CheckFailure(f"the export of '{grade_id}' is corrupt and cannot be read") from None
        if not isinstance(data, dict):
            raise CheckFailure(f"the export of '{grade_id}' is corrupt and cannot be read")
        return data

    def entry(self, grade_id: str, name: str) -> dict[str, Any]:
        entry = self.manifest(grade_id).get(name)
        if not isinstance(entry, dict):
            raise CheckFailure(f"'{name}' was not exported by the autograder cell '{grade_id}'")
        if entry.get("kind") == "error":
            raise CheckFailure(f"'{name}' could not be saved for grading: {entry.get('error')}",
                               measured=entry.get("type"),
                               hint="make sure the variable holds what the exercise asks for")
        return entry

    def get(self, grade_id: str, name: str, expect: str | None = None) -> Any:
        """Load artifact ``name`` of grade cell ``grade_id``; ``expect`` is the kind the test needs."""
        key = (grade_id, name)
        if key not in self._cache:
            entry = self.entry(grade_id, name)
            kind = entry.get("kind")
            if expect and kind != expect:
                raise CheckFailure(
                    f"'{name}' is a {entry.get('type')}, not a {_NOUNS.get(expect, expect)}",
                    measured=entry.get("type"), expected=_NOUNS.get(expect, expect),
                    hint=_HINTS.get(expect, "check which object you assigned to this variable"),
                )
            self._cache[key] = self._load(grade_id, name, entry)
        return self._cache[key]

    def _load(self, grade_id: str, name: str, entry: dict[str, Any]) -> Any:
        folder = self.root / "artifacts" / grade_id
        kind = entry.get("kind")
        if kind == "none":
            return None
        if kind == "value":
            return entry.get("value")
        file = folder / str(entry.get("file", ""))
        self._safe_path(file)
        if kind == "model":
            return _load_model(file, name)
        if kind == "history":
            data = json.loads(self._read(file, text=True))
            history = data.get("history", {}) if isinstance(data, dict) else {}
            return {str(k): [float(v) for v in vals] for k, vals in history.items()}
        if kind == "frame":
            import io

            import pandas as pd

            return pd.read_json(io.StringIO(self._read(file, text=True)), orient="table")
        if kind == "array":
            import numpy as np

            try:
                with np.load(file, allow_pickle=False) as npz:
                    return npz[name]
            except (KeyError, ValueError, OSError) as exc:
                raise CheckFailure(f"the array '{name}' could not be read safely: {exc}") from None
        raise CheckFailure(f"'{name}' is a {entry.get('type')}, which the grader cannot read",
                           hint="export numbers, arrays, DataFrames, Keras models or training histories")


_NOUNS = {"model": "Keras model", "history": "training history", "array": "number or array", "frame": "DataFrame"}
_HINTS = {
    "model": "assign the keras.Model you built (for example Sequential([...])) to this variable, not its predictions or summary",
    "history": "keep what model.fit(...) returns: history = model.fit(...)",
    "array": "assign a number or a numpy array to this variable",
    "frame": "assign a pandas DataFrame to this variable",
}


def _load_model(path: Path, name: str) -> Any:
    import zipfile

    import keras

    if not zipfile.is_zipfile(path):  # a .keras file is a zip archive; anything else was put there by hand
        raise CheckFailure(f"the model '{name}' is not a Keras archive (the exported file was replaced or "
                           "damaged); it was refused without being opened",
                           hint="save a standard Keras model; do not replace the exported file",
                           measured="not a .keras archive")
    try:
        return keras.models.load_model(path, safe_mode=True)
    except Exception as exc:
        text = str(exc)
        # Keras refuses Lambda bytecode in safe mode, and any class it does not know by name.
        if "safe_mode" in text or "Lambda" in text or "Could not locate" in text:
            raise CheckFailure(
                f"the model '{name}' contains code that cannot be loaded safely (a Lambda layer or a custom object)",
                hint="build the model from standard Keras layers only", measured="unsafe model",
            ) from None
        raise CheckFailure(f"the model '{name}' could not be loaded: {type(exc).__name__}: {text[:200]}",
                           hint="save a standard Keras model; do not replace the exported file") from None
