"""Deterministic public/hidden row splits and the folders students and graders read from.

Hidden rows are chosen by hashing ``"{key}:{row}"``, where ``key`` is the split group's
per-deployment secret (``datasets.split_secret``), rather than by a seeded RNG: the split is the
same on every grading machine of a deployment and for every numpy/pandas version, and nothing a
student can read (the repository, the registry, their server) determines it. Only the grading
side ever materializes the hidden part; student notebooks call ``public_path``, which never
touches it and needs no key once the platform has written the public file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .registry import DatasetError, Entry, Split, cache_dir, fetch, load, resolve, sha256_file
from .split_secret import SecretUnavailable, fingerprint, group_key

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

PUBLIC_ENV = "DEEPGRADE_PUBLIC_DATA"
STAMP_SUFFIX = ".stamp"
_STAMP_VERSION = 2


def hidden_mask(n_rows: int, split: Split, key: str | None = None) -> np.ndarray:
    """Boolean mask, True for rows kept for grading.

    Row i is hidden iff the first 32 bits of sha256(f"{key}:{i}"), read as a fraction of
    2**32, fall below ``hidden_fraction``, with ``key`` the secret of ``split.group``. The mask is
    read-only because it is cached. ``key`` overrides the deployment's key (a benchmark's held-out
    rows, which are nobody's secret).
    """
    return _hidden_mask(n_rows, split.hidden_fraction, key if key is not None else group_key(split.group))


@lru_cache(maxsize=32)
def _hidden_mask(n_rows: int, fraction: float, key: str) -> np.ndarray:
    import numpy as np

    mask = np.fromiter(
        (
            int(hashlib.sha256(f"{key}:{i}".encode()).hexdigest()[:8], 16) / 2**32 < fraction
            for i in range(n_rows)
        ),
        dtype=bool,
        count=n_rows,
    )
    mask.setflags(write=False)
    return mask


def _require_split(entry: Entry) -> Split:
    if entry.split is None:
        raise DatasetError(f"dataset {entry.name!r} has no split in the registry")
    return entry.split


def _rows(entry: Entry, obj: Any, keep: np.ndarray) -> pd.DataFrame | np.ndarray:
    """Restrict a loaded table/array to ``keep`` rows (positional, axis 0)."""
    import numpy as np
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        part = obj.iloc[np.flatnonzero(keep)]
        # An index_col index is data (an id column), so it survives; otherwise renumber.
        return part if entry.index_col is not None else part.reset_index(drop=True)
    if isinstance(obj, np.ndarray):
        return obj[keep]
    raise DatasetError(f"dataset {entry.name!r}: cannot split a {type(obj).__name__}")


def _part(name: str | Entry, hidden: bool) -> pd.DataFrame | np.ndarray:
    import numpy as np

    entry = resolve(name)
    split = _require_split(entry)
    obj = load(entry)
    mask = hidden_mask(len(obj), split)
    return _rows(entry, obj, mask if hidden else np.logical_not(mask))


def public_split(name: str | Entry) -> pd.DataFrame | np.ndarray:
    """The rows students may see."""
    return _part(name, hidden=False)


def hidden_split(name: str | Entry) -> pd.DataFrame | np.ndarray:
    """The rows kept back for grading; call this on the grading side only."""
    return _part(name, hidden=True)


# --- materialize -----------------------------------------------------------------------------


def public_root() -> Path:
    """Default folder of public files: ``DEEPGRADE_PUBLIC_DATA`` or ``<cache>/public``."""
    env = os.environ.get(PUBLIC_ENV)
    return Path(env).expanduser() if env else cache_dir() / "public"


def output_path(root: Path, entry: Entry) -> Path:
    """Where an entry lands inside a materialized root: ``root/<name><ext>``."""
    return Path(root) / f"{entry.name}{entry.suffix}"


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + STAMP_SUFFIX)


def _wanted_stamp(entry: Entry, part: str) -> dict[str, Any]:
    """What the stamp of an up-to-date file says. ``split`` is the key's fingerprint, or None where
    this process has no key (a student's server): it then trusts the split the platform wrote."""
    split = entry.split if part != "whole" else None
    try:
        split_id = fingerprint(split.group) if split else ""
    except SecretUnavailable:
        split_id = None
    return {
        "version": _STAMP_VERSION,
        "name": entry.name,
        "part": part,
        "source_sha256": entry.sha256,
        "split": split_id,
        "hidden_fraction": split.hidden_fraction if split else None,
    }


def _up_to_date(target: Path, wanted: dict[str, Any]) -> bool:
    """True when the stamp matches and the file still has the bytes recorded in it.

    This reads only the registry, the stamp and the output, so a read-only public folder
    works without the mirror (and, on the student side, without the split's key).
    """
    try:
        stamp = json.loads(_stamp_path(target).read_text(encoding="utf-8"))
        output_sha = stamp.pop("output_sha256")
        if wanted["split"] is None:
            wanted = {**wanted, "split": stamp.get("split")}
        return stamp == wanted and target.is_file() and sha256_file(target) == output_sha
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return False


def _atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    """Write via a temp file in the same folder and rename, so readers never see half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; student containers may run as another uid
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_part(entry: Entry, part: str, tmp: Path) -> None:
    if part == "whole":
        shutil.copyfile(fetch(entry), tmp)
        return
    obj = hidden_split(entry) if part == "hidden" else public_split(entry)
    if entry.kind == "array":
        import numpy as np

        with open(tmp, "wb") as fh:
            np.save(fh, obj)
        return
    sep = entry.read.get("sep", "\t" if entry.suffix == ".tsv" else ",")
    # Fixed gzip mtime so the same split always gives the same bytes.
    compression = {"method": "gzip", "mtime": 0} if entry.suffix.endswith(".gz") else None
    obj.to_csv(
        tmp,
        index=entry.index_col is not None,
        sep=sep,
        encoding=entry.read.get("encoding", "utf-8"),
        compression=compression,
    )


def _materialize_one(root: Path, entry: Entry, part: str) -> tuple[Path, bool]:
    """Bring one file up to date; returns (path, whether it was written)."""
    target = output_path(root, entry)
    wanted = _wanted_stamp(entry, part)
    if _up_to_date(target, wanted):
        return target, False
    _atomic_write(target, lambda tmp: _write_part(entry, part, tmp))
    stamp = {**wanted, "output_sha256": sha256_file(target)}
    _atomic_write(
        _stamp_path(target),
        lambda tmp: tmp.write_text(json.dumps(stamp, indent=1) + "\n", encoding="utf-8"),
    )
    return target, True


def materialize(
    root: Path | str,
    names: Iterable[str | Entry] | None = None,
    hidden: bool = False,
    *,
    on_write: Callable[[str, Path], None] | None = None,
) -> dict[str, Path]:
    """Write the public (or, with ``hidden=True``, the hidden) files of the given entries.

    Public roots get the public rows of split entries and a whole copy of every other entry;
    hidden roots get only the hidden rows of split entries. Files whose ``.stamp`` says they
    are current are left alone, so calling this at every grading run is cheap. ``on_write``
    is told about each file actually (re)written.
    """
    from .registry import get_registry

    root = Path(root)
    entries = [resolve(n) for n in names] if names is not None else list(get_registry().values())
    out: dict[str, Path] = {}
    for entry in entries:
        if entry.split is None:
            if hidden:
                continue
            part = "whole"
        else:
            part = "hidden" if hidden else "public"
        path, wrote = _materialize_one(root, entry, part)
        out[entry.name] = path
        if wrote and on_write is not None:
            on_write(entry.name, path)
    return out


def public_path(name: str | Entry, root: Path | str | None = None) -> Path:
    """Path of the student-visible file for ``name``, written on first use.

    This is what notebooks call. It never writes hidden rows anywhere, and when the file is
    already current it needs neither the mirror nor the cache, so a read-only public folder
    is enough on the student side.
    """
    entry = resolve(name)
    base = Path(root) if root is not None else public_root()
    return materialize(base, [entry], hidden=False)[entry.name]
