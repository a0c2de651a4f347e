"""Bake the course data into an image at build time (the Dockerfiles in hub/ run this).

    python hub/images/bake_datasets.py --public DIR [--full DIR] [--assignments DIR] [NAME ...]

``--public`` gets what students may see: the public rows of every split dataset and whole
copies of the others (``datasets.materialize``), each with its ``.stamp``, so that
``public_path`` later needs neither the network nor the full files. ``--full`` (worker image
only) gets the verified full files in the cache layout (``DEEPGRADE_CACHE``); the hidden rows
are computed from them deterministically when grading, so never give ``--full`` to an image
students run.

Files come from the usual lookup (``datasets.fetch``): a course mirror (``DEEPGRADE_DATA_MIRROR``,
the Dockerfiles' ``mirror`` build context), else a download of the registry's canonical URL,
checked against its sha256. The names default to those the assignments use.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml


def used_datasets(assignments: Path) -> list[str]:
    """Registry names listed in ``assignments/<course>/<NN-slug>/assignment.yaml``."""
    names: set[str] = set()
    for config in sorted(assignments.glob("*/*/assignment.yaml")):
        names.update((yaml.safe_load(config.read_text()) or {}).get("datasets") or [])
    return sorted(names)


def bake(public: Path, names: list[str], full: Path | None = None) -> dict[str, list[Path]]:
    """Write the public folder (and the full files, when asked); returns what was written where."""
    if full is not None:
        os.environ["DEEPGRADE_CACHE"] = str(full)  # downloads and generated files land there directly
    import datasets

    written: dict[str, list[Path]] = {"public": list(datasets.materialize(public, names).values()), "full": []}
    if full is not None:
        for name in names:
            entry = datasets.get_registry()[name]
            source, target = datasets.fetch(entry), full / entry.file
            if source.resolve() != target.resolve():  # found in the mirror: copy it into the cache layout
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
            written["full"].append(target)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--public", type=Path, required=True, help="folder for the student-visible files")
    parser.add_argument("--full", type=Path, help="folder for the full files (grading side only)")
    parser.add_argument("--assignments", type=Path, default=Path(__file__).resolve().parents[2] / "assignments")
    parser.add_argument("names", nargs="*", help="registry names (default: those the assignments use)")
    args = parser.parse_args(argv)
    names = args.names or used_datasets(args.assignments)
    written = bake(args.public, names, args.full)
    print(f"public: {len(written['public'])} files in {args.public}")
    if args.full is not None:
        print(f"full: {len(written['full'])} files in {args.full}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
