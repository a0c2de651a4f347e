"""Formative checks: an exercise's public checks, run while the student works, never graded.

An author marks a check public with ``@grades("cell", points=1, public=True, hints=(...))``.
Only checks over the student's own exported objects may be public (``PUBLIC_FIXTURES``): no
hidden data, no thresholds, no assignment config, no fixture of the assignment's conftest.
``deepgrade generate`` writes the public checks' source, and nothing else of the tests, into
the release (``.public-checks/public_checks.py``, with their hint tiers in ``hints.json``); the
course proof fails for a public check that asks for anything more.

In the student's notebook:

- ``check("exercise")`` writes what the exercise's ``export(...)`` cell last handed over into a
  temporary folder, runs the public checks over it with the grader's own pytest plugin in a
  subprocess of the student's kernel, and prints each check: what happened, measured, expected
  and what to try;
- ``hint("exercise")`` prints the next, more specific hint for the first check not passing yet.

Each ``check()`` and ``hint()`` is reported, best effort, to the exchange, so the instructor's
dashboard shows how much the class practised before submitting; nothing of it reaches a grade.

This module is imported in student kernels: it stays light (no pytest, no TensorFlow).
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# the fixtures a public check may ask for: the student's own exported objects, nothing hidden
PUBLIC_FIXTURES = frozenset({"model", "history", "models", "arrays", "values", "submission", "seed", "request"})
# modules the released checks may import: the grading library and what its checks need
PUBLIC_IMPORTS = frozenset({"autograders", "numpy", "math"})
RELEASE_FOLDER = ".public-checks"  # a dot folder: out of the way in the file browser
CHECKS_FILE = "public_checks.py"
HINTS_FILE = "hints.json"
CHECK_TIMEOUT = 180  # seconds: a cold TensorFlow import takes ~12 s, a check far less
SEARCH_UP = 3  # folders above the notebook's where a release's checks folder may lie
PRACTICE_REPORT_TIMEOUT = 2  # seconds: reporting a check to the course never holds the student up


class PublicCheckError(ValueError):
    """A check marked public that could leak hidden material: the author must change it."""


def forbidden_fixtures(names: Iterable[str]) -> list[str]:
    """The fixtures in ``names`` a public check may not use."""
    return sorted(set(names) - PUBLIC_FIXTURES)


# -- the release side: which checks ship -----------------------------------------------------

@dataclass
class PublicCheck:
    check: str
    exercise: str
    description: str
    hints: list[str] = field(default_factory=list)


def _grades_call(function: ast.FunctionDef) -> ast.Call | None:
    for decorator in function.decorator_list:
        if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", getattr(decorator.func, "attr", "")) == "grades":
            return decorator
    return None


def _keyword(call: ast.Call, name: str, default: Any) -> Any:
    for keyword in call.keywords:
        if keyword.arg == name:
            return ast.literal_eval(keyword.value)
    return default


def _imported_names(node: ast.Import | ast.ImportFrom) -> list[str]:
    return [(alias.asname or alias.name).split(".")[0] for alias in node.names]


def _import_line(node: ast.Import | ast.ImportFrom, used: set[str]) -> str | None:
    """The import statement cut down to the names the public checks use (None: none of them)."""
    kept = [alias for alias in node.names if (alias.asname or alias.name).split(".")[0] in used]
    if not kept:
        return None
    names = ", ".join(alias.name + (f" as {alias.asname}" if alias.asname else "") for alias in kept)
    return f"from {node.module} import {names}" if isinstance(node, ast.ImportFrom) else f"import {names}"


def _top_module(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        return [(node.module or "").split(".")[0] if node.level == 0 else "."]
    return [alias.name.split(".")[0] for alias in node.names]


def _free_names(function: ast.FunctionDef) -> set[str]:
    """Names the function reads that it neither receives nor assigns (module globals it needs)."""
    bound = {a.arg for a in (*function.args.posonlyargs, *function.args.args, *function.args.kwonlyargs)}
    loads: set[str] = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Name):
            (loads if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.Lambda) and node is not function and hasattr(node, "name"):
            bound.add(node.name)
    return loads - bound - set(dir(builtins))


def collect_public_checks(tests_dir: Path) -> tuple[str, list[PublicCheck]]:
    """The source of a module with the public checks of ``tests_dir`` (and the imports they need
    from ``PUBLIC_IMPORTS``), and what each check declares. Raises :class:`PublicCheckError` for
    a public check that asks for a hidden fixture or uses anything else of the test module."""
    imports: list[str] = []
    bodies: list[str] = []
    checks: list[PublicCheck] = []
    for path in sorted(tests_dir.glob("test_*.py")):
        text = path.read_text()
        tree = ast.parse(text)
        module_imports = [node for node in tree.body
                          if isinstance(node, ast.Import | ast.ImportFrom) and set(_top_module(node)) <= PUBLIC_IMPORTS]
        available = {name for node in module_imports for name in _imported_names(node)}
        used: set[str] = set()
        for node in tree.body:
            call = _grades_call(node) if isinstance(node, ast.FunctionDef) else None
            if call is None or _keyword(call, "public", False) is not True:
                continue
            where = f"{path.name}::{node.name}"
            bad = forbidden_fixtures(a.arg for a in node.args.args)
            if bad:
                raise PublicCheckError(f"{where} is public but uses {', '.join(bad)}: a public check may only use "
                                       f"{', '.join(sorted(PUBLIC_FIXTURES - {'request'}))}")
            unknown = _free_names(node) - available
            if unknown:
                raise PublicCheckError(f"{where} is public but uses {', '.join(sorted(unknown))} from its test module; "
                                       f"only imports from {', '.join(sorted(PUBLIC_IMPORTS))} ship with the release")
            first = min([d.lineno for d in node.decorator_list] + [node.lineno])
            bodies.append("\n".join(text.splitlines()[first - 1:node.end_lineno]))
            checks.append(PublicCheck(node.name, str(ast.literal_eval(call.args[0])),
                                      (ast.get_docstring(node) or "").split("\n")[0],
                                      [str(h) for h in _keyword(call, "hints", ())]))
            used |= _free_names(node) | {n.id for d in node.decorator_list for n in ast.walk(d) if isinstance(n, ast.Name)}
        lines = [_import_line(node, used) for node in module_imports]
        imports += [line for line in lines if line and line not in imports]
    header = ('"""The public checks of this assignment, written by `deepgrade generate`: run them with\n'
              'check("exercise") in your notebook. Your score comes from all the checks, when you submit."""\n')
    return header + "\n".join(imports) + "\n\n\n" + "\n\n\n".join(bodies) + "\n", checks


def write_public_checks(tests_dir: Path, release_dir: Path, assignment_id: str = "") -> list[PublicCheck]:
    """Put the public checks beside a released notebook (or remove stale ones when there are none),
    with the assignment's id, which a student's practice is reported under."""
    source, checks = collect_public_checks(tests_dir)
    folder = release_dir / RELEASE_FOLDER
    if not checks:
        shutil.rmtree(folder, ignore_errors=True)
        return []
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CHECKS_FILE).write_text(source)
    exercises: dict[str, list[dict[str, Any]]] = {}
    for c in checks:
        exercises.setdefault(c.exercise, []).append(asdict(c))
    declared = {"assignment": assignment_id, "exercises": exercises}
    (folder / HINTS_FILE).write_text(json.dumps(declared, indent=1, ensure_ascii=False) + "\n")
    return checks


# -- the student side: check() and hint() ----------------------------------------------------

_tiers_given: dict[tuple[str, str], int] = {}
_failing: dict[str, list[str]] = {}  # per exercise, the checks that did not pass at its last check()


def _release_folder() -> Path | None:
    here = Path.cwd()
    for folder in [here, *here.parents][:SEARCH_UP + 1]:
        if (folder / RELEASE_FOLDER / CHECKS_FILE).is_file():
            return folder / RELEASE_FOLDER
    return None


def _release_info(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / HINTS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _declared(folder: Path) -> dict[str, list[dict[str, Any]]]:
    exercises = _release_info(folder).get("exercises")
    return exercises if isinstance(exercises, dict) else {}


def _report_practice(folder: Path, exercise: str, kind: str, passed: int | None = None,
                     total: int | None = None) -> None:
    """Tell the course that the student practised, for the instructor's dashboard. Best effort:
    outside a hub (no exchange, no token) or with the exchange down, practice goes on unrecorded."""
    url, token = os.environ.get("DEEPGRADE_EXCHANGE_URL"), os.environ.get("JUPYTERHUB_API_TOKEN")
    course, _, assignment = str(_release_info(folder).get("assignment") or "").partition("/")
    if not (url and token and course and assignment):
        return
    import urllib.request

    request = urllib.request.Request(
        f"{url.rstrip('/')}/api/courses/{course}/assignments/{assignment}/practice", method="POST",
        data=json.dumps({"exercise": exercise, "kind": kind, "passed": passed, "total": total}).encode(),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with contextlib.suppress(OSError, ValueError):
        urllib.request.urlopen(request, timeout=PRACTICE_REPORT_TIMEOUT).close()


def _name(check: dict[str, Any]) -> str:
    from autograders.feedback import check_title

    return check_title({"id": check.get("check") or check.get("id"), "description": check.get("description")})


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _known(exercise: str) -> tuple[Path, list[dict[str, Any]]] | None:
    folder = _release_folder()
    if folder is None:
        print("[deepgrade] this assignment has no public checks here: open the notebook you fetched "
              "(its folder holds .public-checks/public_checks.py)")
        return None
    declared = _declared(folder)
    if exercise not in declared:
        print(f"[deepgrade] '{exercise}' has no public checks; these exercises have some: "
              f"{', '.join(sorted(declared)) or 'none'}")
        return None
    return folder, declared[exercise]


def _run_public_checks(folder: Path, exercise: str, objects: dict[str, Any]) -> dict[str, Any]:
    from autograders.export import EXPORT_DIR_ENV, export

    with tempfile.TemporaryDirectory(prefix="deepgrade-check-") as tmp:
        work = Path(tmp)
        os.environ[EXPORT_DIR_ENV] = str(work / "artifacts")
        try:
            export(exercise, **objects)  # the very files grading would write
        finally:
            del os.environ[EXPORT_DIR_ENV]
        checks_file = work / f"test_{CHECKS_FILE}"
        shutil.copyfile(folder / CHECKS_FILE, checks_file)
        results = work / "results.json"
        argv = [sys.executable, "-m", "pytest", str(checks_file), "-q", "-p", "autograders.plugin",
                "-p", "no:cacheprovider", "--noconftest", "--rootdir", str(work), "-o", "addopts=",
                "--deepgrade-artifacts", str(work), "--deepgrade-results", str(results),
                "--deepgrade-exercise", exercise]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
        env.pop(EXPORT_DIR_ENV, None)
        ran = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=CHECK_TIMEOUT)
        if not results.is_file():
            return {"checks": [], "problems": [f"the checks could not run: {(ran.stdout + ran.stderr).strip()[-500:]}"]}
        return json.loads(results.read_text())


def check(exercise: str) -> None:
    """Run the public checks of ``exercise`` on what its export cell last handed over, and print
    them. Practice only: it does not count toward the grade (submitting grades all checks); that
    it ran, and how many checks passed, is reported to the course's dashboard."""
    from autograders.export import EXPORT_DIR_ENV, exported

    if os.environ.get(EXPORT_DIR_ENV):  # while grading, the grader runs every check itself
        return
    known = _known(exercise)
    if known is None:
        return
    if exercise not in exported:
        print(f"[deepgrade] run the cell with export({exercise!r}, ...) first, then check({exercise!r})")
        return
    result = _run_public_checks(known[0], exercise, exported[exercise])
    checks = [c for c in result.get("checks", []) if isinstance(c, dict)]
    passed = sum(bool(c.get("passed")) for c in checks)
    print(f"{exercise}: {passed} of {len(checks)} public checks pass (practice: it does not count toward your grade)")
    for problem in result.get("problems", []):
        print(f"  ! {problem}")
    for c in checks:
        print(f"  {'✓' if c.get('passed') else '✗'} {_name(c)}")
        if c.get("passed"):
            continue
        for label, key in (("", "message"), ("measured: ", "measured"), ("expected: ", "expected"),
                           ("what to try: ", "hint")):
            if c.get(key) not in (None, ""):
                print(f"      {label}{_shown(c[key])}")
    _failing[exercise] = [str(c.get("id")) for c in checks if not c.get("passed")]
    _report_practice(known[0], exercise, "check", passed, len(checks))
    if _failing[exercise]:
        print(f"  More help, one step at a time: hint({exercise!r})")


def hint(exercise: str) -> None:
    """Print the next, more specific hint for the first public check of ``exercise`` that did not
    pass at the last ``check()`` (before any check, the exercise's first hinted check)."""
    known = _known(exercise)
    if known is None:
        return
    hinted = [c for c in known[1] if c.get("hints")]
    failing = _failing.get(exercise)
    if failing == []:
        print(f"[deepgrade] every public check of '{exercise}' passed at your last check()")
        return
    pending = [c for c in hinted if failing is None or c["check"] in failing] or hinted
    if not pending:
        print(f"[deepgrade] '{exercise}' has no hints: re-read its instructions and the messages of check()")
        return
    target = pending[0]
    tiers = [str(t) for t in target["hints"]]
    given = _tiers_given.get((exercise, target["check"]), 0)
    _tiers_given[(exercise, target["check"])] = given + 1
    tier = min(given, len(tiers) - 1)
    print(f"hint {tier + 1} of {len(tiers)} ({_name(target)}): {tiers[tier]}")
    _report_practice(known[0], exercise, "hint")
    if tier == len(tiers) - 1 and len(tiers) > 1:
        print("  (that is the most specific hint)")
