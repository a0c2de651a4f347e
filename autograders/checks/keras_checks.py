"""Checks on a Keras model: its inputs and outputs, its layers, and how it was compiled.

Every check either returns ``self`` so that calls chain, or raises ``CheckFailure``
through :func:`autograders.checks.base.fail`. Messages name the layer at fault the way a
student reads it in ``model.summary()``: 1-based, with its name, e.g. ``layer 3 'dense_2'``.
Keras is imported lazily so that importing the check library stays cheap.

Equivalent forms are equal: a model written with ``Sequential``, the functional API or a
subclass, with blocks wrapped in nested models of any class, gives the same layer list
(:meth:`ModelCheck.flat_layers`: no ``InputLayer``, a nested model used once is replaced by its
own layers, one used several times stays one shared unit); compile settings are compared
by meaning, whether given as strings, classes, objects, lists or dicts keyed by output name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autograders.checks.base import Hidden, fail, from_student, reveal

_MISSING = object()


def _keras() -> Any:
    import keras

    return keras


# --------------------------------------------------------------------------- helpers


def _type_name(obj: Any) -> str:
    return "None" if obj is None else type(obj).__name__


def _as_shape(shape: Any) -> tuple[int | None, ...]:
    """A shape as a tuple of ints and Nones, whatever it came as (tuple, list, TensorShape, int)."""
    if isinstance(shape, int):
        return (shape,)
    try:
        dims = list(shape)
    except TypeError:
        return (shape,)
    out: list[int | None] = []
    for d in dims:
        d = getattr(d, "value", d)  # TF1-style Dimension objects
        out.append(None if d is None else int(d))
    return tuple(out)


def _fmt_shape(shape: Sequence[Any]) -> str:
    inner = ", ".join("None" if d is None else str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def _shape_matches(actual: Sequence[Any], expected: Sequence[Any]) -> bool:
    """``None`` in the expected shape means any size; ``None`` in the actual one only matches ``None``."""
    return len(actual) == len(expected) and all(e is None or a == e for a, e in zip(actual, expected, strict=True))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _camel_to_snake(name: str) -> str:
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    return name.lower()


def _safe_config(layer: Any) -> dict[str, Any]:
    try:
        config = layer.get_config()
    except Exception:
        return {}
    return config if isinstance(config, dict) else {}


def _activation_name(activation: Any) -> str:
    """Canonical activation name: ``None`` and ``"linear"`` are the same thing."""
    if activation is None:
        return "linear"
    if isinstance(activation, str):
        return activation.lower()
    if isinstance(activation, dict):  # a serialized activation
        inner = activation.get("config")
        if isinstance(inner, str):
            return inner.lower()
        return str(activation.get("class_name", "?")).lower()
    name = getattr(activation, "__name__", None) or type(activation).__name__
    return str(name).lower()


def _layer_summary(layer: Any) -> str:
    """A one-word-per-setting summary such as ``Dense(50, relu)`` for listing layers."""
    config = _safe_config(layer)
    parts: list[str] = []
    for key in ("units", "filters"):
        if key in config:
            parts.append(str(config[key]))
    if "kernel_size" in config:
        parts.append(f"kernel_size={_plain(config['kernel_size'])}")
    if "rate" in config:
        parts.append(f"rate={config['rate']:g}" if isinstance(config["rate"], float) else f"rate={config['rate']}")
    if "activation" in config:
        parts.append(_activation_name(config["activation"]))
    return f"{type(layer).__name__}({', '.join(parts)})"


def _plain(value: Any) -> Any:
    """Tuples and lists compare alike; Keras configs use both."""
    if isinstance(value, list | tuple):
        return tuple(_plain(v) for v in value)
    return value


def _same_value(attr: str, actual: Any, expected: Any) -> bool:
    if attr == "activation":
        return _activation_name(actual) == _activation_name(expected)
    actual, expected = _plain(actual), _plain(expected)
    if isinstance(expected, int) and not isinstance(expected, bool) and isinstance(actual, tuple):
        # kernel_size=3 is how students write kernel_size=(3, 3)
        return len(actual) > 0 and all(a == expected for a in actual)
    if isinstance(expected, float) and isinstance(actual, int | float) and not isinstance(actual, bool):
        return math.isclose(float(actual), expected, rel_tol=1e-6, abs_tol=1e-12)
    try:
        return bool(actual == expected)
    except Exception:
        return False


def _fmt_value(attr: str, value: Any) -> str:
    if attr == "activation":
        return repr(_activation_name(value))
    if isinstance(value, tuple | list):
        return _fmt_shape(value) if all(v is None or isinstance(v, int) for v in value) else repr(value)
    return repr(value)


def _input_layer_type() -> type:
    return _keras().layers.InputLayer


def _not_a_model_hint(obj: Any) -> str:
    keras = _keras()
    if obj is None:
        return ("the value is None: run the cell that builds the model, and make sure your "
                "function ends with `return model`")
    if isinstance(obj, str | bytes):
        return ("pass the model object itself, not its name or a file path "
                "(load a saved model with keras.models.load_model(path))")
    if isinstance(obj, keras.callbacks.History):
        return "model.fit(...) returns a History, not the model: pass the model object itself"
    if isinstance(obj, keras.layers.Layer):
        return ("a single layer is not a model: put the layers in keras.Sequential([...]) or "
                "build keras.Model(inputs, outputs)")
    if hasattr(obj, "shape") or isinstance(obj, list | tuple | dict):
        return "this looks like data or predictions: pass the model object you called fit on"
    return "build the model with keras.Sequential([...]) or keras.Model(inputs, outputs) and pass that object"


# --------------------------------------------------------------------------- layer specs


@dataclass(frozen=True)
class LayerSpec:
    """What one layer should be: a type name and the config values it should have.

    Values are compared with ``layer.get_config()`` (falling back to the attribute), so
    any config key works: ``units``, ``activation``, ``rate``, ``filters``, ``kernel_size``...
    """

    type_name: str | None
    attrs: dict[str, Any] = field(default_factory=dict)

    def first_mismatch(self, layer: Any) -> tuple[str, Any, Any] | None:
        """``(attr, actual, expected)`` for the first setting that differs, ``type`` first."""
        actual_type = type(layer).__name__
        if self.type_name is not None and actual_type.lower() != self.type_name.lower():
            return ("type", actual_type, self.type_name)
        config = _safe_config(layer)
        for attr, expected in self.attrs.items():
            actual = config[attr] if attr in config else getattr(layer, attr, _MISSING)
            if actual is _MISSING or not _same_value(attr, actual, expected):
                return (attr, actual, expected)
        return None

    def __str__(self) -> str:
        parts: list[str] = []
        attrs = dict(self.attrs)
        for key in ("units", "filters"):
            if key in attrs:
                parts.append(str(attrs.pop(key)))
        activation = attrs.pop("activation", _MISSING)
        if activation is not _MISSING:
            parts.append(_activation_name(activation))
        parts.extend(f"{k}={_plain(v)!r}" for k, v in attrs.items())
        return f"{self.type_name or 'any layer'}({', '.join(parts)})"


def layer_spec(type_name: str | type | None, **attrs: Any) -> LayerSpec:
    """A spec for any layer type, e.g. ``layer_spec("Dropout", rate=0.2)``."""
    if isinstance(type_name, type):
        type_name = type_name.__name__
    return LayerSpec(type_name, dict(attrs))


def dense(units: int, activation: str | None = "linear", use_bias: bool | None = None, **more: Any) -> LayerSpec:
    """A spec for a Dense layer; ``activation=None`` means linear, as in Keras."""
    attrs: dict[str, Any] = {"units": units, "activation": activation}
    if use_bias is not None:
        attrs["use_bias"] = use_bias
    attrs.update(more)
    return LayerSpec("Dense", attrs)


def _as_spec(spec: Any) -> LayerSpec:
    if isinstance(spec, LayerSpec):
        return spec
    if isinstance(spec, str | type):
        return layer_spec(spec)
    raise TypeError(f"layers(...) takes LayerSpec objects (dense(...), layer_spec(...)) or type names, got {_type_name(spec)}")


def _attr_hint(attr: str, actual: Any, expected: Any, *, position: int, is_last: bool, layer: Any) -> str:
    """What to change, in student words, for one setting of one layer."""
    where = "the last layer" if is_last else f"layer {position}"
    if attr == "type":
        if str(actual) == "Activation" and str(expected).lower() == "dense":
            return "put the activation inside the layer, Dense(units, activation=...), instead of a separate Activation layer"
        return f"use keras.layers.{expected}(...) at {where}; compare model.summary() with the exercise"
    if actual is _MISSING:
        return f"{where} is a {type(layer).__name__}, which has no '{attr}': check the layer type at this position"
    if attr == "activation":
        got, want = _activation_name(actual), _activation_name(expected)
        units = _safe_config(layer).get("units")
        if is_last and want == "linear":
            return f"the last layer uses activation '{got}'; a regression output should be linear: remove the activation"
        if want == "sigmoid" and got == "softmax":
            if units == 1:
                return "softmax over one unit always outputs 1: use sigmoid for a yes/no output"
            return "outputs sum to 1 across labels: use sigmoid, not softmax, for multi-label"
        if want == "softmax" and got == "sigmoid":
            return "use softmax so that the class probabilities sum to 1 (one class per example)"
        if want == "softmax" and got == "linear" and is_last:
            return "the last layer outputs raw scores: add activation='softmax' to get class probabilities"
        if want == "linear":
            return f"remove the activation of {where} (linear is the default)"
        return f"set activation='{want}' in {where}"
    if attr == "units":
        if is_last:
            return f"the output layer needs {expected} unit(s), one per predicted value or class: Dense({expected}, ...)"
        return f"set the number of units of {where}: Dense({expected}, ...)"
    if attr == "use_bias":
        return f"pass use_bias={expected} when creating {where}"
    return f"set {attr}={_plain(expected)!r} when creating {where}"


# --------------------------------------------------------------------------- model checks


def check_model(model: Any) -> ModelCheck:
    """Start checking a model; anything that is not a ``keras.Model`` fails right away."""
    keras = _keras()
    if not isinstance(model, keras.Model):
        got = _type_name(model)
        fail(f"expected a Keras model, got {got}", measured=got, expected="keras.Model",
             hint=_not_a_model_hint(model))
    return ModelCheck(model)


class ModelCheck:
    """Chainable checks on one Keras model."""

    def __init__(self, model: Any) -> None:
        self.keras_model = model

    # ---- internals
    def _walk(self) -> list[tuple[Any, Any]]:
        """``(layer, owner)`` in order, with nested models used once expanded (see the module doc)."""
        keras = _keras()
        input_layer = _input_layer_type()

        def walk(owner: Any, depth: int) -> list[tuple[Any, Any]]:
            with from_student("listing the model's layers"):
                children = list(getattr(owner, "layers", []) or [])
            found: list[tuple[Any, Any]] = []
            for layer in children:
                if isinstance(layer, input_layer):
                    continue
                if isinstance(layer, keras.Model) and depth < 20 and _call_count(owner, layer) <= 1:
                    found.extend(walk(layer, depth + 1))
                else:
                    found.append((layer, owner))
            return found

        return walk(self.keras_model, 0)

    def _layers(self) -> list[Any]:
        return [layer for layer, _ in self._walk()]

    def flat_layers(self) -> list[Any]:
        """The model's layers as positions count them: no ``InputLayer``, nested models used once
        replaced by their layers, so Sequential, functional and nested forms list alike."""
        return self._layers()

    def _tensors(self, which: str) -> list[Any]:
        try:
            tensors = getattr(self.keras_model, which)
        except Exception:
            tensors = None
        if not tensors:
            tensors = self._subclassed_tensors(which)
        if not tensors:
            fail(f"the model has no defined {which} yet: it was never built",
                 measured="not built", expected=f"a model with defined {which}",
                 hint="start a Sequential model with keras.Input(shape=...), or build a functional "
                      "model keras.Model(inputs, outputs)")
        return list(tensors) if isinstance(tensors, list | tuple) else [tensors]

    def _subclassed_tensors(self, which: str) -> list[Any] | None:
        """A subclassed model has no ``inputs``/``outputs``: symbolic ones from the shape it was built with."""
        keras = _keras()
        shapes = getattr(self.keras_model, "_build_shapes_dict", None)
        if not isinstance(shapes, dict) or len(shapes) != 1:
            return None
        shape = next(iter(shapes.values()))
        try:
            inputs = [keras.KerasTensor((None, *_as_shape(shape)[1:]))]
            if which == "inputs":
                return inputs
            spec = self.keras_model.compute_output_spec(inputs[0])
        except Exception:
            return None
        return list(spec) if isinstance(spec, list | tuple) else [spec]

    def _label(self, index: int, layer: Any) -> str:
        return f"layer {index + 1} '{getattr(layer, 'name', '?')}'"

    # ---- inputs and outputs
    def has_inputs(self, n: int) -> ModelCheck:
        count = len(self._tensors("inputs"))
        if count != n:
            fail(f"the model has {_plural(count, 'input')}; expected {n}", measured=count, expected=n,
                 hint="a model with several inputs is built with the functional API: "
                      "keras.Model(inputs=[input_a, input_b], outputs=...)" if n > 1 else
                      "give the model one keras.Input(...)")
        return self

    def has_outputs(self, n: int) -> ModelCheck:
        count = len(self._tensors("outputs"))
        if count != n:
            fail(f"the model has {_plural(count, 'output')}; expected {n}", measured=count, expected=n,
                 hint="list every output: keras.Model(inputs, outputs=[out_a, out_b])" if n > 1 else
                      "the model should end in one output layer")
        return self

    def has_input_shape(self, *shapes: Any) -> ModelCheck:
        """One expected shape per input, batch axis included: ``has_input_shape((None, 1))``."""
        return self._check_shapes("inputs", shapes)

    def has_output_shape(self, *shapes: Any) -> ModelCheck:
        """One expected shape per output, batch axis included: ``has_output_shape((None, 10))``."""
        return self._check_shapes("outputs", shapes)

    def _check_shapes(self, which: str, shapes: Sequence[Any]) -> ModelCheck:
        if len(shapes) == 1 and isinstance(shapes[0], list) and shapes[0] and all(
                isinstance(s, list | tuple) for s in shapes[0]):
            shapes = tuple(shapes[0])  # has_input_shape([(None, 4), (None, 4)]) means two inputs
        tensors = self._tensors(which)
        actual = [_as_shape(t.shape) for t in tensors]
        expected = [_as_shape(s) for s in shapes]
        word = which[:-1]
        if len(actual) != len(expected):
            fail(f"the model has {_plural(len(actual), word)}; expected {len(expected)}",
                 measured=[_fmt_shape(s) for s in actual], expected=[_fmt_shape(s) for s in expected],
                 hint="build the model with one keras.Input per input and list all outputs in keras.Model(...)")
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            if _shape_matches(a, e):
                continue
            if len(actual) == 1:
                verb = "takes" if which == "inputs" else "outputs"
                message = f"the model {verb} {_fmt_shape(a)}; expected {_fmt_shape(e)}"
            else:
                name = self._tensor_name(which, i, tensors[i])
                message = f"the model's {word} {i + 1} '{name}' has shape {_fmt_shape(a)}; expected {_fmt_shape(e)}"
            fail(message,
                 measured=_fmt_shape(a), expected=_fmt_shape(e),
                 hint=self._shape_hint(which, a, e, self._tensor_name(which, i, tensors[i])))
        return self

    def _tensor_name(self, which: str, index: int, tensor: Any) -> str:
        """Inputs carry their Input name; an output is named after the layer that makes it."""
        if which == "outputs":
            history = getattr(tensor, "_keras_history", None)
            operation = getattr(history, "operation", None)
            if operation is not None:
                return str(getattr(operation, "name", "?"))
        return str(getattr(tensor, "name", "?"))

    def _shape_hint(self, which: str, actual: tuple, expected: tuple, layer_name: str) -> str:
        if which == "inputs":
            per_example = _fmt_shape(expected[1:]) if expected and expected[0] is None else _fmt_shape(expected)
            return (f"declare the input as keras.Input(shape={per_example}); Keras adds the batch "
                    "axis (None) itself")
        if len(actual) == len(expected) and actual[-1] != expected[-1] and expected[-1] is not None:
            return (f"the output layer '{layer_name}' gives {_plural(actual[-1], 'value')} per example; "
                    f"expected {expected[-1]}: set its units to {expected[-1]}")
        if len(actual) != len(expected):
            return "the output has the wrong number of axes: check for a missing Flatten or an extra Reshape"
        return "check the units of the last layer and any Flatten or Reshape before it"

    # ---- parameters and layers
    def has_params(self, total: int | None = None, trainable: int | None = None,
                   non_trainable: int | None = None) -> ModelCheck:
        """Parameter counts as in ``model.summary()``; only the counts given are checked."""
        model = self.keras_model
        try:
            counts = {
                "total": int(model.count_params()),
                "trainable": int(sum(int(np.prod(w.shape)) for w in model.trainable_weights)),
                "non_trainable": int(sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)),
            }
        except Exception:
            fail("the model is not built, so it has no parameters yet", measured="not built",
                 expected="a built model",
                 hint="start a Sequential model with keras.Input(shape=...) so that its weights exist")
        wanted = {"total": total, "trainable": trainable, "non_trainable": non_trainable}
        for key, want in wanted.items():
            if want is None or counts[key] == reveal(want):
                continue
            label = {"total": "parameters", "trainable": "trainable parameters",
                     "non_trainable": "non-trainable parameters"}[key]
            if key == "total":
                hint = ("compare model.summary() with the exercise: the units of each layer, a missing or "
                        "extra layer, or use_bias")
            elif key == "trainable" and counts[key] > reveal(want):
                hint = "freeze the layers the exercise asks for (layer.trainable = False) before compile"
            elif key == "trainable":
                hint = "some layers are frozen (trainable=False) that should train"
            else:
                hint = ("non-trainable parameters come from frozen layers and BatchNormalization's "
                        "moving statistics: check which layers are frozen")
            if isinstance(want, Hidden):
                fail(f"the model has {counts[key]:,} {label}, which is not the count the exercise leads to",
                     measured=dict(counts), expected=want, hint=hint)
            fail(f"the model has {counts[key]:,} {label}; expected {want:,}",
                 measured=dict(counts),
                 expected={k: v for k, v in wanted.items() if v is not None and not isinstance(v, Hidden)},
                 hint=hint)
        return self

    def has_layer_count(self, n: int) -> ModelCheck:
        layers = self._layers()
        if len(layers) != n:
            fail(f"the model has {_plural(len(layers), 'layer')} after the input; expected {n}",
                 measured=len(layers), expected=n,
                 hint=("add the missing layers" if len(layers) < n else "remove the extra layers")
                 + ": compare model.summary() with the exercise")
        return self

    def layers(self, *specs: Any) -> ModelCheck:
        """The exact sequence of layers after the input; reports the first layer that differs."""
        want = [_as_spec(s) for s in specs]
        layers = self._layers()
        if len(layers) != len(want):
            first = next((i for i, (layer, spec) in enumerate(zip(layers, want, strict=False))
                          if spec.first_mismatch(layer) is not None), min(len(layers), len(want)))
            have_list = ", ".join(_layer_summary(layer) for layer in layers) or "nothing"
            want_list = ", ".join(str(s) for s in want)
            action = "add the missing layers" if len(layers) < len(want) else "remove the extra layers"
            fail(f"the model has {_plural(len(layers), 'layer')} after the input; expected {len(want)}: "
                 f"the model has {have_list}; expected {want_list}",
                 measured=[_layer_summary(layer) for layer in layers], expected=[str(s) for s in want],
                 hint=f"{action}; the first difference is at layer {first + 1}")
        for i, (layer, spec) in enumerate(zip(layers, want, strict=True)):
            mismatch = spec.first_mismatch(layer)
            if mismatch is None:
                continue
            attr, actual, expected = mismatch
            label = self._label(i, layer)
            if attr == "type":
                message = f"{label} is a {actual} layer; expected a {expected} layer"
            elif actual is _MISSING:
                message = f"{label} ({type(layer).__name__}) has no setting '{attr}'; expected {_fmt_value(attr, expected)}"
            elif attr == "units":
                message = f"{label} has {_plural(actual, 'unit')}; expected {expected}"
            else:
                message = f"{label} has {attr} {_fmt_value(attr, actual)}; expected {_fmt_value(attr, expected)}"
            shown_actual = "missing" if actual is _MISSING else (
                _activation_name(actual) if attr == "activation" else _plain(actual))
            shown_expected = _activation_name(expected) if attr == "activation" else _plain(expected)
            fail(message, measured=shown_actual, expected=shown_expected,
                 hint=_attr_hint(attr, actual, expected, position=i + 1, is_last=i == len(layers) - 1, layer=layer))
        return self

    def layer(self, index: int | str) -> LayerCheck:
        """Check one layer: a Python index into the layers after the input (negative allowed) or a name."""
        layers = self._layers()
        if isinstance(index, str):
            for i, layer in enumerate(layers):
                if layer.name == index:
                    return LayerCheck(self, i, layer)
            names = ", ".join(f"'{layer.name}'" for layer in layers) or "none"
            fail(f"the model has no layer named '{index}'; its layers are {names}",
                 measured=[layer.name for layer in layers], expected=index,
                 hint=f"name the layer when you create it: e.g. Dense(..., name='{index}')")
        needed = index + 1 if index >= 0 else -index
        if needed > len(layers):
            fail(f"the model has {_plural(len(layers), 'layer')} after the input; expected at least {needed}",
                 measured=len(layers), expected=f"at least {needed}",
                 hint="add the missing layers: compare model.summary() with the exercise")
        position = index if index >= 0 else len(layers) + index
        return LayerCheck(self, position, layers[position])

    # ---- shared layers
    def _call_count(self, layer: Any) -> int:
        """How many times ``layer`` is called inside this model's graph (its own nested graph if nested)."""
        owner = next((o for candidate, o in self._walk() if candidate is layer), self.keras_model)
        return _call_count(owner, layer)

    def shares_layer(self, name_or_type: str | type, uses: int = 2) -> ModelCheck:
        """One layer object is called at ``uses`` or more places in the graph.

        It matches by name, by type name (``"Embedding"``), by class (``keras.Model`` matches a
        nested model of any class: Sequential, functional or subclassed), or as a nested model
        that holds such a layer: a named ``Sequential`` wrapping the shared ``Embedding`` is a
        shared Embedding."""
        wanted = name_or_type.__name__ if isinstance(name_or_type, type) else str(name_or_type)
        walked = self._walk()
        layers = [layer for layer, _ in walked]

        def matches(layer: Any, depth: int = 0) -> bool:
            if isinstance(name_or_type, type) and isinstance(layer, name_or_type):
                return True
            if getattr(layer, "name", None) == wanted or type(layer).__name__.lower() == wanted.lower():
                return True
            inner = getattr(layer, "layers", None) if depth < 20 else None
            return isinstance(inner, list) and any(matches(child, depth + 1) for child in inner)

        candidates = [(layer, owner) for layer, owner in walked if matches(layer)]
        if not candidates:
            fail(f"the model has no layer named or of type '{wanted}'",
                 measured=[layer.name for layer in layers], expected=wanted,
                 hint="create the layer once, e.g. shared = keras.layers.Dense(...), and call it on each input")
        counts = {layer.name: _call_count(owner, layer) for layer, owner in candidates}
        best = max(counts.values())
        if best < uses:
            detail = ", ".join(f"'{name}' is used {_plural(c, 'time')}" for name, c in counts.items())
            fail(f"no '{wanted}' layer is shared: {detail}; expected one layer used at least {uses} times",
                 measured=counts, expected=f"one layer used at least {uses} times",
                 hint="create the layer once (shared = keras.layers.Dense(...)) and call that same object on "
                      "each input: shared(a), shared(b). Writing keras.layers.Dense(...) twice makes two "
                      "separate layers with separate weights")
        return self

    def has_shared_layers(self, n: int = 1) -> ModelCheck:
        """At least ``n`` layer objects are called at two or more places."""
        shared = [layer.name for layer, owner in self._walk() if _call_count(owner, layer) >= 2]
        if len(shared) < n:
            fail(f"the model has {_plural(len(shared), 'shared layer')}; expected at least {n}",
                 measured=shared, expected=f"at least {n}",
                 hint="reuse a layer by calling the same layer object on several inputs; creating a new "
                      "layer for each input does not share weights")
        return self

    # ---- compile settings
    def _compile_settings(self) -> dict[str, Any] | None:
        model = self.keras_model
        try:
            raw = model.get_compile_config() or {}
        except Exception:
            raw = {}
        if not raw and not getattr(model, "compiled", False) and getattr(model, "optimizer", None) is None:
            return None
        if raw:
            metrics = [raw.get("metrics"), raw.get("weighted_metrics")]
            return {"loss": raw.get("loss"), "optimizer": raw.get("optimizer"), "metrics": metrics}
        compile_metrics = getattr(model, "_compile_metrics", None)
        metrics = getattr(compile_metrics, "_user_metrics", None)
        return {"loss": getattr(model, "loss", None), "optimizer": getattr(model, "optimizer", None),
                "metrics": [metrics]}

    def is_compiled_with(self, loss: Any = None, optimizer: Any = None, learning_rate: float | None = None,
                         metrics: Any = None, rtol: float = 1e-6) -> ModelCheck:
        """Loss, optimizer, learning rate and metrics given to ``compile``; names are normalised
        (``"mse"`` is ``MeanSquaredError``, ``"acc"`` is ``"accuracy"``) and only what is given is checked."""
        settings = self._compile_settings()
        if settings is None:
            fail("the model is not compiled", measured="not compiled", expected="compiled",
                 hint="call model.compile(optimizer=..., loss=...) before fit")
        if loss is not None:
            self._check_loss(settings["loss"], loss)
        if optimizer is not None:
            got, want = _optimizer_name(settings["optimizer"]), _optimizer_name(optimizer)
            if got != want:
                fail(f"the model is compiled with optimizer '{got}'; expected '{want}'", measured=got,
                     expected=want,
                     hint=f"pass optimizer=keras.optimizers.{_optimizer_class_hint(optimizer)}(...) to model.compile")
        if learning_rate is not None:
            got_lr, schedule = _optimizer_lr(settings["optimizer"])
            if got_lr is None or not math.isclose(got_lr, float(learning_rate), rel_tol=rtol, abs_tol=0.0):
                what = "initial learning rate of the schedule" if schedule else "learning rate"
                shown = "unknown" if got_lr is None else f"{got_lr:.6g}"
                fail(f"the optimizer's {what} is {shown}; expected {float(learning_rate):.6g}",
                     measured=got_lr, expected=float(learning_rate),
                     hint=f"create the optimizer with the rate: keras.optimizers."
                          f"{_optimizer_class_hint(optimizer or settings['optimizer'])}(learning_rate={float(learning_rate):g}); "
                          "Keras 3 uses learning_rate, not lr")
        if metrics is not None:
            self._check_metrics(settings["metrics"], metrics)
        return self

    def _output_names(self) -> list[str]:
        try:
            names = list(self.keras_model.output_names)
        except Exception:
            names = []
        return [str(n) for n in names]

    def _by_output(self, entries: dict[str, str | None]) -> dict[str, str | None]:
        """Losses keyed by output position: a dict keyed by output name and a list are the same."""
        names = self._output_names()
        if entries and set(entries) <= set(names) and set(entries) != {str(i) for i in range(len(entries))}:
            return {str(names.index(key)): value for key, value in entries.items()}
        return entries

    def _check_loss(self, compiled: Any, expected: Any) -> None:
        got = self._by_output(_loss_entries(compiled))
        want = self._by_output(_loss_entries(expected))
        outputs = max(1, len(self._output_names()))
        if set(got) == {""} and outputs > 1:  # one loss for every output, as Keras allows
            got = {str(i): got[""] for i in range(outputs)}
        if set(want) == {""}:
            want = {key: want[""] for key in got}
        if set(got) != set(want):
            names = self._output_names()
            fail(f"the model is compiled with losses for outputs {sorted(got)}; expected one for each of "
                 f"its {len(want)} outputs", measured=got, expected=want,
                 hint="give one loss per output: a list in the order of the outputs, or a dict keyed by "
                      f"output name ({', '.join(repr(n) for n in names) or 'the output layer names'})")
        for key in sorted(got):
            if got[key] == want[key]:
                continue
            subject = "the model is" if key == "" else f"output {self._output_label(key)} is"
            if got[key] is None:
                fail(f"{subject} compiled without a loss; expected '{want[key]}'", measured="no loss",
                     expected=want[key], hint=f"pass loss='{want[key]}' to model.compile(...)")
            fail(f"{subject} compiled with loss '{got[key]}'; expected '{want[key]}'", measured=got[key],
                 expected=want[key], hint=_loss_hint(got[key], want[key]))

    def _output_label(self, key: str) -> str:
        names = self._output_names()
        return f"{int(key) + 1} '{names[int(key)]}'" if key.isdigit() and int(key) < len(names) else f"'{key}'"

    def _check_metrics(self, compiled: Any, expected: Any) -> None:
        got = [_metric_name(m) for m in _flatten_metrics(compiled)]
        want = [_metric_name(m) for m in _flatten_metrics(expected if isinstance(expected, list | tuple | dict) else [expected])]
        missing = [w for w in want if not any(_metric_matches(g, w) for g in got)]
        if missing:
            listed = ", ".join(f"'{m}'" for m in missing)
            have = f"metrics {got}" if got else "no metrics"
            fail(f"the model is compiled with {have}; expected also {listed}", measured=got, expected=want,
                 hint=f"add metrics={missing!r} to model.compile(...)")


def _call_count(owner: Any, layer: Any) -> int:
    """How many times ``layer`` is called inside ``owner``'s graph (a Sequential's layers once each)."""
    nodes = getattr(owner, "_nodes", None)
    if isinstance(nodes, set | frozenset | list | tuple) and nodes and all(isinstance(k, str) for k in nodes):
        prefix = f"{id(layer)}_ib-"
        count = sum(1 for key in nodes if key.startswith(prefix))
        if count:
            return count
    if type(owner).__name__ == "Sequential" or not hasattr(owner, "_nodes"):
        return 1  # a Sequential or a subclassed model calls each of its layers once, in order
    return len(getattr(layer, "_inbound_nodes", None) or [])


# --------------------------------------------------------------------------- compile normalisation

_LOSS_ALIASES = {
    "mse": "mean_squared_error", "mae": "mean_absolute_error", "mape": "mean_absolute_percentage_error",
    "msle": "mean_squared_logarithmic_error", "kld": "kl_divergence", "kullback_leibler_divergence": "kl_divergence",
    "logcosh": "log_cosh", "huber_loss": "huber", "bce": "binary_crossentropy", "cce": "categorical_crossentropy",
}
_METRIC_ALIASES = {**_LOSS_ALIASES, "acc": "accuracy", "rmse": "root_mean_squared_error"}
_ACCURACY_FAMILY = {"accuracy", "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy"}


def _is_serialized(obj: Any) -> bool:
    return isinstance(obj, dict) and "class_name" in obj


def _object_name(obj: Any) -> str | None:
    """The name of a loss or metric given as a string, class, function, instance or serialized dict."""
    if obj is None:
        return None
    if isinstance(obj, str):
        return obj
    if _is_serialized(obj):
        config = obj.get("config")
        if obj.get("class_name") == "function" and isinstance(config, str):
            return config
        if obj.get("class_name") in ("LossFunctionWrapper", "MeanMetricWrapper") and isinstance(config, dict):
            return str(config.get("fn") or config.get("name"))
        return str(obj["class_name"])
    if isinstance(obj, type):
        return obj.__name__
    fn = getattr(obj, "fn", None)
    if type(obj).__name__ in ("LossFunctionWrapper", "MeanMetricWrapper") and callable(fn):
        return getattr(fn, "__name__", None) or getattr(obj, "name", None)
    if hasattr(obj, "__name__"):  # a plain function
        return obj.__name__
    return type(obj).__name__


def _canonical(name: str | None, aliases: dict[str, str]) -> str | None:
    if name is None:
        return None
    snake = name if name.islower() or name.isupper() else _camel_to_snake(name)
    snake = snake.lower().replace("cross_entropy", "crossentropy")
    return aliases.get(snake, snake)


def _loss_name(obj: Any) -> str | None:
    return _canonical(_object_name(obj), _LOSS_ALIASES)


def _metric_name(obj: Any) -> str | None:
    return _canonical(_object_name(obj), _METRIC_ALIASES)


def _loss_entries(loss: Any) -> dict[str, str | None]:
    """One loss name per output: ``{"": name}`` for a single loss, else keyed by index or output name."""
    if isinstance(loss, list | tuple):
        return {str(i): _loss_name(item) for i, item in enumerate(loss)}
    if isinstance(loss, dict) and not _is_serialized(loss):
        return {str(k): _loss_name(v) for k, v in loss.items()}
    return {"": _loss_name(loss)}


def _flatten_metrics(metrics: Any) -> list[Any]:
    if metrics is None:
        return []
    if isinstance(metrics, list | tuple):
        return [m for item in metrics for m in _flatten_metrics(item)]
    if isinstance(metrics, dict) and not _is_serialized(metrics):
        return [m for item in metrics.values() for m in _flatten_metrics(item)]
    return [metrics]


def _metric_matches(got: str | None, want: str | None) -> bool:
    if got == want:
        return True
    # Keras turns "accuracy" into the variant that fits the loss
    return (want == "accuracy" and got in _ACCURACY_FAMILY) or (got == "accuracy" and want in _ACCURACY_FAMILY)


def _optimizer_name(opt: Any) -> str:
    if opt is None:
        return "none"
    if isinstance(opt, str):
        name = opt
    elif _is_serialized(opt):
        name = str(opt["class_name"])
    elif isinstance(opt, type):
        name = opt.__name__
    else:
        name = type(opt).__name__
    return name.lower().replace("_", "")


def _optimizer_class_hint(opt: Any) -> str:
    """The Keras class name for an optimizer given in any form (``"adam"`` -> ``Adam``)."""
    known = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop", "adamw": "AdamW", "adagrad": "Adagrad",
             "adadelta": "Adadelta", "adamax": "Adamax", "nadam": "Nadam", "ftrl": "Ftrl", "lion": "Lion"}
    name = _optimizer_name(opt)
    return known.get(name, name)


def _optimizer_lr(opt: Any) -> tuple[float | None, bool]:
    """``(learning rate, is_schedule)``; for a schedule, its initial rate."""
    keras = _keras()
    if opt is None:
        return None, False
    if isinstance(opt, str):
        try:
            opt = keras.optimizers.get(opt)
        except Exception:
            return None, False
    if _is_serialized(opt):
        lr = (opt.get("config") or {}).get("learning_rate")
        if _is_serialized(lr):
            initial = (lr.get("config") or {}).get("initial_learning_rate")
            return (None if initial is None else float(initial)), True
        return (None if lr is None else float(lr)), False
    lr = getattr(opt, "_learning_rate", None)
    if lr is None:
        lr = getattr(opt, "learning_rate", None)
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        initial = getattr(lr, "initial_learning_rate", None)
        return (None if initial is None else float(initial)), True
    try:
        return float(keras.ops.convert_to_numpy(lr)), False
    except Exception:
        return None, False


def _loss_hint(got: str | None, want: str | None) -> str:
    pair = (got, want)
    if pair == ("categorical_crossentropy", "sparse_categorical_crossentropy"):
        return "loss is categorical cross-entropy but the labels are integers: one-hot them or use the sparse loss"
    if pair == ("sparse_categorical_crossentropy", "categorical_crossentropy"):
        return ("loss is sparse categorical cross-entropy, which expects integer labels, but the labels "
                "are one-hot: use categorical_crossentropy")
    if got == "binary_crossentropy" and want in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
        return ("binary cross-entropy is for yes/no (or multi-label) outputs; for one class among many "
                f"use {want} with a softmax output")
    if want == "binary_crossentropy" and got in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
        return "for a yes/no (or multi-label) output with sigmoid, use loss='binary_crossentropy'"
    if want in ("mean_squared_error", "mean_absolute_error") and got and "crossentropy" in got:
        return f"this is a regression task: use loss='{want}' (cross-entropy is for classification)"
    return f"pass loss='{want}' to model.compile(...)"


# --------------------------------------------------------------------------- layer checks


class LayerCheck:
    """Chainable checks on one layer; ``.model`` goes back to the model's checks."""

    def __init__(self, model_check: ModelCheck, index: int, layer: Any) -> None:
        self.model = model_check
        self.index = index
        self.keras_layer = layer

    @property
    def label(self) -> str:
        return f"layer {self.index + 1} '{getattr(self.keras_layer, 'name', '?')}'"

    @property
    def _is_last(self) -> bool:
        return self.index == len(self.model._layers()) - 1

    def _config_value(self, attr: str) -> Any:
        config = _safe_config(self.keras_layer)
        value = config[attr] if attr in config else getattr(self.keras_layer, attr, _MISSING)
        if value is _MISSING:
            kind = type(self.keras_layer).__name__
            fail(f"{self.label} is a {kind} layer, which has no '{attr}'", measured=kind,
                 expected=f"a layer with '{attr}'",
                 hint=f"check which layer sits at position {self.index + 1}: compare model.summary() with the exercise")
        return value

    def _fail_attr(self, attr: str, actual: Any, expected: Any, message: str) -> None:
        measured = _activation_name(actual) if attr == "activation" else _plain(actual)
        wanted = _activation_name(expected) if attr == "activation" else _plain(expected)
        fail(message, measured=measured, expected=wanted,
             hint=_attr_hint(attr, actual, expected, position=self.index + 1, is_last=self._is_last,
                             layer=self.keras_layer))

    def is_type(self, type_name: str | type) -> LayerCheck:
        want = type_name.__name__ if isinstance(type_name, type) else str(type_name)
        got = type(self.keras_layer).__name__
        if got.lower() != want.lower():
            self._fail_attr("type", got, want, f"{self.label} is a {got} layer; expected a {want} layer")
        return self

    def has_units(self, n: int) -> LayerCheck:
        got = self._config_value("units")
        if got != n:
            self._fail_attr("units", got, n, f"{self.label} has {_plural(got, 'unit')}; expected {n}")
        return self

    def has_activation(self, activation: Any) -> LayerCheck:
        got = self._config_value("activation")
        if not _same_value("activation", got, activation):
            self._fail_attr("activation", got, activation,
                            f"{self.label} has activation '{_activation_name(got)}'; "
                            f"expected '{_activation_name(activation)}'")
        return self

    def uses_bias(self, flag: bool = True) -> LayerCheck:
        got = self._config_value("use_bias")
        if bool(got) != bool(flag):
            state = "uses a bias" if got else "has no bias"
            self._fail_attr("use_bias", got, flag, f"{self.label} {state}; expected use_bias={bool(flag)}")
        return self

    def _tensor_shape(self, which: str) -> Any:
        layer = self.keras_layer
        try:
            tensor = getattr(layer, which)
        except Exception:
            tensor = None
        if tensor is None and which == "output":
            try:
                return _as_shape(layer.compute_output_shape(_as_shape(layer.input.shape)))
            except Exception:
                tensor = None
        if tensor is None:
            chained = self._chained_shape(which)
            if chained is not None:
                return chained
            fail(f"the {which} shape of {self.label} is unknown: the model is not built",
                 measured="unknown", expected=f"a known {which} shape",
                 hint="start the model with keras.Input(shape=...) so that every layer's shape is known")
        if isinstance(tensor, list | tuple):
            return [_as_shape(t.shape) for t in tensor]
        return _as_shape(tensor.shape)

    def _chained_shape(self, which: str) -> tuple[int | None, ...] | None:
        """A layer of a subclassed or nested model has no tensors of its own: its shape follows from
        the model's input through the layers before it (positions assume a chain anyway)."""
        keras = _keras()
        try:
            (start,) = self.model._tensors("inputs")
            spec = keras.KerasTensor(start.shape)
            for step in self.model.flat_layers()[: self.index + (1 if which == "output" else 0)]:
                spec = step.compute_output_spec(spec)
            return _as_shape(spec.shape)
        except Exception:  # CheckFailure included: an unknown shape is reported by the caller
            return None

    def _check_shape(self, which: str, shape: Any) -> None:
        got = self._tensor_shape(which)
        if isinstance(got, list):
            want = [_as_shape(s) for s in shape]
            ok = len(got) == len(want) and all(_shape_matches(g, w) for g, w in zip(got, want, strict=True))
            shown_got, shown_want = [_fmt_shape(g) for g in got], [_fmt_shape(w) for w in want]
        else:
            want = _as_shape(shape)
            ok = _shape_matches(got, want)
            shown_got, shown_want = _fmt_shape(got), _fmt_shape(want)
        if ok:
            return
        verb = "outputs" if which == "output" else "takes"
        if which == "output":
            hint = ("check this layer's units and the layers before it (a missing Flatten leaves extra axes)"
                    if "units" in _safe_config(self.keras_layer) else
                    "check the settings of this layer and of the layers before it")
        else:
            hint = "the layer before gives a different shape: check its units, or a missing Flatten or Reshape"
        fail(f"{self.label} {verb} {shown_got}; expected {shown_want}", measured=shown_got, expected=shown_want,
             hint=hint)

    def has_output_shape(self, shape: Any) -> LayerCheck:
        self._check_shape("output", shape)
        return self

    def has_input_shape(self, shape: Any) -> LayerCheck:
        self._check_shape("input", shape)
        return self

    def has_params(self, n: int | Hidden) -> LayerCheck:
        try:
            got = int(self.keras_layer.count_params())
        except Exception:
            fail(f"{self.label} is not built, so it has no parameters yet", measured="not built",
                 expected=n, hint="start the model with keras.Input(shape=...) so that the weights exist")
        if got != reveal(n):
            wanted = (", which is not the count the exercise leads to" if isinstance(n, Hidden)
                      else f"; expected {n:,}")
            fail(f"{self.label} has {got:,} parameters{wanted}", measured=got, expected=n,
                 hint="the count is (inputs + 1) x units for a Dense layer with bias: check the units, use_bias "
                      "and the size of what comes in")
        return self

    def has_kernel_shape(self, shape: Any) -> LayerCheck:
        layer = self.keras_layer
        kernel = None
        for owner in (layer, getattr(layer, "cell", None)):
            try:
                kernel = getattr(owner, "kernel", None) if owner is not None else None
            except Exception:
                kernel = None
            if kernel is not None:
                break
        if kernel is None:
            fail(f"{self.label} ({type(layer).__name__}) has no kernel", measured="no kernel",
                 expected=_fmt_shape(_as_shape(shape)),
                 hint="only weight layers such as Dense or Conv2D have a kernel; check the layer type and that the model is built")
        got, want = _as_shape(kernel.shape), _as_shape(shape)
        if not _shape_matches(got, want):
            fail(f"{self.label} has a kernel of shape {_fmt_shape(got)}; expected {_fmt_shape(want)}",
                 measured=_fmt_shape(got), expected=_fmt_shape(want),
                 hint="a Dense kernel is (inputs, units): check the units and the shape of what comes in "
                      "(a missing Flatten?)")
        return self

    def layer(self, index: int | str) -> LayerCheck:
        """Shortcut for ``.model.layer(index)``."""
        return self.model.layer(index)

    def output_on(self, x: Any) -> np.ndarray:
        """What this layer outputs when the model is run on ``x``, whatever form the model takes.

        A layer of the model's own graph is read through a sub-model from the model's inputs;
        a layer inside a nested or subclassed model, through the layers up to it applied in
        order (positions only make sense for a chain of layers anyway)."""
        keras = _keras()
        model, layer = self.model.keras_model, self.keras_layer
        with from_student(f"running the model up to {self.label}"):
            try:
                sub = keras.Model(inputs=model.inputs, outputs=layer.output)
            except Exception:
                sub = None
            if sub is not None:
                return np.asarray(sub.predict(x, verbose=0), dtype=np.float64)
            out = x
            for step in self.model.flat_layers()[: self.index + 1]:
                out = step(out)
            return np.asarray(keras.ops.convert_to_numpy(out), dtype=np.float64)

