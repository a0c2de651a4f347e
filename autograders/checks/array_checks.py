"""Checks on arrays, single values and DataFrames that a student computed.

Values given as ``expected`` may come from hidden data, so messages describe them by
shape, dtype, counts and differences only; with ``hide_expected=True`` (or an expected value
wrapped in :class:`~autograders.checks.base.Hidden`: the answer the student must compute) no
expected value is ever printed. NumPy is the only hard dependency (pandas is imported on first use).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from autograders.checks.base import NOT_SHOWN, Hidden, fail


def _fmt_shape(shape: Sequence[Any]) -> str:
    inner = ", ".join("None" if d is None else str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def _shape_ok(actual: Sequence[int], expected: Sequence[int | None]) -> bool:
    return len(actual) == len(expected) and all(e is None or a == e for a, e in zip(actual, expected, strict=True))


def _as_expected_shape(shape: Any) -> tuple[int | None, ...]:
    if isinstance(shape, int):
        return (shape,)
    return tuple(None if d is None else int(d) for d in shape)


def _shape_hint(name: str, actual: tuple[int, ...], expected: tuple[int | None, ...]) -> str:
    """The usual reshaping mistake behind a shape mismatch, in words."""
    known = all(e is not None for e in expected)
    if len(actual) == 1 and len(expected) == 2 and expected[1] == 1 and expected[0] in (None, actual[0]):
        return f"add a column axis: {name}.reshape(-1, 1) (or {name}[:, None])"
    if len(actual) == 2 and actual[1] == 1 and len(expected) == 1 and expected[0] in (None, actual[0]):
        return f"drop the extra axis: {name}.ravel() (or {name}[:, 0])"
    if known and len(actual) == 2 and tuple(reversed(actual)) == tuple(expected):
        return f"the axes are swapped: transpose it ({name}.T)"
    if known and math.prod(actual) == math.prod(expected):  # type: ignore[arg-type]
        return f"it has the right number of elements but the wrong layout: reshape it to {_fmt_shape(expected)}"
    if len(actual) != len(expected):
        return f"it has {len(actual)} axes; expected {len(expected)}: check how it is built (a missing or extra axis)"
    return "check how it is built: the number of rows (examples) and columns (features) to keep"


def _to_array(value: Any, name: str) -> np.ndarray:
    if value is None:
        fail(f"{name} is None", measured="None", expected="an array",
             hint="run the cell that computes it, and make sure your function returns it")
    if isinstance(value, str | bytes | dict):
        kind = type(value).__name__
        fail(f"expected {name} to be an array, got {kind}", measured=kind, expected="an array",
             hint="pass the array itself (a NumPy array, list of numbers or tensor)")
    try:
        array = np.asarray(value)
    except Exception as exc:
        if "inhomogeneous" in str(exc) or "sequence" in str(exc):
            fail(f"{name} cannot be turned into an array: its rows have different lengths", measured="ragged",
                 expected="rows of equal length",
                 hint="make every row the same length (pad the sequences, e.g. keras.utils.pad_sequences)")
        kind = type(value).__name__
        fail(f"{name} cannot be turned into an array (got {kind})", measured=kind, expected="an array",
             hint="pass concrete values (a NumPy array, a list of numbers or an evaluated tensor), "
                  "not a symbolic tensor or a model")
    return array


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _require_numeric(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        fail(f"{name} is not numeric: its dtype is {array.dtype}", measured=str(array.dtype),
             expected="a numeric dtype",
             hint="the array holds text or Python objects (rows of different lengths?): convert it with "
                  "np.asarray(values, dtype='float32')")
    return array


_KIND_TARGET = {"float": "float32", "int": "int64", "bool": "bool", "complex": "complex64", "number": "float32"}


def _dtype_matches(dtype: np.dtype, kind: str) -> bool:
    checks = {
        "float": lambda: np.issubdtype(dtype, np.floating),
        "int": lambda: np.issubdtype(dtype, np.integer),
        "bool": lambda: dtype == np.bool_,
        "complex": lambda: np.issubdtype(dtype, np.complexfloating),
        "number": lambda: np.issubdtype(dtype, np.number),
        "str": lambda: dtype.kind in "US",
    }
    if kind in checks:
        return bool(checks[kind]())
    return dtype == np.dtype(kind)


class ArrayCheck:
    """Chainable checks on one array (lists, scalars and tensors are converted with ``np.asarray``)."""

    def __init__(self, array: np.ndarray, name: str = "array") -> None:
        self.array = array
        self.name = name

    def has_shape(self, shape: Any) -> ArrayCheck:
        """``None`` on an axis means any size there."""
        want = _as_expected_shape(shape)
        got = tuple(int(d) for d in self.array.shape)
        if not _shape_ok(got, want):
            fail(f"{self.name} has shape {_fmt_shape(got)}; expected {_fmt_shape(want)}", measured=_fmt_shape(got),
                 expected=_fmt_shape(want), hint=_shape_hint(self.name, got, want))
        return self

    def has_dtype(self, kind: str) -> ArrayCheck:
        """``kind`` is ``"float"``, ``"int"``, ``"bool"``, ``"number"``, ``"str"`` or an exact dtype name."""
        dtype = self.array.dtype
        if not _dtype_matches(dtype, kind):
            target = _KIND_TARGET.get(kind, kind)
            fail(f"{self.name} has dtype {dtype}; expected {kind}", measured=str(dtype), expected=kind,
                 hint=f"convert it: {self.name}.astype('{target}')" if dtype.kind in "biufc" else
                      f"the array holds {dtype} values: convert them to numbers first")
        return self

    def is_finite(self) -> ArrayCheck:
        array = _require_numeric(self.array, self.name)
        bad = ~np.isfinite(array)
        if bad.any():
            n_nan, n_inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            fail(f"{self.name} has {n_nan} NaN and {n_inf} infinite values (first at index {first})",
                 measured={"nan": n_nan, "inf": n_inf, "first_index": list(first)}, expected="all finite",
                 hint="NaN usually comes from a division by zero, log of 0, missing values in the data, or a "
                      "diverging training run (lower the learning rate)")
        return self

    def close_to(self, expected: Any, rtol: float = 1e-5, atol: float = 1e-8, *,
                 hide_expected: bool = False) -> ArrayCheck:
        """Element-wise closeness. The message counts the differing elements and gives the largest
        absolute difference and the first index; the expected values are shown only when public."""
        if isinstance(expected, Hidden):
            expected, hide_expected = expected.value, True
        want = np.asarray(expected)
        got = self.array
        if want.ndim == 0 and got.ndim > 0:
            want = np.broadcast_to(want, got.shape)
        if got.shape != want.shape:
            self.has_shape(want.shape)
        if want.dtype.kind not in "biuf":  # text or objects: compare for equality
            return self._equal_to(want, hide_expected)
        got_num = _require_numeric(got, self.name).astype(np.float64)
        want_num = want.astype(np.float64)
        close = np.isclose(got_num, want_num, rtol=rtol, atol=atol, equal_nan=True)
        if close.all():
            return self
        wrong = ~close
        n_bad, size = int(wrong.sum()), int(got.size)
        with np.errstate(invalid="ignore"):
            diff = np.abs(got_num - want_num)
        finite_diff = diff[wrong & np.isfinite(diff)]
        max_diff = float(finite_diff.max()) if finite_diff.size else float("nan")
        first = tuple(int(i) for i in np.argwhere(wrong)[0])
        message = (f"{n_bad} of {size} elements of {self.name} differ from the expected values "
                   f"(largest absolute difference {max_diff:.4g}, first at index {first})")
        if not hide_expected:
            message += f": there {self.name} is {got_num[first]:.6g}; expected {want_num[first]:.6g}"
        fail(message, measured={"differing": n_bad, "of": size, "max_abs_diff": max_diff, "first_index": list(first)},
             expected=f"all within rtol={rtol:g}, atol={atol:g}", hint=self._close_hint(got_num, want_num))

    def _equal_to(self, want: np.ndarray, hide_expected: bool) -> ArrayCheck:
        same = np.asarray(self.array == want, dtype=bool).reshape(want.shape)
        if same.all():
            return self
        n_bad = int((~same).sum())
        first = tuple(int(i) for i in np.argwhere(~same)[0])
        message = f"{n_bad} of {same.size} elements of {self.name} differ from the expected values (first at index {first})"
        if not hide_expected:
            message += f": there {self.name} is {_py(self.array[first])!r}; expected {_py(want[first])!r}"
        fail(message, measured={"differing": n_bad, "of": int(same.size), "first_index": list(first)},
             expected="all equal", hint="recompute it following the exercise; check spelling and order")

    def _close_hint(self, got: np.ndarray, want: np.ndarray) -> str:
        if np.isnan(got).any() and not np.isnan(want).any():
            return f"{self.name} has NaN values: check for missing data or a diverging computation"
        flat_got, flat_want = np.sort(got, axis=None), np.sort(want, axis=None)
        if np.allclose(flat_got, flat_want, equal_nan=True):
            return "the values are right but in a different order: keep the original order (no sorting or shuffling)"
        shift = got - want
        if got.size > 1 and np.allclose(shift, shift.flat[0], equal_nan=True):
            return "every element is off by the same amount: check a missing or extra shift (mean, offset)"
        return "recompute it following the exercise step by step; check the preprocessing and its order"

    def all_between(self, lo: float, hi: float) -> ArrayCheck:
        array = _require_numeric(self.array, self.name)
        inside = (array >= lo) & (array <= hi)
        if not inside.all():
            n_out = int((~inside).sum())
            finite = array[np.isfinite(array)]
            low = float(finite.min()) if finite.size else float("nan")
            high = float(finite.max()) if finite.size else float("nan")
            fail(f"{n_out} of {array.size} elements of {self.name} are outside [{lo:g}, {hi:g}] "
                 f"(they range from {low:.4g} to {high:.4g})",
                 measured={"outside": n_out, "min": low, "max": high}, expected=f"within [{lo:g}, {hi:g}]",
                 hint="probabilities must lie in [0, 1]: end the model with a sigmoid or softmax activation "
                      "(it may output raw scores)" if (lo, hi) == (0, 1) else
                      "rescale or clip the values to the expected range")
        return self

    def sums_to(self, value: float = 1.0, axis: int = -1, atol: float = 1e-4) -> ArrayCheck:
        """E.g. every row of softmax probabilities sums to 1."""
        array = _require_numeric(self.array, self.name).astype(np.float64)
        if array.ndim == 0:
            fail(f"{self.name} is a single number, not rows to sum", measured="scalar", expected="an array",
                 hint="pass the whole array of predictions")
        sums = np.asarray(array.sum(axis=axis))
        bad = ~np.isclose(sums, value, rtol=0.0, atol=atol)
        if bad.any():
            n_bad = int(bad.sum())
            first = tuple(int(i) for i in np.argwhere(bad)[0]) if sums.ndim else ()
            first_sum = float(sums[first]) if sums.ndim else float(sums)
            where = f"first at {first}, summing to {first_sum:.4g}" if sums.ndim else f"it sums to {first_sum:.4g}"
            fail(f"{n_bad} of {max(sums.size, 1)} rows of {self.name} do not sum to {value:g} along axis {axis} ({where})",
                 measured={"rows_off": n_bad, "first_index": list(first), "first_sum": first_sum},
                 expected=f"sum {value:g} ± {atol:g}",
                 hint="use activation='softmax' on the last layer so that each row of probabilities sums to 1; "
                      "sigmoid outputs do not sum to 1" if value == 1 else
                      "check which axis you normalise over")
        return self


def check_array(value: Any, name: str = "array") -> ArrayCheck:
    """Start checking an array; fails clearly on None, strings, dicts and ragged lists."""
    return ArrayCheck(_to_array(value, name), name)


# --------------------------------------------------------------------------- single values


_NUMBER = int | float


def _to_scalar(value: Any, name: str) -> Any:
    if value is None:
        fail(f"{name} is None", measured="None", expected="a value",
             hint="run the cell that computes it, and make sure your function returns it")
    if isinstance(value, str | bytes | bool | int | float):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "shape") or isinstance(value, list | tuple):
        try:
            array = np.asarray(value)
        except (ValueError, TypeError):
            array = None
        if array is None or array.size != 1:
            shape = "ragged" if array is None else _fmt_shape(array.shape)
            fail(f"expected {name} to be a single value, got an array of shape {shape}", measured=shape,
                 expected="one value", hint="reduce it to one number, e.g. with .mean() or float(...)")
        return array.reshape(()).item()
    return value


class ValueCheck:
    """Chainable checks on one value: a number, a string or a bool."""

    def __init__(self, value: Any, name: str = "value") -> None:
        self.value = value
        self.name = name

    def _number(self) -> float:
        value = self.value
        if isinstance(value, bool) or not isinstance(value, _NUMBER):
            kind = type(value).__name__
            fail(f"expected {self.name} to be a number, got {kind}", measured=kind, expected="a number",
                 hint="convert it with float(...)")
        return float(value)

    def has_type(self, kind: str | type) -> ValueCheck:
        """``"int"``, ``"float"``, ``"number"``, ``"str"``, ``"bool"`` or a Python type."""
        value = self.value
        allowed = {"int": lambda: isinstance(value, int) and not isinstance(value, bool),
                   "float": lambda: isinstance(value, float),
                   "number": lambda: isinstance(value, _NUMBER) and not isinstance(value, bool),
                   "str": lambda: isinstance(value, str), "bool": lambda: isinstance(value, bool)}
        ok = isinstance(value, kind) if isinstance(kind, type) else bool(allowed[kind]())
        if not ok:
            want = kind.__name__ if isinstance(kind, type) else kind
            fail(f"{self.name} is a {type(value).__name__}; expected {want}", measured=type(value).__name__,
                 expected=want, hint=f"convert it with {want}(...)")
        return self

    def equals(self, expected: Any, *, hide_expected: bool = False) -> ValueCheck:
        if isinstance(expected, Hidden):
            expected, hide_expected = expected.value, True
        value = self.value
        same_kind = not (isinstance(expected, bool) and not isinstance(value, bool))
        if same_kind and value == expected:
            return self
        if hide_expected:
            message = f"{self.name} is not the expected value"
        else:
            message = f"{self.name} is {value!r}; expected {expected!r}"
        hint = "recompute it following the exercise"
        if isinstance(value, str) and isinstance(expected, str) and value.strip().lower() == expected.strip().lower():
            hint = "the text differs only in capitalisation or spaces: match it exactly"
        elif isinstance(expected, bool) and not isinstance(value, bool):
            hint = "answer with True or False"
        elif isinstance(expected, _NUMBER) and isinstance(value, str):
            hint = "give a number, not text"
        fail(message, measured=value, expected=NOT_SHOWN if hide_expected else expected, hint=hint)

    def close_to(self, expected: float, rtol: float = 1e-5, atol: float = 1e-8, *,
                 hide_expected: bool = False) -> ValueCheck:
        if isinstance(expected, Hidden):
            expected, hide_expected = expected.value, True
        got = self._number()
        if math.isclose(got, float(expected), rel_tol=rtol, abs_tol=atol):
            return self
        tolerance = f"rtol={rtol:g}, atol={atol:g}"
        if hide_expected:
            message = f"{self.name} is {got:.6g}, which is not within {tolerance} of the expected value"
        else:
            message = f"{self.name} is {got:.6g}; expected {float(expected):.6g} ({tolerance})"
        fail(message, measured=got, expected=NOT_SHOWN if hide_expected else float(expected),
             hint="recompute it following the exercise; check units, scaling and rounding")

    def between(self, lo: float, hi: float) -> ValueCheck:
        got = self._number()
        if not (lo <= got <= hi):
            fail(f"{self.name} is {got:.4g}; expected between {lo:g} and {hi:g}", measured=got,
                 expected=f"between {lo:g} and {hi:g}",
                 hint="check how it is computed: a value outside this range usually means a wrong formula or scale")
        return self

    def is_finite(self) -> ValueCheck:
        got = self._number()
        if not math.isfinite(got):
            fail(f"{self.name} is {got}", measured=got, expected="a finite number",
                 hint="NaN or inf comes from a division by zero, log of 0, missing data or diverging training")
        return self


def check_value(value: Any, name: str = "value") -> ValueCheck:
    """Start checking one value; NumPy scalars, 0-d arrays and one-element tensors become Python values."""
    return ValueCheck(_to_scalar(value, name), name)


# --------------------------------------------------------------------------- DataFrames


def _frame_kind_ok(series: Any, kind: str) -> bool:
    from pandas.api import types

    checks = {
        "float": types.is_float_dtype, "int": types.is_integer_dtype, "bool": types.is_bool_dtype,
        "number": types.is_numeric_dtype, "string": types.is_string_dtype, "str": types.is_string_dtype,
        "datetime": types.is_datetime64_any_dtype,
        "category": lambda s: str(s.dtype) == "category", "object": types.is_object_dtype,
    }
    if kind in checks:
        return bool(checks[kind](series))
    return str(series.dtype) == kind


_FRAME_CONVERT = {
    "float": "df[col].astype(float)", "int": "df[col].astype(int) (after filling missing values)",
    "datetime": "pd.to_datetime(df[col])", "category": "df[col].astype('category')",
    "string": "df[col].astype(str)", "str": "df[col].astype(str)", "bool": "df[col].astype(bool)",
    "number": "pd.to_numeric(df[col])",
}


class FrameCheck:
    """Chainable checks on a pandas DataFrame. Messages name columns and counts, never cell values."""

    def __init__(self, frame: Any, name: str = "DataFrame") -> None:
        self.frame = frame
        self.name = name

    def has_columns(self, columns: Sequence[str], exact: bool = False) -> FrameCheck:
        """All ``columns`` are present; with ``exact`` there are no others (order is not checked)."""
        have = [str(c) for c in self.frame.columns]
        missing = [c for c in columns if c not in have]
        if missing:
            lower = {c.lower(): c for c in have}
            near = [(m, lower[m.lower()]) for m in missing if m.lower() in lower]
            hint = ("column names are case-sensitive: " + ", ".join(f"'{a}' is spelled '{b}'" for a, b in near)
                    if near else "check the column names (spelling) and that no step dropped them")
            fail(f"{self.name} is missing {len(missing)} column(s): {missing}; it has {have[:30]}",
                 measured=have, expected=list(columns), hint=hint)
        if exact:
            extra = [c for c in have if c not in columns]
            if extra:
                fail(f"{self.name} has {len(extra)} extra column(s): {extra[:30]}", measured=have,
                     expected=list(columns), hint=f"drop them: df.drop(columns={extra[:5]!r})")
        return self

    def has_shape(self, shape: Sequence[int | None]) -> FrameCheck:
        want = _as_expected_shape(shape)
        got = tuple(int(d) for d in self.frame.shape)
        if not _shape_ok(got, want):
            rows_off = want[0] is not None and got[0] != want[0]
            fail(f"{self.name} has shape {_fmt_shape(got)}; expected {_fmt_shape(want)}", measured=_fmt_shape(got),
                 expected=_fmt_shape(want),
                 hint="the number of rows differs: check filtering, dropna and merges" if rows_off else
                      "the number of columns differs: check which columns you keep or add")
        return self

    def has_dtypes(self, dtypes: Mapping[str, str]) -> FrameCheck:
        """``{column: kind}``; kinds ``float``, ``int``, ``bool``, ``number``, ``string``, ``datetime``,
        ``category``, ``object`` or an exact dtype name."""
        self.has_columns(list(dtypes))
        for column, kind in dtypes.items():
            series = self.frame[column]
            if not _frame_kind_ok(series, kind):
                convert = _FRAME_CONVERT.get(kind, f"df[col].astype('{kind}')").replace("col", repr(column))
                fail(f"column '{column}' of {self.name} has dtype {series.dtype}; expected {kind}",
                     measured=str(series.dtype), expected=kind, hint=f"convert it: {convert}")
        return self

    def column(self, column: str) -> ArrayCheck:
        self.has_columns([column])
        return ArrayCheck(np.asarray(self.frame[column]), f"column '{column}' of {self.name}")

    def has_no_missing(self) -> FrameCheck:
        counts = self.frame.isna().sum()
        bad = {str(c): int(n) for c, n in counts.items() if n}
        if bad:
            listed = ", ".join(f"'{c}' ({n})" for c, n in list(bad.items())[:10])
            fail(f"{self.name} has missing values in {len(bad)} column(s): {listed}", measured=bad, expected="none",
                 hint="fill them (df[col].fillna(...)) or drop those rows (df.dropna()), as the exercise says")
        return self

    def close_to(self, expected: Any, rtol: float = 1e-5, atol: float = 1e-8, *,
                 hide_expected: bool = False) -> FrameCheck:
        """Same columns and shape, numeric columns close, other columns equal; rows compared by position."""
        want_columns = [str(c) for c in expected.columns]
        self.has_columns(want_columns, exact=True)
        self.has_shape(expected.shape)
        from pandas.api import types

        for column in want_columns:
            got, want = self.frame[column], expected[column]
            label = f"column '{column}' of {self.name}"
            if types.is_numeric_dtype(got) and types.is_numeric_dtype(want) and not types.is_bool_dtype(want):
                ArrayCheck(got.to_numpy(dtype=float, na_value=np.nan), label).close_to(
                    want.to_numpy(dtype=float, na_value=np.nan), rtol=rtol, atol=atol, hide_expected=hide_expected)
                continue
            got_values, want_values = got.to_numpy(dtype=object), want.to_numpy(dtype=object)
            same = np.array([(a == b) or (_is_missing(a) and _is_missing(b))
                             for a, b in zip(got_values, want_values, strict=True)], dtype=bool)
            if not same.all():
                n_bad = int((~same).sum())
                first = int(np.argmax(~same))
                in_order = sorted(map(str, got_values)) == sorted(map(str, want_values))
                fail(f"{n_bad} of {len(same)} rows of {label} differ from the expected values (first at row position {first})",
                     measured={"differing": n_bad, "of": len(same), "first_row": first}, expected="all equal",
                     hint="the values are right but the rows are in a different order: keep or restore the order "
                          "(sort_values / reset_index)" if in_order else
                          "recompute the column following the exercise")
        return self


def _is_missing(value: Any) -> bool:
    try:
        return bool(value is None or (isinstance(value, float) and math.isnan(value)) or value != value)
    except Exception:
        return False


def check_frame(frame: Any, name: str = "DataFrame") -> FrameCheck:
    """Start checking a DataFrame; anything else fails with a hint."""
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        kind = "None" if frame is None else type(frame).__name__
        hint = ("a Series is one column: use df[[col]] or series.to_frame()" if isinstance(frame, pd.Series) else
                "run the cell that builds it and make sure your function returns it" if frame is None else
                "build a DataFrame, e.g. pd.DataFrame(...) or pd.read_csv(...)")
        fail(f"expected {name} to be a pandas DataFrame, got {kind}", measured=kind, expected="DataFrame", hint=hint)
    return FrameCheck(frame, name)
