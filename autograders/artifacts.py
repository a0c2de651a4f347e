"""Loading what a submission exported, on the trusted side, treating every byte as hostile.

Every file is read through :mod:`autograders.untrusted` (no links, regular files only, size
caps, bounded JSON). Archives are inspected before any library opens them: a ``.keras`` zip's
member count, each member's and the total uncompressed size and the compression ratio; an
``.npz`` array's declared shape against what its member really holds. Models then load with
``safe_mode=True`` (no Lambda bytecode, no pickles), arrays with ``allow_pickle=False``,
everything else is JSON. A missing or broken artifact becomes a :class:`CheckFailure` that says
why, using the cell status the executor recorded (for example the exception the cell raised).
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

from autograders.export import MANIFEST
from autograders.results import CheckFailure
from autograders.untrusted import (
    UntrustedFileError,
    copy_out,
    finite_float,
    parse_json,
    read_bytes,
)

MIB = 2**20
MAX_ARTIFACT_BYTES = 200 * MIB      # one exported file
MAX_UNPACKED_BYTES = 512 * MIB      # what one archive (a .keras model, an .npz) may unpack to
MAX_MEMBERS = 4096                  # files in one archive
MAX_RATIO = 200                     # uncompressed / compressed size of a member (weights compress little)
MAX_CONFIG_BYTES = 16 * MIB         # a JSON member of an archive (config.json, metadata.json)
MAX_HISTORY_POINTS = 10_000         # values per series of a training history
MAX_WEIGHT_ARRAYS = 1_000           # arrays in one exported weight list (model.get_weights())
CELLS_FILE = "cells.json"


class ExportedHistory(dict):
    """The series of an exported training history, and the ``params`` that ``fit`` recorded in it
    (epochs, steps). A plain dict exported as a history has no params: it is a claim, not a History."""

    def __init__(self, series: dict[str, list[float]], params: dict[str, Any] | None = None):
        super().__init__(series)
        self.params = {str(k): v for k, v in (params or {}).items() if isinstance(v, int | float | str)}


class Submission:
    """The artifacts one graded run produced, as the checker sees them."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._cache: dict[tuple[str, str], Any] = {}

    @cached_property
    def cells(self) -> dict[str, dict[str, Any]]:
        """Per grade cell: did it run, and which error did it raise (written by the executor)."""
        try:
            data = self._json(CELLS_FILE)
        except (OSError, CheckFailure):
            return {}
        return data if isinstance(data, dict) else {}

    def _relative(self, path: Path) -> Path:
        return Path(path).relative_to(self.root) if Path(path).is_absolute() else Path(path)

    def _read(self, path: Path | str, max_bytes: int = MAX_ARTIFACT_BYTES) -> bytes:
        """Bytes of an artifact: no links, a regular file, at most ``max_bytes``."""
        try:
            return read_bytes(self.root, self._relative(Path(path)), max_bytes)
        except UntrustedFileError as exc:
            raise CheckFailure(f"artifact '{Path(path).name}' was refused: {exc}",
                               hint="export objects with export(...); do not create files in the export folder "
                                    "yourself") from None

    def _json(self, path: Path | str) -> Any:
        try:
            return parse_json(self._read(path, 16 * MIB).decode("utf-8", errors="replace"), Path(path).name)
        except UntrustedFileError as exc:
            raise CheckFailure(f"the export '{Path(path).name}' is corrupt and cannot be read: {exc}") from None

    @contextmanager
    def _local_copy(self, path: Path) -> Iterator[Path]:
        """A private copy of an archive artifact (read safely, capped) for libraries that want a path:
        they never open anything in the folder the student wrote. Removed once loaded."""
        folder = Path(tempfile.mkdtemp(prefix="artifact-"))
        try:
            target = folder / Path(path).name
            if not copy_out(self.root, self._relative(path), target, MAX_ARTIFACT_BYTES):
                self._read(path)  # says why it was refused
                raise CheckFailure(f"artifact '{Path(path).name}' was refused")
            yield target
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _cell_problem(self, grade_id: str) -> str:
        status = self.cells.get(grade_id)
        if not isinstance(status, dict):
            return f"the autograder cell '{grade_id}' did not run"
        if status.get("error"):
            return f"{status['error']} (raised in cell '{status.get('error_cell')}')"
        return f"the autograder cell '{grade_id}' ran but exported nothing"

    def manifest(self, grade_id: str) -> dict[str, Any]:
        path = Path("artifacts") / grade_id / MANIFEST
        try:
            data = self._json(path)
        except FileNotFoundError:
            raise CheckFailure(
                f"nothing was exported for '{grade_id}': {self._cell_problem(grade_id)}",
                hint="run the notebook from top to bottom (Kernel > Restart & Run All) and fix the first error",
            ) from None
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
            try:
                self._cache[key] = self._load(grade_id, name, entry)
            except FileNotFoundError:
                raise CheckFailure(f"'{name}' was exported but its file is missing (deleted or moved)",
                                   hint="do not change the export folder yourself") from None
        return self._cache[key]

    def _load(self, grade_id: str, name: str, entry: dict[str, Any]) -> Any:
        kind = entry.get("kind")
        if kind == "none":
            return None
        if kind == "value":
            return entry.get("value")
        file = Path("artifacts") / grade_id / str(entry.get("file", ""))
        if kind == "model":
            with self._local_copy(file) as copy:
                return _load_model(copy, name)
        if kind == "history":
            data = self._json(file)
            history = data.get("history", {}) if isinstance(data, dict) else {}
            if not isinstance(history, dict):
                raise CheckFailure(f"the history '{name}' is not a dict of lists of numbers")
            params = data.get("params", {}) if isinstance(data, dict) else {}
            return ExportedHistory({str(k): [finite_float(v) for v in vals[:MAX_HISTORY_POINTS]]
                                    for k, vals in history.items() if isinstance(vals, list)},
                                   params=params if isinstance(params, dict) else {})
        if kind == "frame":
            import io

            import pandas as pd

            return pd.read_json(io.StringIO(self._read(file).decode("utf-8", errors="replace")), orient="table")
        if kind == "array":
            with self._local_copy(file) as copy:
                return _load_array(copy, name)
        if kind == "weights":
            count = entry.get("count")
            if not isinstance(count, int) or not 0 < count <= MAX_WEIGHT_ARRAYS:
                raise CheckFailure(f"the weight list '{name}' is corrupt and cannot be read")
            with self._local_copy(file) as copy:
                return [_load_array(copy, f"{name}__{index}") for index in range(count)]
        raise CheckFailure(f"'{name}' is a {entry.get('type')}, which the grader cannot read",
                           hint="export numbers, arrays, DataFrames, Keras models or training histories")


def inspect_archive(path: Path, what: str) -> list[zipfile.ZipInfo]:
    """Refuse a zip before any library unpacks it: too many members, a member or a total too large
    uncompressed, a suspicious compression ratio, or member names that climb out of a folder."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckFailure(f"{what} is not a valid archive ({exc}); it was refused without being opened",
                           hint="save a standard Keras model; do not replace the exported file",
                           measured="not a valid archive") from None
    total = sum(m.file_size for m in members)
    problem = ""
    if len(members) > MAX_MEMBERS:
        problem = f"it holds {len(members)} files (at most {MAX_MEMBERS})"
    elif total > MAX_UNPACKED_BYTES:
        problem = f"it unpacks to {total / MIB:.0f} MiB (at most {MAX_UNPACKED_BYTES // MIB} MiB)"
    elif any(m.filename.endswith(".json") and m.file_size > MAX_CONFIG_BYTES for m in members):
        problem = f"its configuration is over {MAX_CONFIG_BYTES // MIB} MiB (a model's is a few KiB)"
    elif any(m.file_size > 1 * MIB and m.file_size > MAX_RATIO * max(1, m.compress_size) for m in members):
        problem = f"a member is compressed more than {MAX_RATIO} to 1 (an archive bomb)"
    elif any(m.filename.startswith("/") or ".." in Path(m.filename).parts for m in members):
        problem = "a member's name climbs out of its folder"
    if problem:
        raise CheckFailure(f"{what} was refused without being opened: {problem}",
                           hint="export the model you trained with export(...); do not replace the exported file",
                           measured="refused archive")
    return members


def _load_array(path: Path, name: str) -> Any:
    """One array of an ``.npz``, after checking its declared shape against the bytes it really has."""
    import numpy as np

    members = {m.filename: m for m in inspect_archive(path, f"the array '{name}'")}
    member = members.get(f"{name}.npy")
    if member is None:
        raise CheckFailure(f"the array '{name}' could not be read safely: it is not in its file")
    try:
        with zipfile.ZipFile(path) as archive, archive.open(member) as handle:
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(np.lib.format.read_magic(handle))
            if read_header is None:
                raise ValueError("unknown .npy format version")
            shape, _, dtype = read_header(handle, max_header_size=10_000)
        declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if dtype.hasobject or declared > member.file_size:
            raise ValueError(f"it declares {declared:,} bytes of {dtype} but holds {member.file_size:,}"
                             if not dtype.hasobject else "it holds Python objects")
        with np.load(path, allow_pickle=False) as npz:
            return npz[name]
    except (KeyError, ValueError, OSError, TypeError, zipfile.BadZipFile) as exc:
        raise CheckFailure(f"the array '{name}' could not be read safely: {exc}") from None


_NOUNS = {"model": "Keras model", "history": "training history", "array": "number or array", "frame": "DataFrame",
          "weights": "list of weight arrays"}
_HINTS = {
    "model": "assign the keras.Model you built (for example Sequential([...])) to this variable, not its predictions or summary",
    "history": "keep what model.fit(...) returns: history = model.fit(...)",
    "array": "assign a number or a numpy array to this variable",
    "frame": "assign a pandas DataFrame to this variable",
    "weights": "assign what model.get_weights() returns to this variable",
}


def _load_model(path: Path, name: str) -> Any:
    import keras

    if not zipfile.is_zipfile(path):  # a .keras file is a zip archive; anything else was put there by hand
        raise CheckFailure(f"the model '{name}' is not a Keras archive (the exported file was replaced or "
                           "damaged); it was refused without being opened",
                           hint="save a standard Keras model; do not replace the exported file",
                           measured="not a .keras archive")
    inspect_archive(path, f"the model '{name}'")
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
