"""The one reader for files a sandbox wrote: the seam between the student side and the trusted side.

Everything the trusted side (runner, checker, feedback writer, worker) takes from a sandbox's
work folder comes through here, so that every such read has the same guarantees:

- no link is followed, at any depth of the path: each folder is opened relative to the one
  before with ``O_NOFOLLOW``, so a link swapped in anywhere is refused, not followed;
- only regular files: a named pipe, a device or a socket is refused without blocking (the open
  is non-blocking and the type is checked on the open descriptor, so there is no race);
- a size cap before reading, and never more than the cap read (a file that grows is cut off);
- JSON parsed with a bound on nesting depth (and Python's own bound on the digits of an integer);
- copies out of the work folder (into ``autograded/`` or ``feedback/``) take regular files only,
  each and all of them capped.

A refusal raises :class:`UntrustedFileError`, whose message says what was wrong in words the
student or the instructor can read.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any

MIB = 2**20
MAX_JSON_BYTES = 16 * MIB       # a record or manifest; models and arrays have their own caps
MAX_NOTEBOOK_BYTES = 64 * MIB   # an executed notebook (its outputs are already budgeted)
MAX_JSON_DEPTH = 64


class UntrustedFileError(Exception):
    """A file from the sandbox that the trusted side refuses to read (the message says why)."""


def open_file(root: Path, relative: str | Path, max_bytes: int) -> int:
    """A read-only descriptor for the regular file ``root/relative``; no link is followed on the way.

    ``root`` itself is the trusted side's own folder; everything below it is the sandbox's."""
    parts = Path(relative).parts
    if not parts or Path(relative).is_absolute() or ".." in parts:
        raise UntrustedFileError(f"'{relative}' is not a plain path inside the work folder")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY
    folder = os.open(root, flags | os.O_DIRECTORY)
    try:
        for name in parts[:-1]:
            try:
                inner = os.open(name, flags | os.O_DIRECTORY, dir_fd=folder)
            except OSError as exc:
                raise _refusal(relative, exc) from None
            os.close(folder)
            folder = inner
        try:
            fd = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=folder)
        except OSError as exc:
            raise _refusal(relative, exc) from None
    finally:
        os.close(folder)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise UntrustedFileError(f"'{relative}' is not a regular file (a pipe, device, socket or folder); "
                                 "it was not read")
    if info.st_size > max_bytes:
        os.close(fd)
        raise UntrustedFileError(f"'{relative}' is {info.st_size / MIB:.1f} MiB, over the {max_bytes / MIB:g} MiB "
                                 "the grader reads; it was not read")
    return fd


def _refusal(relative: str | Path, exc: OSError) -> Exception:
    import errno

    if exc.errno == errno.ENOENT:
        return FileNotFoundError(errno.ENOENT, "no such file in the work folder", str(relative))
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return UntrustedFileError(f"'{relative}' is or passes through a link; links are never followed")
    return UntrustedFileError(f"'{relative}' could not be opened: {exc.strerror}")


def read_bytes(root: Path, relative: str | Path, max_bytes: int) -> bytes:
    """At most ``max_bytes`` of a regular file; a file that grew past the cap is refused."""
    fd = open_file(root, relative, max_bytes)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UntrustedFileError(f"'{relative}' grew past the {max_bytes / MIB:g} MiB the grader reads")
    return data


def read_text(root: Path, relative: str | Path, max_bytes: int = MAX_JSON_BYTES) -> str:
    return read_bytes(root, relative, max_bytes).decode("utf-8", errors="replace")


def read_json(root: Path, relative: str | Path, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parsed JSON, bounded in size and nesting depth."""
    return parse_json(read_text(root, relative, max_bytes), str(relative))


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKET = re.compile(r"[\[\]{}]")


def json_depth(text: str) -> int:
    """How deep ``text``'s brackets nest, strings aside (in C-speed passes: no recursion, no loop per character)."""
    import numpy as np

    brackets = "".join(_BRACKET.findall(_STRING.sub("", text)))
    if not brackets:
        return 0
    codes = np.frombuffer(brackets.encode(), dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)
    return int(np.cumsum(steps).max())


def parse_json(text: str, what: str = "the data", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` after refusing deep nesting (the parser, and whatever walks the result,
    would recurse on it). Python refuses integers of over 4300 digits itself; :func:`finite_float`
    copes with numbers too big for a float."""
    if json_depth(text) > max_depth:
        raise UntrustedFileError(f"{what} is nested more than {max_depth} levels deep; it was not read")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UntrustedFileError(f"{what} is not valid JSON ({str(exc)[:120]})") from None


def finite_float(value: Any) -> float:
    """A float from any JSON value: nan when it is not a number or does not fit a float."""
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return float("nan")


def copy_out(root: Path, relative: str | Path, target: Path, max_bytes: int) -> bool:
    """Copy one regular file out of the sandbox's folder (no links, capped); False when refused."""
    try:
        fd = open_file(root, relative, max_bytes)
    except (OSError, UntrustedFileError):
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(fd, "rb") as source, open(target, "wb") as sink:
        shutil.copyfileobj(_Capped(source, max_bytes), sink)
    return True


class _Capped:
    """A reader that stops at ``limit`` bytes, however much the file grew since it was opened."""

    def __init__(self, handle: Any, limit: int):
        self.handle, self.left = handle, limit

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        size = self.left if size < 0 else min(size, self.left)
        data = self.handle.read(size)
        self.left -= len(data)
        return data


def copy_tree(source: Path, target: Path, *, max_bytes: int = 256 * MIB, max_files: int = 1000) -> list[str]:
    """Copy the regular files under ``source`` (a folder the student controls) into ``target``;
    links, pipes and devices are left out, and so is everything past the caps. Returns what was
    left out, in words."""
    skipped: list[str] = []
    left, count = max_bytes, 0
    stack = [Path()]
    while stack:
        relative = stack.pop()
        try:
            fd = os.open(source / relative, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW) if relative.parts \
                else os.open(source, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            skipped.append(f"{relative} (a link or unreadable folder)")
            continue
        with contextlib.closing(_FdDir(fd)) as folder:
            for entry in folder.entries():
                path = relative / entry.name
                if entry.is_dir(follow_symlinks=False):
                    if len(path.parts) <= 8:
                        stack.append(path)
                    else:
                        skipped.append(f"{path} (too deep)")
                    continue
                if not entry.is_file(follow_symlinks=False):
                    skipped.append(f"{path} (not a regular file)")
                    continue
                count += 1
                if count > max_files:
                    skipped.append(f"{path} (more than {max_files} files)")
                    continue
                try:
                    size = entry.stat(follow_symlinks=False).st_size
                except OSError:
                    continue
                if size > left or not copy_out(source, path, target / path, left):
                    skipped.append(f"{path} (over the size limit or refused)")
                    continue
                left -= size
    return skipped


class _FdDir:
    def __init__(self, fd: int):
        self.fd = fd

    def entries(self) -> list[os.DirEntry]:
        with os.scandir(self.fd) as it:
            return list(it)

    def close(self) -> None:
        os.close(self.fd)
