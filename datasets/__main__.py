"""Command line: ``python -m datasets verify`` and ``python -m datasets materialize``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .registry import DatasetError, cache_dir, get_registry, mirror_dir, verify
from .split_secret import SECRET_ENV, ensure_secret
from .splits import materialize


def _verify(args: argparse.Namespace) -> int:
    results = verify(args.names or None)
    width = max(len(r.name) for r in results)
    print(f"mirror: {mirror_dir() or '(none)'}\ncache:  {cache_dir()}\n")
    print(f"{'name':<{width}}  {'status':<8}  {'where':<6}  {'bytes':>10}  path")
    for r in results:
        size = "" if r.size is None else str(r.size)
        print(f"{r.name:<{width}}  {r.status:<8}  {r.where:<6}  {size:>10}  {r.path or ''}")
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "mismatch", "missing")}
    print(f"\n{counts['ok']} ok, {counts['mismatch']} mismatch, {counts['missing']} missing")
    return 1 if counts["mismatch"] else 0


def _secret(args: argparse.Namespace) -> int:
    if args.out:
        os.environ[SECRET_ENV] = str(Path(args.out).resolve())
    print(ensure_secret())
    return 0


def _materialize(args: argparse.Namespace) -> int:
    ensure_secret()  # run on the grading side: the split keys are made here when missing
    public, hidden = Path(args.public), Path(args.hidden) if args.hidden else None
    if hidden is not None and hidden.resolve() == public.resolve():
        print("error: --public and --hidden must be different folders", file=sys.stderr)
        return 2
    names = args.names or None
    for root, is_hidden in ((public, False), (hidden, True)):
        if root is None:
            continue
        written: list[str] = []
        paths = materialize(
            root, names, hidden=is_hidden, on_write=lambda n, _p, sink=written: sink.append(n)
        )
        label = "hidden" if is_hidden else "public"
        print(
            f"{label}: {len(paths)} files in {root} ({len(written)} written, "
            f"{len(paths) - len(written)} up to date)"
        )
        for name in written:
            print(f"  wrote {paths[name]}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m datasets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_verify = sub.add_parser("verify", help="hash every local copy against the registry")
    p_verify.add_argument("names", nargs="*", help="registry names (default: all)")
    p_verify.set_defaults(func=_verify)
    p_mat = sub.add_parser("materialize", help="write public (and hidden) split folders")
    p_mat.add_argument("--public", required=True, metavar="DIR")
    p_mat.add_argument("--hidden", metavar="DIR", help="grading side only")
    p_mat.add_argument("names", nargs="*", help="registry names (default: all)")
    p_mat.set_defaults(func=_materialize)
    p_secret = sub.add_parser("secret", help="make (or complete) the deployment's split secret; grading side only")
    p_secret.add_argument("--out", metavar="FILE", help="where (default: DEEPGRADE_SPLIT_SECRET, else $DEEPGRADE_HOME)")
    p_secret.set_defaults(func=_secret, names=[])
    args = parser.parse_args(argv)
    try:
        if args.names:
            for name in args.names:
                get_registry()[name]  # fail early on typos, with suggestions
        return args.func(args)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
