"""``deepgrade``: the instructor's and operator's command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from autograders.assignment import Assignment, find_all

console = Console()


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


def print_result(result: dict) -> None:
    table = Table(title=escape(f"{result['assignment']} · {result['student']} · seed {result['seed']}"))
    for column in ("check", "points", "result", "measured", "expected", "hint"):
        table.add_column(column, overflow="fold")
    for c in result["checks"]:
        mark = "[green]✔[/]" if c["passed"] else "[red]✘[/]"
        # messages quote student text (exception messages, names): never read as console markup
        table.add_row(f"{mark} {escape(str(c['id']))}", f"{c['score']:g}/{c['points']:g}", escape(str(c["message"])),
                      "" if c["measured"] is None else escape(str(c["measured"])),
                      "" if c["expected"] is None else escape(str(c["expected"])), escape(str(c.get("hint", ""))))
    console.print(table)
    for note in [result.get("isolation_warning"), result.get("message"), *result.get("integrity", []),
                 *result.get("problems", [])]:
        if note:
            console.print(f"[yellow]! {escape(str(note))}[/]")
    for flag in result.get("flags", []):  # audits: for the instructor, never on the student's page
        console.print(f"[magenta]flag ({escape(str(flag.get('grade_id')))}): {escape(str(flag.get('message')))}[/]")
    style = "green" if result["score"] == result["max_score"] and result["max_score"] else "bold"
    console.print(f"[{style}]score {result['score']:g} / {result['max_score']:g}[/] "
                  + escape(f"({result['status']}, isolation: {result['isolation']})"))


def cmd_generate(args: argparse.Namespace) -> int:
    from autograders.gradebook import generate

    for assignment in _selected(args):
        with console.status(f"nbgrader generate_assignment {assignment.id}"):
            path = generate(assignment)
        console.print(f"released {assignment.id} -> {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


def cmd_grade(args: argparse.Namespace) -> int:
    from autograders.runner import grade
    from autograders.sandbox import default_sandbox

    if args.all:
        return grade_class(Assignment.load(args.notebook or args.assignment), args.workers, args.student)
    if not (args.notebook and args.assignment):
        console.print("[red]give a notebook and --assignment, or --all <assignment>[/]")
        return 2
    assignment = Assignment.load(args.assignment)
    with console.status(f"grading {args.notebook} (sandbox, execution, checks)"):
        result = grade(Path(args.notebook), assignment, workdir=Path(args.output) if args.output else None,
                       student=args.student, seed=args.seed, sandbox=default_sandbox(args.sandbox),
                       record_gradebook=not args.no_gradebook,
                       gradebook_root=Path(args.course_dir) if args.course_dir else None)
    print_result(result)
    if args.output:
        console.print(f"feedback: {Path(args.output) / 'feedback.html'}")
    return 0 if result["status"] == "graded" else 1


def grade_class(assignment: Assignment, workers: int, student: str | None = None) -> int:
    """Grade each student's newest submission through the grading queue, N at a time."""
    from hub.queue import DatabaseQueue, default_queue

    queue = default_queue()
    latest = [s for s in queue.store.latest_submissions(assignment.course, assignment.name)
              if student in (None, "student", s.student)]
    if not latest:
        console.print(f"[yellow]no submissions of {assignment.id} in the course database[/]")
        return 1
    jobs = [queue.submit(s.id, requested_by="instructor") for s in latest]
    if isinstance(queue, DatabaseQueue):
        queue.start(workers)
    else:
        console.print(f"{len(jobs)} job(s) sent to the Celery workers")
    failed = 0
    try:
        with _progress() as progress:
            task = progress.add_task(f"grading {assignment.id}", total=len(jobs))

            def done(job) -> None:
                nonlocal failed
                failed += job.state != "graded"
                progress.console.print(escape(f"{job.student}: {job.describe()}"))
                progress.advance(task)

            queue.wait([j.id for j in jobs], on_done=done)
    finally:
        queue.stop()
    return 1 if failed else 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Run grading workers until Ctrl-C (or SIGTERM); jobs cut short are retried elsewhere."""
    import signal
    import threading

    from hub.queue import DatabaseQueue, default_queue

    queue = default_queue()
    if not isinstance(queue, DatabaseQueue):
        queue.start(args.workers)  # Celery's own worker loop
        return 0
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    queue.start(args.workers)
    console.print(f"grading with {args.workers} worker(s) from {queue.store.engine.url!r}; Ctrl-C stops")
    stop.wait()
    queue.stop()
    return 0


def _selected(args: argparse.Namespace) -> list[Assignment]:
    if getattr(args, "all", False) or not args.assignment:
        return find_all()
    return [Assignment.load(args.assignment)]


def cmd_validate(args: argparse.Namespace) -> int:
    from autograders.validate import DEFAULT_SEEDS, validate_all

    seeds = tuple(range(1, args.seeds + 1)) if args.seeds else DEFAULT_SEEDS
    assignments = _selected(args)
    start = time.monotonic()
    with _progress() as progress:
        tasks = {a.id: progress.add_task(f"validate {a.id}", total=len(seeds) + 1 + len(a.mistakes))
                 for a in assignments}
        proofs = validate_all(assignments, seeds, args.workers,
                              on_done=lambda job: progress.advance(tasks[job.assignment.id]))
    wall = time.monotonic() - start
    for proof in proofs:
        table = Table(title=f"validate {proof.assignment.id}")
        for column in ("run", "ok", "score", "detail"):
            table.add_column(column, overflow="fold")
        for v in proof.verdicts:
            table.add_row(v.label, "[green]✔[/]" if v.ok else "[red]✘[/]", f"{v.score:g}/{v.max_score:g}", v.detail)
        console.print(table)
        console.print(f"validated {proof.assignment.id}: {len(proof.verdicts)} proofs, "
                      f"{proof.seconds:.0f} s of grading")
    slowest = max(proofs, key=lambda p: p.seconds)
    console.print(f"validated {len(proofs)} assignment(s) in {wall / 60:.1f} min with {args.workers} workers; "
                  f"slowest: {slowest.assignment.id} ({slowest.seconds:.0f} s of grading)")
    if args.json:
        report = {"seconds": round(wall, 1), "workers": args.workers, "seeds": list(seeds),
                  "assignments": {p.assignment.id: {"ok": p.ok, "seconds": round(p.seconds, 1),
                                                    "verdicts": [vars(v) for v in p.verdicts]} for p in proofs}}
        Path(args.json).write_text(json.dumps(report, indent=1))
    failures = sum(not v.ok for p in proofs for v in p.verdicts)
    console.print("[green]all proofs hold[/]" if not failures else f"[red]{failures} proof(s) failed[/]")
    return 1 if failures else 0


def cmd_mutate(args: argparse.Namespace) -> int:
    from autograders.mutate import OPERATORS, mutants, run_mutation

    assignment = Assignment.load(args.assignment)
    operators = args.operators.split(",") if args.operators else None
    unknown = sorted(set(operators or []) - set(OPERATORS) - {"extra-cells"})
    if unknown:
        console.print(escape(f"unknown operators {unknown}; choose from {sorted(OPERATORS)} or extra-cells"))
        return 2
    if args.list:
        for mutant in mutants(assignment, operators)[: args.limit or None]:
            console.print(escape(f"{mutant.kind:10} {mutant.id}: {mutant.description}"))
        return 0
    found = mutants(assignment, operators)[: args.limit or None]
    with _progress() as progress:
        task = progress.add_task(f"mutate {assignment.id}", total=len(found))
        report = run_mutation(assignment, operators=operators, limit=args.limit or None, workers=args.workers,
                              on_done=lambda job: progress.advance(task))
    table = Table(title=f"mutate {assignment.id}")
    for column in ("mutant", "kind", "verdict", "change"):
        table.add_column(column, overflow="fold")
    for mutant, lost in report.killed:
        table.add_row(escape(mutant.id), "behaviour", f"[green]killed[/] (−{lost:g})", escape(mutant.description))
    for mutant in report.survived:
        table.add_row(escape(mutant.id), "behaviour", "[red]survived[/]", escape(mutant.description))
    for mutant, reason in report.marked:
        table.add_row(escape(mutant.id), "behaviour", "equivalent (marked)", escape(reason))
    for mutant in report.kept:
        table.add_row(escape(mutant.id), "equivalent", "[green]full marks[/]", escape(mutant.description))
    for mutant, lost in report.broken:
        table.add_row(escape(mutant.id), "equivalent", "[red]lost points[/]", escape(f"{mutant.description}: {lost}"))
    console.print(table)
    for mutant in [*report.survived, *(m for m, _ in report.broken)]:
        console.print(escape(mutant.diff))
    score = "n/a" if report.score is None else f"{report.score:.0%}"
    console.print(f"mutation score {score} ({len(report.killed)} of {len(report.killed) + len(report.survived)} "
                  f"behaviour-changing mutants killed); {len(report.broken)} equivalent rewrite(s) lost points")
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=1))
    return 1 if report.survived or report.broken else 0


def cmd_replay(args: argparse.Namespace) -> int:
    from autograders.replay import replay

    try:
        report = replay(Path(args.result), Path(args.notebook) if args.notebook else None)
    except (OSError, ValueError, KeyError) as exc:
        console.print(escape(f"cannot replay {args.result}: {exc}"))
        return 2
    for key, (before, now) in report.inputs_changed.items():
        console.print(escape(f"changed since the grading: {key}: {before} → {now}"))
    for difference in report.differed:
        console.print(escape(f"✘ {difference['check']}: recorded {difference['recorded']}, now {difference['now']}"))
    total = len(report.reproduced) + len(report.differed)
    verdict = "[green]reproduced exactly[/]" if report.exact else "[red]did not reproduce[/]"
    console.print(f"{verdict}: {len(report.reproduced)} of {total} checks the same")
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=1))
    return 0 if report.exact else 1


def cmd_calibrate(args: argparse.Namespace) -> int:
    from autograders.calibrate import CalibrationError, calibrate
    from autograders.validate import rewrites

    assignment = Assignment.load(args.assignment)
    with _progress() as progress:
        task = progress.add_task(f"calibrate {assignment.id}",
                                 total=args.seeds + len(rewrites(assignment)) + len(assignment.mistakes))
        try:
            specs = calibrate(assignment, args.seeds, args.workers, on_done=lambda _job, t=task: progress.advance(t))
        except CalibrationError as exc:
            console.print(f"[red]calibration failed: {exc}[/]")
            return 1
    table = Table(title=f"thresholds of {assignment.id} ({args.seeds} seeds)")
    for column in ("threshold", "direction", "correct runs", "chosen", "false fails (95 % bound)",
                   "planted mistakes"):
        table.add_column(column, overflow="fold")
    for key, spec in specs.items():
        runs = spec["reference"]["values"]
        table.add_row(key, spec["direction"], f"{len(runs)}: {min(runs):.4g} to {max(runs):.4g}",
                      f"{spec['value']:.4g}", f"≤ {spec['reference']['false_fail']['bound']:.2%}",
                      ", ".join(f"{k}={v:.4g}" if v is not None else f"{k}=–" for k, v in spec["broken"].items()))
    console.print(table)
    console.print(f"written to {assignment.path / 'assignment.yaml'}")
    return 0


def cmd_autograde(args: argparse.Namespace) -> int:
    """Grade the collected submissions in the course folder and lay them out for nbgrader."""
    import tempfile

    from nbgrader.utils import parse_utc

    from autograders.gradebook import course_root, lay_out
    from autograders.runner import grade
    from autograders.sandbox import default_sandbox, remove_tree

    assignment = Assignment.load(args.assignment)
    root = course_root(assignment.course)
    notebooks = sorted(root.glob(f"submitted/{args.student or '*'}/{assignment.name}/{assignment.notebook_name}.ipynb"))
    if not notebooks:
        console.print(f"[yellow]no collected submissions of {escape(str(root / 'submitted'))} for {assignment.id}[/]")
        return 1
    failed = 0
    for notebook in notebooks:
        student = notebook.parent.parent.name
        stamp = notebook.parent / "timestamp.txt"
        when = parse_utc(stamp.read_text()) if stamp.exists() else datetime.now(UTC)
        work = Path(tempfile.mkdtemp(prefix="deepgrade-autograde-"))
        try:
            with console.status(f"grading {escape(student)}"):
                result = grade(notebook, assignment, workdir=work, student=student,
                               sandbox=default_sandbox(args.sandbox), record_gradebook=True, submitted_at=when)
            if result.get("execution", {}).get("gradebook"):
                lay_out(root, student, assignment, notebook.parent, work, when)
        finally:
            remove_tree(work)
        console.print(f"{escape(student)}: {result['score']:g} / {result['max_score']:g} ({escape(result['status'])})")
        failed += result["status"] != "graded"
    return 1 if failed else 0


def cmd_hub(args: argparse.Namespace) -> int:
    from hub.launcher import run_hub

    return run_hub()


def cmd_users(args: argparse.Namespace) -> int:
    from hub.launcher import Added, add_user, import_users, remove_user
    from hub.policy import HubSettings
    from hub.store import CourseStore

    settings = HubSettings()

    def report(added: list[Added]) -> None:
        for person in added:
            if person.sessions:
                console.print(escape(f"  {person.username}: {person.sessions}"), soft_wrap=True)
        invitations = {p.username: p.invitation for p in added if p.invitation}  # the last one of each counts
        for username, invitation in invitations.items():
            console.print(escape(f"  invitation for {username} (single use, expires "
                                 f"{invitation.expires_at:%Y-%m-%d %H:%M} UTC): {invitation.link(settings.url)}"),
                          soft_wrap=True, highlight=False)
        if invitations:
            console.print("  (give each person their own link; on a public hub, use its address)")

    if args.action == "add":
        added = add_user(settings, args.username, args.role, args.course, args.password)
        console.print(escape(f"{args.username}: {args.role} in {', '.join(args.course or settings.courses)}"))
        report([added])
    elif args.action == "import":
        added = import_users(settings, Path(args.csv))
        console.print(escape(f"imported {len(added)} rows from {args.csv}"))
        report(added)
    elif args.action == "remove":
        memberships, sessions = remove_user(settings, args.username)
        console.print(escape(f"removed {args.username} from {memberships} course(s); {sessions}"), soft_wrap=True)
    table = Table(title="roster")
    for column in ("user", "course", "role"):
        table.add_column(column)
    for member in CourseStore().roster():
        table.add_row(escape(member.username), member.course, member.role)
    console.print(table)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Grades of a course as CSV, every enrolled student included (blank where nothing counts)."""
    from hub.dashboard.grades import grades_csv
    from hub.dashboard.report import load_course
    from hub.store import CourseStore

    text = grades_csv(load_course(CourseStore(), args.course), args.layout)
    if args.output:
        Path(args.output).write_text(text)
        console.print(escape(f"wrote {args.layout} grades of {args.course} to {args.output}"))
    else:
        sys.stdout.write(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepgrade", description="Autograded deep-learning courses.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="make the student version of an assignment with nbgrader")
    p.add_argument("assignment", nargs="?", help="assignment id, e.g. keras-intro/01-introducing-keras")
    p.add_argument("--all", action="store_true")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("grade", help="grade one notebook and print its checks, or --all submissions of an "
                                     "assignment through the grading queue")
    p.add_argument("notebook", nargs="?", help="a notebook, or with --all the assignment id")
    p.add_argument("--assignment")
    p.add_argument("--all", action="store_true",
                   help="regrade each student's newest submission of the assignment (course database)")
    p.add_argument("--workers", type=int, default=2, help="with --all: submissions graded at once")
    p.add_argument("--student", default="student")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--output", help="folder for result.json, feedback.html and artifacts")
    p.add_argument("--sandbox", choices=["auto", "bubblewrap", "docker", "process"], default=None)
    p.add_argument("--course-dir", help="nbgrader course directory (default .deepgrade/courses/<course>)")
    p.add_argument("--no-gradebook", action="store_true", help="do not write the score into the gradebook")
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser("validate", help="prove reference, blank and planted mistakes grade as declared")
    p.add_argument("assignment", nargs="?")
    p.add_argument("--all", action="store_true")
    p.add_argument("--seeds", type=int, default=0, help="number of reference seeds (default 5)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", metavar="PATH", help="also write the verdicts and times as JSON (for CI)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("mutate", help="grade mutants of the reference: each behaviour change must lose points, "
                       "each equivalent rewrite must keep full marks")
    p.add_argument("assignment")
    p.add_argument("--operators", help="comma-separated operator names (default: all; see --list)")
    p.add_argument("--limit", type=int, default=0, help="grade at most this many mutants, in notebook order")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--list", action="store_true", help="list the mutants without grading them")
    p.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    p.set_defaults(func=cmd_mutate)

    p = sub.add_parser("replay", help="grade a recorded submission again and say whether every check reproduced")
    p.add_argument("result", help="a result.json written by a grading (its folder holds submitted.ipynb)")
    p.add_argument("--notebook", help="the submitted notebook, when it is not beside the result")
    p.add_argument("--json", metavar="PATH", help="also write the comparison as JSON")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("calibrate", help="measure the reference over seeds and write thresholds with false-fail "
                                         "bounds of at most 1 %%")
    p.add_argument("assignment")
    p.add_argument("--seeds", type=int, default=20, help="reference seeds (default 20)")
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("autograde", help="grade the collected submissions of an assignment (hub course folder)")
    p.add_argument("assignment")
    p.add_argument("--student", help="only this student (default: everyone collected)")
    p.add_argument("--sandbox", choices=["auto", "bubblewrap", "docker", "process"], default=None)
    p.set_defaults(func=cmd_autograde)

    p = sub.add_parser("worker", help="run grading workers for the queue (DEEPGRADE_QUEUE: database or celery)")
    p.add_argument("--workers", type=int, default=1)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("hub", help="start the course hub on its embedded defaults (Ctrl-C stops it)")
    p.set_defaults(func=cmd_hub)

    p = sub.add_parser("export", help="grades of a course as CSV with every enrolled student (blank where "
                                      "nothing was graded), counted by each assignment's score policy")
    p.add_argument("course", help="course id, e.g. keras-intro")
    p.add_argument("--layout", choices=["wide", "long"], default="wide",
                   help="wide: one row per student, one column per assignment (an LMS gradebook import); "
                        "long: one row per student and assignment, with the counted submission")
    p.add_argument("--output", "-o", help="write to this file (default: standard output)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("users", help="the course roster: who is an instructor or a student")
    users = p.add_subparsers(dest="action", required=True)
    q = users.add_parser("add", help="add or update a person")
    q.add_argument("username")
    q.add_argument("--role", choices=["instructor", "student"], default="student")
    q.add_argument("--course", action="append", help="course id (repeatable; default every course)")
    q.add_argument("--password", help="set a password now (otherwise a new person gets a single-use "
                                      "invitation link, valid DEEPGRADE_INVITATION_DAYS days, default 7)")
    q = users.add_parser("import", help="import a CSV: username,role[,course][,password]")
    q.add_argument("csv")
    q = users.add_parser("remove", help="remove a person from every course and the hub: signed out, "
                                        "servers stopped, tokens revoked, kept out until added again")
    q.add_argument("username")
    users.add_parser("list", help="show the roster")
    p.set_defaults(func=cmd_users)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from datasets.split_secret import ensure_secret

    ensure_secret()  # the trusted side: the hidden splits' keys exist before anything reads data
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
