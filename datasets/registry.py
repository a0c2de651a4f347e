"""Course dataset registry: which files exist, where to find them and how to check them.

Every data file is named in ``registry.yaml`` with its sha256, so a grader never runs on data
that silently differs from what the assignment was written against. Lookups go mirror ->
local cache -> download (pooch), and every copy found is hashed before it is used.

Heavy imports (pandas, numpy, pooch) happen inside the functions that need them so that
``import datasets`` stays cheap in grading containers and student kernels.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

REGISTRY_FILE = Path(__file__).with_name("registry.yaml")
REPO_ROOT = Path(__file__).resolve().parent.parent
MIRROR_ENV = "DEEPGRADE_DATA_MIRROR"
CACHE_ENV = "DEEPGRADE_CACHE"

Kind = Literal["table", "array", "text", "binary"]
_KINDS: dict[str, Kind] = {
    ".csv": "table",
    ".csv.gz": "table",
    ".tsv": "table",
    ".npy": "array",
    ".txt": "text",
    ".json": "text",
}
# Read options a split entry may use: its materialized files are plain tables, so options that
# skip junk lines (skiprows, skipfooter, ...) would not apply to them any more.
SPLIT_SAFE_READ = frozenset({"index_col", "sep", "encoding", "dtype"})
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_GROUP_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
# "<module>:<function>" of a generator inside this package, e.g. "league:write_season"
_GENERATOR_RE = re.compile(r"^[a-z_][a-z0-9_]*:[a-z_][a-z0-9_]*$")


class DatasetError(Exception):
    """Base class for registry errors, so callers can catch them all at once."""


class UnknownDataset(DatasetError, KeyError):
    """The name is not in the registry."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DatasetUnavailable(DatasetError, FileNotFoundError):
    """No verified copy could be found or downloaded."""


class HashMismatch(DatasetError, ValueError):
    """A copy of a dataset does not have the bytes the registry promises."""

    def __init__(self, message: str, *, path: Path | str, expected: str, actual: str | None):
        super().__init__(message)
        self.path = path
        self.expected = expected
        self.actual = actual


class RegistryError(DatasetError, ValueError):
    """registry.yaml (or an Entry built by hand) is malformed."""


@dataclass(frozen=True)
class Split:
    """Which rows are held back for grading: see ``datasets.splits.hidden_mask``.

    ``group`` only names the secret key (``datasets.split_secret``): files of one group keep the
    same rows hidden, and nothing in the registry says which rows those are."""

    hidden_fraction: float
    group: str


@dataclass(frozen=True, eq=False)
class Entry:
    """One registered data file. ``file`` is relative to the mirror (and cache) root.

    ``generator`` (optional) names a function of this package, ``"<module>:<function>"``, that
    writes the file from scratch (synthetic data, see ``datasets/league.py``); ``fetch`` runs it
    into the cache when no copy exists, and the result must still match ``sha256``.
    """

    name: str
    file: str
    sha256: str
    url: str | None = None
    license: str = ""
    origin: str | None = None
    read: Mapping[str, Any] = field(default_factory=dict)
    split: Split | None = None
    generator: str | None = None

    def __post_init__(self) -> None:
        problems = _entry_problems(self)
        if problems:
            raise RegistryError(f"registry entry {self.name!r}: " + "; ".join(problems))

    @property
    def suffix(self) -> str:
        """File extension, keeping compound ones such as ``.csv.gz``."""
        return file_suffix(self.file)

    @property
    def kind(self) -> Kind:
        """How ``load`` reads it: table (pandas), array (numpy), text, or binary (fetch only)."""
        return _KINDS.get(self.suffix, "binary")

    @property
    def index_col(self) -> Any:
        """The pandas index column, if the table has one (it is then data worth keeping)."""
        return self.read.get("index_col")

    @classmethod
    def from_dict(cls, name: str, raw: Mapping[str, Any]) -> Entry:
        """Build an entry from its YAML mapping, rejecting unknown fields (typos)."""
        if not isinstance(raw, Mapping):
            raise RegistryError(f"registry entry {name!r} must be a mapping")
        known = {"file", "sha256", "url", "license", "origin", "read", "split", "generator"}
        extra = set(raw) - known
        if extra:
            raise RegistryError(f"registry entry {name!r}: unknown fields {sorted(extra)}")
        split = raw.get("split")
        if split is not None:
            if not isinstance(split, Mapping) or set(split) != {"hidden_fraction", "group"}:
                raise RegistryError(
                    f"registry entry {name!r}: split needs exactly hidden_fraction and group"
                )
            split = Split(float(split["hidden_fraction"]), str(split["group"]))
        return cls(
            name=name,
            file=raw.get("file", ""),
            sha256=raw.get("sha256", ""),
            url=raw.get("url"),
            license=raw.get("license") or "",
            origin=raw.get("origin"),
            read=dict(raw.get("read") or {}),
            split=split,
            generator=raw.get("generator"),
        )


def file_suffix(file: str | os.PathLike[str]) -> str:
    """Lower-case extension, with ``.gz`` kept together with the one before it."""
    suffixes = [s.lower() for s in PurePosixPath(os.fspath(file)).suffixes]
    if len(suffixes) >= 2 and suffixes[-1] == ".gz":
        return "".join(suffixes[-2:])
    return suffixes[-1] if suffixes else ""


def _entry_problems(e: Entry) -> list[str]:
    problems = []
    if not _NAME_RE.match(e.name):
        problems.append("name must look like '<group>/<stem>'")
    rel = PurePosixPath(e.file)
    if not e.file or rel.is_absolute() or ".." in rel.parts or "\\" in e.file:
        problems.append(f"file {e.file!r} must be a relative path inside the mirror")
    if not isinstance(e.sha256, str) or not _SHA_RE.match(e.sha256):
        problems.append("sha256 must be 64 lower-case hex digits")
    if e.url is not None and not (isinstance(e.url, str) and "://" in e.url):
        problems.append(f"url {e.url!r} is not a URL")
    if e.generator is not None and not (
        isinstance(e.generator, str) and _GENERATOR_RE.match(e.generator)
    ):
        problems.append(f"generator {e.generator!r} must look like '<module>:<function>'")
    if not isinstance(e.read, Mapping):
        problems.append("read must be a mapping of pandas.read_csv options")
    elif e.read and _KINDS.get(file_suffix(e.file)) != "table":
        problems.append("read options only apply to .csv/.csv.gz/.tsv files")
    if e.split is not None:
        if not 0.0 < e.split.hidden_fraction < 1.0:
            problems.append("split.hidden_fraction must be strictly between 0 and 1")
        if not _GROUP_RE.match(e.split.group):
            problems.append("split.group must be a short name of letters, digits, '-' and '_'")
        if _KINDS.get(file_suffix(e.file)) not in ("table", "array"):
            problems.append("split is only supported for tables and .npy arrays")
        elif isinstance(e.read, Mapping) and set(e.read) - SPLIT_SAFE_READ:
            bad = sorted(set(e.read) - SPLIT_SAFE_READ)
            problems.append(
                f"split entries may only use read options {sorted(SPLIT_SAFE_READ)}, not {bad}"
            )
    return problems


class Registry(Mapping[str, Entry]):
    """Read-only name -> Entry mapping whose lookup errors suggest close names."""

    def __init__(self, entries: Iterable[Entry]):
        self._entries: dict[str, Entry] = {}
        files: dict[str, str] = {}
        for entry in entries:
            if entry.name in self._entries:
                raise RegistryError(f"duplicate registry name {entry.name!r}")
            if entry.file in files:
                raise RegistryError(
                    f"{entry.name!r} and {files[entry.file]!r} both point at {entry.file!r}"
                )
            self._entries[entry.name] = entry
            files[entry.file] = entry.name

    @classmethod
    def from_yaml(cls, path: Path | str) -> Registry:
        """Parse and validate a registry file."""
        import yaml

        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh) or {}
        if not isinstance(raw, Mapping):
            raise RegistryError(f"{path}: top level must be a mapping of names to entries")
        return cls(Entry.from_dict(str(name), spec) for name, spec in raw.items())

    def __getitem__(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownDataset(f"no dataset named {name!r} in the registry{hint}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


@lru_cache(maxsize=1)
def get_registry() -> Registry:
    """The registry shipped with the package, parsed once per process."""
    return Registry.from_yaml(REGISTRY_FILE)


def resolve(name: str | Entry) -> Entry:
    """Accept a registry name or an Entry (tests and one-off files use the latter)."""
    return name if isinstance(name, Entry) else get_registry()[name]


# --- locations -------------------------------------------------------------------------------


def mirror_dir() -> Path | None:
    """The read-only course mirror, if any.

    ``DEEPGRADE_DATA_MIRROR`` wins when set (an empty value disables the mirror); otherwise the
    ``shared/datasets`` folder beside the repository is used when it exists.
    """
    env = os.environ.get(MIRROR_ENV)
    if env is not None:
        return Path(env).expanduser() if env else None
    default = REPO_ROOT.parent / "shared" / "datasets"
    return default if default.is_dir() else None


def cache_dir() -> Path:
    """Where downloads (and hand-placed copies) live: ``DEEPGRADE_CACHE`` or the OS cache."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("deepgrade"))


def candidates(name: str | Entry) -> list[tuple[str, Path]]:
    """The places searched, in order, whether or not the file is there."""
    entry = resolve(name)
    places = []
    variant = _generator_variant(entry)
    if variant is not None:  # this deployment's own synthetic data: never in a mirror
        return [("cache", cache_dir() / variant / entry.file)]
    mirror = mirror_dir()
    if mirror is not None:
        places.append(("mirror", mirror / entry.file))
    places.append(("cache", cache_dir() / entry.file))
    return places


def _generator_variant(entry: Entry) -> str | None:
    """The cache folder of a generated entry made with this deployment's secret key, or None when
    the generator writes the registered bytes (it has no secret group, or the key is its public
    ``REFERENCE_KEY``, as in the test suite)."""
    if entry.generator is None:
        return None
    module = importlib.import_module(f"{__package__}.{entry.generator.split(':')[0]}")
    group = getattr(module, "SECRET_GROUP", None)
    if group is None:
        return None
    from .split_secret import fingerprint, group_key

    return None if group_key(group) == module.REFERENCE_KEY else f"deployment-{fingerprint(group)}"


# --- hashing ---------------------------------------------------------------------------------

_hash_memo: dict[tuple[str, int, int, int], str] = {}
_hash_lock = threading.Lock()


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file, memoized by (path, inode, mtime, size) because some files are 25 MB.

    The inode catches files replaced by rename within one mtime tick (atomic writes).
    """
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_ino, st.st_mtime_ns, st.st_size)
    with _hash_lock:
        hit = _hash_memo.get(key)
    if hit is not None:
        return hit
    with open(p, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    with _hash_lock:
        _hash_memo[key] = digest
    return digest


def check_file(path: Path, entry: Entry) -> Path:
    """Raise HashMismatch unless ``path`` holds exactly the registered bytes."""
    actual = sha256_file(path)
    if actual != entry.sha256:
        raise HashMismatch(
            f"sha256 mismatch for dataset {entry.name!r} at {path}\n"
            f"  expected {entry.sha256}\n"
            f"  actual   {actual}\n"
            "The copy is corrupt or the registry is out of date; replace the file "
            "(delete it if it is in the cache) or fix registry.yaml.",
            path=path,
            expected=entry.sha256,
            actual=actual,
        )
    return path


# --- fetch and load --------------------------------------------------------------------------


def fetch(name: str | Entry, *, download: bool = True) -> Path:
    """Path to a verified copy: mirror, then cache, then a pooch download into the cache.

    A generated entry is written into the cache by its generator instead of being downloaded.
    A copy with the wrong hash is an error rather than something to skip, so that a corrupted
    mirror is noticed instead of being papered over by another source.
    """
    entry = resolve(name)
    places = candidates(entry)
    pinned = _generator_variant(entry) is None
    for _where, path in places:
        if path.is_file():
            return check_file(path, entry) if pinned else path
    if entry.generator is not None:
        return _generate(entry, places[-1][1], pinned)
    looked = "\n".join(f"  {where}: {path}" for where, path in places)
    if entry.url is None or not download:
        reason = "it has no download URL" if entry.url is None else "downloading was disabled"
        origin = f"\n(upstream source: {entry.origin})" if entry.origin else ""
        raise DatasetUnavailable(
            f"dataset {entry.name!r} not found and {reason}. Looked in:\n{looked}\n"
            f"Set {MIRROR_ENV} to a course mirror or put the file in the cache.{origin}"
        )
    return _download(entry, places[-1][1], looked)


def _download(entry: Entry, target: Path, looked: str) -> Path:
    import pooch

    assert entry.url is not None
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        got = pooch.retrieve(
            entry.url,
            known_hash=f"sha256:{entry.sha256}",
            fname=target.name,
            path=target.parent,
            progressbar=False,
        )
    except ValueError as exc:
        if "hash" not in str(exc).lower():
            raise DatasetUnavailable(
                f"cannot download {entry.name!r} from {entry.url}: {exc}"
            ) from exc
        raise HashMismatch(
            f"sha256 mismatch for dataset {entry.name!r} downloaded from {entry.url}\n"
            f"  expected {entry.sha256}\n  pooch: {exc}\n"
            "Nothing was saved. The upstream file changed or the registry is out of date.",
            path=entry.url,
            expected=entry.sha256,
            actual=None,
        ) from exc
    except OSError as exc:  # requests' errors are OSErrors too
        raise DatasetUnavailable(
            f"dataset {entry.name!r} not found locally and the download from {entry.url} "
            f"failed ({exc}). Looked in:\n{looked}"
        ) from exc
    return Path(got)


_generate_lock = threading.Lock()


def _generate(entry: Entry, target: Path, pinned: bool = True) -> Path:
    """Run the entry's generator into ``target`` (atomically) and, when ``pinned``, check the bytes
    it wrote against the registry."""
    assert entry.generator is not None
    module, function = entry.generator.split(":")
    write = getattr(importlib.import_module(f"{__package__}.{module}"), function)
    with _generate_lock:  # threads of one process (parallel gradings) generate only once
        if target.is_file():
            return check_file(target, entry) if pinned else target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            write(tmp)
            actual = sha256_file(tmp)
            if pinned and actual != entry.sha256:
                raise HashMismatch(
                    f"sha256 mismatch for generated dataset {entry.name!r} ({entry.generator})\n"
                    f"  expected {entry.sha256}\n"
                    f"  actual   {actual}\n"
                    "The generator no longer writes the registered bytes (changed code, or a numpy "
                    "version with different random streams). Nothing was saved.",
                    path=target,
                    expected=entry.sha256,
                    actual=actual,
                )
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return target


def read_options(entry: Entry) -> dict[str, Any]:
    """pandas.read_csv keyword arguments for a table entry (tab separator for .tsv)."""
    opts = dict(entry.read)
    if entry.suffix == ".tsv":
        opts.setdefault("sep", "\t")
    return opts


def load(name: str | Entry) -> pd.DataFrame | np.ndarray | str:
    """Load a dataset by extension: tables with pandas, .npy with numpy, .txt/.json as text.

    Other files (images, audio, .npz with pickled object arrays) are left to the caller via
    ``fetch`` because how to open them safely depends on the exercise.
    """
    entry = resolve(name)
    if entry.kind == "binary":
        raise DatasetError(
            f"load() does not read {entry.suffix or 'extension-less'} files ({entry.name!r}); "
            f"use fetch({entry.name!r}) and open the path yourself"
        )
    path = fetch(entry)
    if entry.kind == "table":
        import pandas as pd

        return pd.read_csv(path, **read_options(entry))
    if entry.kind == "array":
        import numpy as np

        return np.load(path, allow_pickle=False)
    return path.read_text(encoding="utf-8")


# --- verify ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    """One row of ``python -m datasets verify``."""

    name: str
    status: Literal["ok", "mismatch", "missing"]
    where: str
    path: Path | None
    size: int | None = None


def verify(names: Iterable[str] | None = None) -> list[VerifyResult]:
    """Hash every local copy (mirror and cache) of the given entries; never downloads."""
    registry = get_registry()
    results = []
    for name in names if names is not None else registry:
        entry = registry[name]
        found = False
        for where, path in candidates(entry):
            if not path.is_file():
                continue
            found = True
            ok = sha256_file(path) == entry.sha256
            status: Literal["ok", "mismatch"] = "ok" if ok else "mismatch"
            results.append(VerifyResult(name, status, where, path, path.stat().st_size))
        if not found:
            results.append(VerifyResult(name, "missing", "-", None))
    return results
