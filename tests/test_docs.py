"""The documentation site builds with warnings as errors (`mkdocs build --strict`).

A broken link or anchor, a page missing from the nav, or a CLI reference that cannot be
generated from the parser fails here, with MkDocs' own output in the failure message.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"mkdocs build --strict failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}",
            pytrace=False,
        )
    return out


def test_site_builds_strict(site: Path) -> None:
    assert (site / "index.html").is_file()
    for page in ("getting-started", "students", "instructors", "grading", "benchmarks", "courses",
                 "security", "operators/docker-compose", "operators/kubernetes", "cli"):
        assert (site / page / "index.html").is_file(), page


def test_cli_reference_lists_every_subcommand(site: Path) -> None:
    from autograders.cli import build_parser

    html = (site / "cli" / "index.html").read_text()

    def progs(parser: argparse.ArgumentParser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    yield child.prog
                    yield from progs(child)

    names = list(progs(build_parser()))
    assert "deepgrade grade" in names and "deepgrade users add" in names
    for prog in names:
        assert f'id="{prog.replace(" ", "-")}"' in html, prog
        assert f"usage: {prog}" in html, prog


def test_screenshots_are_shown(site: Path) -> None:
    shown = "".join(p.read_text() for p in site.rglob("*.html"))
    for png in sorted((ROOT / "docs").glob("*.png")):
        assert (site / png.name).is_file()
        assert png.name in shown, f"{png.name} is on no page"


def test_site_loads_nothing_from_the_internet(site: Path) -> None:
    for page in site.rglob("*.html"):
        text = page.read_text()
        for host in ("cdnjs.cloudflare.com", "fonts.googleapis.com", "googletagmanager.com"):
            assert host not in text, f"{page.relative_to(site)} loads from {host}"
