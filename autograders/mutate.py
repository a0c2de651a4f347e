"""Mutation testing of an assignment's checks (``deepgrade mutate``).

Hand-planted mistakes prove what their author thought of. Mutants prove the rest: small changes
to the reference's solution code, made by transforming its syntax tree, each graded like a
submission. Two kinds:

- **behaviour-changing** mutants (another activation, fewer epochs, a layer removed, a
  ``set_weights`` dropped, a fit on the evaluation data...) must each lose at least one point;
  the *mutation score* is the share that do;
- **equivalent rewrites** (a Sequential model written with the functional API, a string loss
  written as an object, another batch size, extra harmless cells...) must keep full marks.

Operators are small functions registered with :func:`operator`; each looks at one solution
region's syntax tree and proposes replacements of source spans, so a mutant keeps the author's
formatting and its diff reads like a student's edit. Only code between ``### BEGIN SOLUTION`` and
``### END SOLUTION`` is touched. An author who finds a surviving mutant that really is equivalent
marks it in ``assignment.yaml``::

    mutation:
      equivalent:
      - id: arguments-swapped@relu-solution#0
        reason: max(input, 0) and max(0, input) are the same function
"""

from __future__ import annotations

import ast
import difflib
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import nbformat

from autograders.assignment import Assignment

Kind = Literal["behaviour", "equivalent"]
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


@dataclass(frozen=True)
class Change:
    """Replace the source between two (line, column) positions of a cell (lines from 1)."""

    start: tuple[int, int]
    end: tuple[int, int]
    text: str
    description: str


@dataclass(frozen=True)
class Operator:
    name: str
    kind: Kind
    doc: str
    propose: Callable[[ast.AST, str, Context], Iterator[Change]]


@dataclass
class Context:
    """What an operator may know beyond its cell: the whole notebook's code and the names it assigns."""

    notebook_code: str
    assigned: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, sources: list[str]) -> Context:
        assigned: set[str] = set()
        for source in sources:
            try:
                tree = ast.parse(source)
            except SyntaxError:
                continue
            assigned |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        return cls("\n".join(sources), assigned)

    def assigns(self, name: str) -> bool:
        return name in self.assigned


OPERATORS: dict[str, Operator] = {}


def operator(name: str, kind: Kind) -> Callable:
    """Register a mutation operator; its docstring is what the report and the docs show."""

    def register(function: Callable[[ast.AST, str, Context], Iterator[Change]]):
        OPERATORS[name] = Operator(name, kind, (function.__doc__ or "").strip().split("\n")[0], function)
        return function

    return register


@dataclass
class Mutant:
    id: str
    operator: str
    kind: Kind
    description: str
    cell_id: str
    diff: str
    notebook: Any = field(repr=False, default=None)


# --- helpers over the tree -------------------------------------------------------------------------


def _span(node: ast.AST) -> tuple[tuple[int, int], tuple[int, int]]:
    return (node.lineno, node.col_offset), (node.end_lineno, node.end_col_offset)


def _segment(source: str, node: ast.AST) -> str:
    return ast.get_source_segment(source, node) or ""


def _call_name(node: ast.AST) -> str:
    """``fit`` for ``model.fit(...)``, ``Dense`` for ``layers.Dense(...)``."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _keyword(call: ast.Call, name: str) -> ast.keyword | None:
    return next((k for k in call.keywords if k.arg == name), None)


def _arguments(source: str, call: ast.Call, without: ast.keyword | None = None) -> list[str]:
    """A call's arguments as source text, optionally without one keyword."""
    args = [_segment(source, a) for a in call.args]
    return args + [f"{k.arg}={_segment(source, k.value)}" if k.arg else f"**{_segment(source, k.value)}"
                   for k in call.keywords if k is not without]


def _rewrite_call(source: str, call: ast.Call, arguments: list[str], description: str) -> Change:
    start, end = _span(call)
    return Change(start, end, f"{_segment(source, call.func)}({', '.join(arguments)})", description)


def _drop_keyword(source: str, call: ast.Call, keyword: ast.keyword, description: str) -> Change:
    """Rewrite the whole call without one keyword argument."""
    return _rewrite_call(source, call, _arguments(source, call, without=keyword), description)


def _add_keyword(source: str, call: ast.Call, text: str, description: str) -> Change:
    return _rewrite_call(source, call, [*_arguments(source, call), text], description)


def _str_keyword(call: ast.Call, name: str) -> ast.Constant | None:
    k = _keyword(call, name)
    return k.value if k is not None and isinstance(k.value, ast.Constant) and isinstance(k.value.value, str) else None


def _replace(node: ast.AST, text: str, description: str) -> Change:
    start, end = _span(node)
    return Change(start, end, text, description)


def _calls(tree: ast.AST) -> Iterator[ast.Call]:
    return (n for n in ast.walk(tree) if isinstance(n, ast.Call))


# --- behaviour-changing operators --------------------------------------------------------------------

ACTIVATION_SWAP = {"relu": "sigmoid", "sigmoid": "relu", "softmax": "sigmoid", "tanh": "relu", "linear": "relu",
                   "elu": "sigmoid", "selu": "sigmoid"}


@operator("activation", "behaviour")
def _activation(tree, source, context):
    """Another activation: relu and sigmoid swapped, softmax as sigmoid, linear as relu."""
    for call in _calls(tree):
        value = _str_keyword(call, "activation")
        if value is None and _call_name(call) == "Activation" and call.args and isinstance(call.args[0], ast.Constant):
            value = call.args[0]
        if value is not None and value.value in ACTIVATION_SWAP:
            yield _replace(value, repr(ACTIVATION_SWAP[value.value]), f"activation {value.value!r} → "
                           f"{ACTIVATION_SWAP[value.value]!r}")


UNIT_LAYERS = {"Dense", "Conv1D", "Conv2D", "LSTM", "GRU", "SimpleRNN", "Embedding"}


@operator("units", "behaviour")
def _units(tree, source, context):
    """A layer's size doubled (its first number: Dense units, Conv filters, Embedding input_dim)."""
    for call in _calls(tree):
        if _call_name(call) in UNIT_LAYERS and call.args and isinstance(call.args[0], ast.Constant) \
                and isinstance(call.args[0].value, int) and not isinstance(call.args[0].value, bool):
            n = call.args[0].value
            yield _replace(call.args[0], str(n * 2), f"{_call_name(call)}({n}) → {_call_name(call)}({n * 2})")


LOSS_SWAP = {"categorical_crossentropy": "mean_squared_error", "binary_crossentropy": "mean_squared_error",
             "sparse_categorical_crossentropy": "mean_squared_error", "mean_squared_error": "mean_absolute_error",
             "mse": "mae", "mean_absolute_error": "mean_squared_error", "mae": "mse"}


@operator("loss", "behaviour")
def _loss(tree, source, context):
    """Another loss: cross-entropy as mean squared error, squared as absolute error and back."""
    for call in _calls(tree):
        value = _str_keyword(call, "loss")
        if value is not None and value.value in LOSS_SWAP:
            yield _replace(value, repr(LOSS_SWAP[value.value]), f"loss {value.value!r} → {LOSS_SWAP[value.value]!r}")


OPTIMIZER_SWAP = {"adam": "sgd", "sgd": "adam", "rmsprop": "sgd", "Adam": "SGD", "SGD": "Adam", "RMSprop": "SGD"}


@operator("optimizer", "behaviour")
def _optimizer(tree, source, context):
    """Another optimizer: adam and sgd swapped (as a name or as a class)."""
    for call in _calls(tree):
        value = _str_keyword(call, "optimizer")
        if value is not None and value.value in OPTIMIZER_SWAP:
            yield _replace(value, repr(OPTIMIZER_SWAP[value.value]), f"optimizer {value.value!r} → "
                           f"{OPTIMIZER_SWAP[value.value]!r}")
        elif isinstance(call.func, ast.Attribute) and call.func.attr in OPTIMIZER_SWAP \
                and _segment(source, call.func.value).endswith("optimizers"):
            new = OPTIMIZER_SWAP[call.func.attr]
            yield Change((call.func.end_lineno, call.func.end_col_offset - len(call.func.attr)),
                         (call.func.end_lineno, call.func.end_col_offset), new, f"{call.func.attr} → {new}")


@operator("learning-rate", "behaviour")
def _learning_rate(tree, source, context):
    """The learning rate divided by 1000."""
    for call in _calls(tree):
        k = _keyword(call, "learning_rate")
        if k is not None and isinstance(k.value, ast.Constant) and isinstance(k.value.value, int | float):
            yield _replace(k.value, repr(k.value.value / 1000), f"learning_rate {k.value.value} → {k.value.value / 1000}")


@operator("metric", "behaviour")
def _metric(tree, source, context):
    """Another metric: accuracy as mae and mae as accuracy."""
    swap = {"accuracy": "mae", "mae": "accuracy", "mse": "accuracy"}
    for call in _calls(tree):
        k = _keyword(call, "metrics")
        if k is not None and isinstance(k.value, ast.List):
            for element in k.value.elts:
                if isinstance(element, ast.Constant) and element.value in swap:
                    yield _replace(element, repr(swap[element.value]), f"metric {element.value!r} → "
                                   f"{swap[element.value]!r}")


def _is_input(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and _call_name(node) in ("Input", "InputLayer")


@operator("layer-removed", "behaviour")
def _layer_removed(tree, source, context):
    """A layer removed: from a Sequential list, or a model.add(...) line."""
    for call in _calls(tree):
        if _call_name(call) == "Sequential" and call.args and isinstance(call.args[0], ast.List):
            layers = [e for e in call.args[0].elts if not _is_input(e)]
            if len(layers) < 2:
                continue
            for index, layer in enumerate(layers):
                kept = [_segment(source, e) for e in call.args[0].elts if e is not layer]
                yield _replace(call.args[0], "[" + ", ".join(kept) + "]",
                               f"layer {index} ({_segment(source, layer)[:40]}) removed")
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and _call_name(node.value) == "add" \
                and node.value.args and not _is_input(node.value.args[0]):
            yield _replace(node, "pass", f"{_segment(source, node)[:50]} removed")


@operator("epochs", "behaviour")
def _epochs(tree, source, context):
    """Training cut to a fifth of its epochs (at least one)."""
    for call in _calls(tree):
        k = _keyword(call, "epochs")
        if k is not None and isinstance(k.value, ast.Constant) and isinstance(k.value.value, int) and k.value.value > 1:
            yield _replace(k.value, str(max(1, k.value.value // 5)), f"epochs {k.value.value} → {max(1, k.value.value // 5)}")


@operator("reset-removed", "behaviour")
def _reset_removed(tree, source, context):
    """A reset removed: set_weights(...), reset_states() or clear_session() not called."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) \
                and _call_name(node.value) in ("set_weights", "reset_states", "clear_session"):
            yield _replace(node, "pass", f"{_segment(source, node)[:50]} removed")


@operator("validation-split", "behaviour")
def _validation_split(tree, source, context):
    """validation_split removed where it is given, added (0.2) to a fit that has none."""
    for call in _calls(tree):
        if _call_name(call) != "fit":
            continue
        k = _keyword(call, "validation_split")
        if k is not None:
            yield _drop_keyword(source, call, k, "validation_split removed")
        elif _keyword(call, "validation_data") is None:
            yield _add_keyword(source, call, "validation_split=0.2", "validation_split=0.2 added")


@operator("callback-dropped", "behaviour")
def _callback_dropped(tree, source, context):
    """The callbacks of a fit dropped."""
    for call in _calls(tree):
        k = _keyword(call, "callbacks")
        if _call_name(call) == "fit" and k is not None:
            yield _drop_keyword(source, call, k, "callbacks dropped")


@operator("arguments-swapped", "behaviour")
def _arguments_swapped(tree, source, context):
    """The first two positional arguments of a call swapped, when both are plain names."""
    for call in _calls(tree):
        if len(call.args) >= 2 and all(isinstance(a, ast.Name) for a in call.args[:2]) \
                and call.args[0].id != call.args[1].id:
            a, b = call.args[0], call.args[1]
            middle = source[_offset(source, _span(a)[1]):_offset(source, _span(b)[0])]
            yield Change(_span(a)[0], _span(b)[1], b.id + middle + a.id,
                         f"{_call_name(call)}({a.id}, {b.id}) → {_call_name(call)}({b.id}, {a.id})")


@operator("axis", "behaviour")
def _axis(tree, source, context):
    """Another axis: 0 and 1 swapped, -1 as 0."""
    for call in _calls(tree):
        k = _keyword(call, "axis")
        if k is not None and isinstance(k.value, ast.Constant | ast.UnaryOp):
            value = _segment(source, k.value)
            new = {"0": "1", "1": "0", "-1": "0"}.get(value)
            if new is not None:
                yield _replace(k.value, new, f"axis={value} → axis={new}")


@operator("off-by-one", "behaviour")
def _off_by_one(tree, source, context):
    """An off-by-one: range(n) as range(n - 1), a slice's end one shorter."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node) == "range" and node.args:
            last = node.args[-1] if len(node.args) <= 2 else node.args[1]
            yield _replace(last, f"{_segment(source, last)} - 1", f"range: {_segment(source, last)} → "
                           f"{_segment(source, last)} - 1")
        elif isinstance(node, ast.Slice) and node.upper is not None:
            yield _replace(node.upper, f"({_segment(source, node.upper)}) - 1",
                           f"slice end {_segment(source, node.upper)} → {_segment(source, node.upper)} - 1")


@operator("fit-on-evaluation", "behaviour")
def _fit_on_evaluation(tree, source, context):
    """A fit on the evaluation data: a *train* name in fit(...) replaced by its *test* or *val* twin."""
    for call in _calls(tree):
        if _call_name(call) != "fit":
            continue
        for argument in [*call.args, *(k.value for k in call.keywords)]:
            names = [n for n in ast.walk(argument) if isinstance(n, ast.Name) and "train" in n.id]
            for name in names:
                for twin in (name.id.replace("train", "test"), name.id.replace("train", "val")):
                    if context.assigns(twin):
                        yield _replace(name, twin, f"fit on {twin} instead of {name.id}")
                        break


ARITHMETIC_SWAP = {ast.Add: "-", ast.Sub: "+", ast.Mult: "+", ast.Div: "*", ast.Pow: "*"}


@operator("arithmetic", "behaviour")
def _arithmetic(tree, source, context):
    """An arithmetic operator changed: + and - swapped, * as +, / as *, ** as *."""
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and type(node.op) in ARITHMETIC_SWAP:
            sides = [f"({_segment(source, side)})" if isinstance(side, ast.BinOp) else _segment(source, side)
                     for side in (node.left, node.right)]
            new = ARITHMETIC_SWAP[type(node.op)]
            yield _replace(node, f"{sides[0]} {new} {sides[1]}", f"{_segment(source, node)[:40]}: operator → {new}")


@operator("key-swapped", "behaviour")
def _key_swapped(tree, source, context):
    """Another key of the same mapping: weights["node_0"] read as weights["node_1"]."""
    keys: dict[str, list[ast.Constant]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
                and isinstance(node.slice.value, str):
            keys.setdefault(_segment(source, node.value), []).append(node.slice)
    for found in keys.values():
        names = sorted({k.value for k in found})
        if len(names) < 2:
            continue
        for key in found:
            other = names[(names.index(key.value) + 1) % len(names)]
            yield _replace(key, repr(other), f"key {key.value!r} → {other!r}")


# --- equivalent rewrites -----------------------------------------------------------------------------

LOSS_CLASSES = {"mse": "MeanSquaredError", "mean_squared_error": "MeanSquaredError", "mae": "MeanAbsoluteError",
                "mean_absolute_error": "MeanAbsoluteError", "binary_crossentropy": "BinaryCrossentropy",
                "categorical_crossentropy": "CategoricalCrossentropy",
                "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy"}
OPTIMIZER_CLASSES = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop", "adagrad": "Adagrad"}


@operator("objects-for-strings", "equivalent")
def _objects_for_strings(tree, source, context):
    """A loss or optimizer named by a string written as the Keras object (loss=keras.losses.X())."""
    if not re.search(r"^\s*import keras\b", context.notebook_code, re.M):
        return
    for call in _calls(tree):
        loss = _str_keyword(call, "loss")
        if loss is not None and loss.value in LOSS_CLASSES:
            yield _replace(loss, f"keras.losses.{LOSS_CLASSES[loss.value]}()", f"loss {loss.value!r} as an object")
        optimizer = _str_keyword(call, "optimizer")
        if optimizer is not None and optimizer.value in OPTIMIZER_CLASSES:
            yield _replace(optimizer, f"keras.optimizers.{OPTIMIZER_CLASSES[optimizer.value]}()",
                           f"optimizer {optimizer.value!r} as an object")


@operator("functional-for-sequential", "equivalent")
def _functional_for_sequential(tree, source, context):
    """A Sequential model that starts with keras.Input written with the functional API."""
    if ".add(" in context.notebook_code:
        return
    for call in _calls(tree):
        if _call_name(call) != "Sequential" or not call.args or not isinstance(call.args[0], ast.List):
            continue
        elements = call.args[0].elts
        if len(elements) < 2 or not (isinstance(elements[0], ast.Call) and _call_name(elements[0]) == "Input"):
            continue
        chain = "inputs"
        for layer in elements[1:]:
            chain = f"{_segment(source, layer)}({chain})"
        module = _segment(source, call.func)[: -len("Sequential")] or "keras."
        name = _keyword(call, "name")
        named = f", name={_segment(source, name.value)}" if name is not None else ""
        yield _replace(call, f"(lambda inputs: {module}Model(inputs, {chain}{named}))({_segment(source, elements[0])})",
                       "the Sequential model written with the functional API")


@operator("batch-size", "equivalent")
def _batch_size(tree, source, context):
    """Another batch size within reason: a given one halved (at least 16), 64 where none is given."""
    for call in _calls(tree):
        if _call_name(call) != "fit":
            continue
        k = _keyword(call, "batch_size")
        if k is None:
            yield _add_keyword(source, call, "batch_size=64", "batch_size=64 instead of the default 32")
        elif isinstance(k.value, ast.Constant) and isinstance(k.value.value, int) and k.value.value >= 32:
            yield _replace(k.value, str(k.value.value // 2), f"batch_size {k.value.value} → {k.value.value // 2}")


@operator("numpy-for-values", "equivalent")
def _numpy_for_values(tree, source, context):
    """pandas' .values written as .to_numpy()."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "values" and isinstance(node.ctx, ast.Load):
            yield _replace(node, f"{_segment(source, node.value)}.to_numpy()", ".values → .to_numpy()")


EXTRA_CELLS = "extra-cells"  # not a syntax operator: harmless cells added after every solution cell


# --- making mutants ------------------------------------------------------------------------------------


def solution_regions(source: str) -> list[tuple[int, int]]:
    """(first, last) line numbers (from 1) between BEGIN and END SOLUTION markers."""
    regions, start = [], None
    for number, line in enumerate(source.splitlines(), start=1):
        if line.strip() == BEGIN:
            start = number + 1
        elif line.strip() == END and start is not None:
            regions.append((start, number - 1))
            start = None
    return regions


def _offset(source: str, position: tuple[int, int]) -> int:
    """The string index of an ast (line from 1, UTF-8 byte column) position."""
    line, column = position
    lines = source.splitlines(keepends=True)
    return sum(len(text) for text in lines[: line - 1]) + len(lines[line - 1].encode()[:column].decode(errors="ignore"))


def _apply(source: str, change: Change) -> str:
    return source[: _offset(source, change.start)] + change.text + source[_offset(source, change.end):]


def _cell_id(cell, index: int) -> str:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or f"cell-{index}"


def mutants(assignment: Assignment, operators: list[str] | None = None) -> list[Mutant]:
    """Every mutant of the reference's solution regions, in notebook order, with stable ids."""
    nb = nbformat.read(assignment.source_notebook, as_version=4)
    context = Context.of([c.source for c in nb.cells if c.cell_type == "code"])
    chosen = [OPERATORS[name] for name in (operators or OPERATORS) if name != EXTRA_CELLS]
    out: list[Mutant] = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or BEGIN not in cell.source:
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:  # IPython syntax (magics): not ours to mutate
            continue
        regions = solution_regions(cell.source)
        for op in chosen:
            seen: set[str] = set()
            for change in op.propose(tree, cell.source, context):
                if not any(first <= change.start[0] and change.end[0] <= last for first, last in regions):
                    continue
                mutated = _apply(cell.source, change)
                if mutated == cell.source or mutated in seen:
                    continue
                seen.add(mutated)
                cell_id = _cell_id(cell, index)
                copy = nbformat.from_dict(nb)
                copy.cells[index].source = mutated
                diff = "".join(difflib.unified_diff(cell.source.splitlines(keepends=True),
                                                    mutated.splitlines(keepends=True), cell_id, cell_id, n=1))
                out.append(Mutant(f"{op.name}@{cell_id}#{len(seen) - 1}", op.name, op.kind, change.description,
                                  cell_id, diff, copy))
    if operators is None or EXTRA_CELLS in operators:
        out.append(_extra_cells(nb))
    return out


def _extra_cells(nb) -> Mutant:
    copy = nbformat.from_dict(nb)
    cells = []
    for cell in copy.cells:
        cells.append(cell)
        if cell.cell_type == "code" and BEGIN in cell.source:
            cells.append(nbformat.v4.new_markdown_cell("A note of my own."))
            cells.append(nbformat.v4.new_code_cell("scratch = [i * i for i in range(3)]\nprint(scratch)"))
    copy.cells = cells
    return Mutant(f"{EXTRA_CELLS}@notebook#0", EXTRA_CELLS, "equivalent", "a note and a scratch cell after every "
                  "solution cell", "notebook", "", copy)


@dataclass
class MutationReport:
    assignment: str
    killed: list[tuple[Mutant, float]] = field(default_factory=list)
    survived: list[Mutant] = field(default_factory=list)
    marked: list[tuple[Mutant, str]] = field(default_factory=list)  # survivors the author marked equivalent
    kept: list[Mutant] = field(default_factory=list)  # equivalent rewrites with full marks
    broken: list[tuple[Mutant, list[str]]] = field(default_factory=list)  # rewrites that lost points

    @property
    def score(self) -> float | None:
        """Killed ÷ behaviour-changing mutants, not counting those marked equivalent."""
        total = len(self.killed) + len(self.survived)
        return len(self.killed) / total if total else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "assignment": self.assignment, "mutation_score": self.score,
            "killed": len(self.killed), "behaviour_changing": len(self.killed) + len(self.survived),
            "survivors": [{"id": m.id, "description": m.description, "diff": m.diff} for m in self.survived],
            "marked_equivalent": [{"id": m.id, "reason": reason} for m, reason in self.marked],
            "rewrites_kept": [m.id for m in self.kept],
            "rewrites_lost": [{"id": m.id, "description": m.description, "lost": lost, "diff": m.diff}
                              for m, lost in self.broken],
        }


def marked_equivalent(assignment: Assignment) -> dict[str, str]:
    """The author's verdicts: mutant id → why it is equivalent (``mutation.equivalent``)."""
    entries = (assignment.config.get("mutation") or {}).get("equivalent") or []
    return {str(e["id"]): str(e.get("reason", "")) for e in entries if isinstance(e, dict) and "id" in e}


def run_mutation(assignment: Assignment, *, operators: list[str] | None = None, limit: int | None = None,
                 workers: int = 2, seed: int = 1, on_done: Callable | None = None) -> MutationReport:
    """Grade every mutant (at most ``limit``) and sort them into the report."""
    from autograders.validate import Job, failed_checks, run_jobs

    found = mutants(assignment, operators)[:limit] if limit else mutants(assignment, operators)
    report = MutationReport(assignment.id)
    marks = marked_equivalent(assignment)
    with tempfile.TemporaryDirectory(prefix="deepgrade-mutate-") as scratch:
        base = Path(scratch)
        jobs = []
        for index, mutant in enumerate(found):
            path = base / f"mutant-{index:03d}.ipynb"
            nbformat.write(mutant.notebook, path)
            jobs.append(Job(assignment, f"mutant {mutant.id}", path, seed))
        run_jobs(jobs, workers, base, on_done)
    for mutant, job in zip(found, jobs, strict=True):
        r = job.result
        full = r.get("status") == "graded" and r.get("max_score", 0) > 0 and r.get("score") == r.get("max_score")
        if mutant.kind == "equivalent":
            if full:
                report.kept.append(mutant)
            else:
                report.broken.append((mutant, sorted(failed_checks(r)) or [r.get("message", r.get("status", ""))]))
        elif not full:
            report.killed.append((mutant, float(r.get("max_score", 0) - r.get("score", 0))))
        elif mutant.id in marks:
            report.marked.append((mutant, marks[mutant.id]))
        else:
            report.survived.append(mutant)
    return report
