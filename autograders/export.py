"""The one function a notebook's autograder cell calls: ``export("grade-id", model=model)``.

It runs inside the student's kernel, so it is deliberately tiny and trusts nothing:
it only writes artifacts in formats the trusted checker can load safely (``.keras``
for models, ``.npz`` without pickle for arrays, JSON for histories and values).
Everything it writes is treated as untrusted input by the checker. Outside grading
(no ``DEEPGRADE_EXPORT_DIR``), it tells the student what will be graded.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

EXPORT_DIR_ENV = "DEEPGRADE_EXPORT_DIR"
MANIFEST = "manifest.json"
_SAFE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_SAFE_GRADE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# the objects each grade cell last handed over in this kernel: what check("grade-id") checks
exported: dict[str, dict[str, Any]] = {}


def export(grade_id: str, **objects: Any) -> None:
    """Hand named objects of one graded cell to the grader."""
    if not _SAFE_GRADE_ID.match(grade_id):
        raise ValueError(f"invalid grade id {grade_id!r}")
    exported[grade_id] = objects
    target = os.environ.get(EXPORT_DIR_ENV)
    if not target:
        kinds = ", ".join(f"{name} ({_kind(obj)})" for name, obj in objects.items())
        print(f"[deepgrade] '{grade_id}' hands these to the grader when you submit: {kinds}")
        return
    out = Path(target) / grade_id
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, dict[str, Any]] = {}
    arrays: dict[str, Any] = {}
    for name, obj in objects.items():
        if not _SAFE_NAME.match(name):
            raise ValueError(f"invalid artifact name {name!r}")
        try:
            manifest[name] = _write(out, name, obj, arrays)
        except Exception as exc:  # recorded, so the checker can explain what went wrong
            manifest[name] = {"kind": "error", "type": _type_name(obj), "error": f"{type(exc).__name__}: {exc}"[:500]}
    if arrays:
        import numpy as np

        np.savez(out / "arrays.npz", **arrays)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))


def _type_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}".removeprefix("builtins.")


def _kind(obj: Any) -> str:
    """Classify without importing heavy libraries the student did not import."""
    module = type(obj).__module__
    names = {c.__name__ for c in type(obj).__mro__}
    if obj is None:
        return "none"
    if module.startswith("keras") and ("Model" in names or "Functional" in names or "Sequential" in names):
        return "model"
    if "History" in names and hasattr(obj, "history"):
        return "history"
    if module.startswith("pandas") and "DataFrame" in names:
        return "frame"
    if module.startswith("pandas") and "Series" in names:
        return "array"
    if isinstance(obj, str):
        return "value"
    if isinstance(obj, dict) and obj and all(isinstance(v, list | tuple) for v in obj.values()):
        return "history"
    if _is_weight_list(obj):
        return "weights"
    if isinstance(obj, bool | int | float | complex | list | tuple) or hasattr(obj, "__array__"):
        return "array"
    return "unsupported"


def _is_weight_list(obj: Any) -> bool:
    """A list of arrays of different shapes, as ``model.get_weights()`` returns: one array each."""
    if not isinstance(obj, list | tuple) or not obj or not all(hasattr(v, "__array__") for v in obj):
        return False
    return len({tuple(getattr(v, "shape", ())) for v in obj}) > 1


def _write(out: Path, name: str, obj: Any, arrays: dict[str, Any]) -> dict[str, Any]:
    kind = _kind(obj)
    entry: dict[str, Any] = {"kind": kind, "type": _type_name(obj)}
    if kind == "model":
        entry["file"] = f"{name}.keras"
        obj.save(out / entry["file"])
    elif kind == "history":
        history = obj.history if hasattr(obj, "history") else obj
        data = {str(k): [float(v) for v in vals] for k, vals in history.items()}
        entry["file"] = f"{name}.history.json"
        params = getattr(obj, "params", None) or {}
        payload = {"history": data, "params": {k: v for k, v in params.items() if isinstance(v, int | float | str)}}
        (out / entry["file"]).write_text(json.dumps(payload))
    elif kind == "frame":
        entry["file"] = f"{name}.frame.json"
        (out / entry["file"]).write_text(obj.to_json(orient="table"))
    elif kind == "value":
        entry["value"] = obj
    elif kind == "array":
        import numpy as np

        value = np.asarray(obj)
        if value.dtype == object:
            raise TypeError("it holds Python objects, not numbers (is it ragged, or a list of mixed types?)")
        arrays[name] = value
        entry["file"] = "arrays.npz"
    elif kind == "weights":
        import numpy as np

        for index, value in enumerate(obj):
            arrays[f"{name}__{index}"] = np.asarray(value)
        entry["file"], entry["count"] = "arrays.npz", len(obj)
    return entry
