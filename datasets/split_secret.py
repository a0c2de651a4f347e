"""The per-deployment secret that decides which rows are hidden.

A hidden split must not follow from anything a student can read: not the repository (it is
public), not the registry, not a file in their server or sandbox. So each split names only a
``group`` (rows of files in one group stay aligned), and the key of that group lives in a secret
file kept with the platform's state, readable by the trusted side only::

    # $DEEPGRADE_HOME/split-secret.yaml (mode 0600), written at first start
    digits: 3f9c...          # 64 random hex digits per group
    league: 8a01...

``DEEPGRADE_SPLIT_SECRET`` names another file (an operator's secret store, a Kubernetes Secret
mounted into the workers). Only trusted entry points create or extend the file
(:func:`ensure_secret`: the hub, workers, the ``deepgrade`` and ``python -m datasets`` commands);
reading code that finds no key raises :class:`SecretUnavailable`, so a student's server, which has
neither the file nor the full data, can use the public files it was given and nothing more.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

import yaml

from .registry import DatasetError

SECRET_ENV = "DEEPGRADE_SPLIT_SECRET"
MAX_SECRET_BYTES = 1 << 20


class SecretUnavailable(DatasetError):
    """The hidden split's key is not available in this process (by design on the student side)."""


def secret_path() -> Path:
    """``DEEPGRADE_SPLIT_SECRET``, else ``$DEEPGRADE_HOME/split-secret.yaml`` (``<repo>/.deepgrade``)."""
    env = os.environ.get(SECRET_ENV)
    if env:
        return Path(env).expanduser()
    home = os.environ.get("DEEPGRADE_HOME") or Path(__file__).resolve().parents[1] / ".deepgrade"
    return Path(home) / "split-secret.yaml"


def _read(path: Path) -> dict[str, str]:
    with open(path, "rb") as handle:
        raw = handle.read(MAX_SECRET_BYTES + 1)
    if len(raw) > MAX_SECRET_BYTES:
        raise DatasetError(f"{path}: the split secret is larger than {MAX_SECRET_BYTES} bytes")
    data = yaml.safe_load(raw) or {}
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in data.items()):
        raise DatasetError(f"{path}: the split secret must map each group name to a non-empty string")
    return data


def group_key(group: str) -> str:
    """The secret key of ``group``; raises :class:`SecretUnavailable` when this process has none."""
    path = secret_path()
    try:
        keys = _read(path)
    except (FileNotFoundError, PermissionError) as exc:
        raise SecretUnavailable(
            f"the secret that chooses hidden rows is not readable here ({path}): only the grading side "
            "has it. Public files are prepared by the platform; if one is missing, ask the course staff."
        ) from exc
    if group not in keys:
        raise SecretUnavailable(f"{path} has no key for the split group {group!r}: run any `deepgrade` "
                                "command (or `python -m datasets materialize`) on the grading side once")
    return keys[group]


def fingerprint(group: str) -> str:
    """A short public digest of a group's key: tells stale files apart without revealing the key."""
    return hashlib.sha256(f"deepgrade split fingerprint:{group_key(group)}".encode()).hexdigest()[:16]


def ensure_secret(groups: Iterable[str] | None = None) -> Path:
    """Make sure the secret file exists and has a key for every group (trusted side only).

    ``groups`` defaults to every split group of the registry and every generator's group. The file
    is created with mode 0600 under an exclusive lock, so workers starting together agree.
    """
    from .registry import get_registry

    if groups is None:
        groups = {e.split.group for e in get_registry().values() if e.split is not None} | {"league"}
    wanted = set(groups)
    path = secret_path()
    try:
        if wanted <= set(_read(path)):  # an operator's read-only secret is fine as it is
            return path
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        keys = _read(path) if os.fstat(fd).st_size else {}
        missing = sorted(wanted - set(keys))
        if missing:
            keys.update({group: secrets.token_hex(32) for group in missing})
            text = yaml.safe_dump(keys, sort_keys=True).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, text, 0)
            os.fsync(fd)
    finally:
        os.close(fd)
    return path
