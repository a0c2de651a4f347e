"""GPU smoke check: Keras 3 on JAX or PyTorch (no TensorFlow), CPU against GPU, and one
assignment's model trained on the GPU and graded against the assignment's own thresholds.

Run it on a new GPU node (or a GPU student/worker pod) before the course relies on it:

    KERAS_BACKEND=jax python bench/gpu_smoke.py                  # default backend: jax
    KERAS_BACKEND=torch python bench/gpu_smoke.py --data /srv/datasets
    python bench/gpu_smoke.py --smoke                            # CPU only, a few seconds (tests)

It needs only keras, numpy and jax or torch: the GPU machines have no TensorFlow, and the
checks come from ``autograders.checks`` (numpy only). What it does:

1. lists the devices the backend sees;
2. times one epoch of a small CNN on the CPU and on the GPU, each in a fresh process (so
   neither run inherits the other's compiled code), on the same seeded data, and prints the
   ratio;
3. builds and trains the reference model of keras-intro/01-introducing-keras (the meteor
   orbit regression) on the public split, on the GPU, then runs the same checks as the
   assignment's tests (``tests/test_introducing_keras.py``) with the calibrated thresholds from
   its ``assignment.yaml``, the hidden split included.

``--data DIR`` points at a dataset mirror (``DIR/datacamp-keras-intro/orbit.csv``) or at a
folder holding ``orbit.csv``; without it the mirror of ``datasets`` is used. When no copy
with the registered sha256 is found, a synthetic orbit with the same schema (y = t² on 2000
evenly spaced points in [-10, 10]) stands in, and the report says so.

Exit status: 0 all checks passed (on a GPU unless ``--smoke``), 1 a check failed, 2 Keras or
the backend is missing, 3 no GPU was visible (everything else ran on the CPU).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_SPLIT_KEY = "gpu-smoke held-out rows"  # public: a benchmark's held-out rows, not a course's secret

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ASSIGNMENT = "keras-intro/01-introducing-keras"
DATASET = "keras-intro/orbit"
SEED = 1  # the seed the grader uses
BACKENDS = ("jax", "torch")
# The assignment tests this script reproduces, by name: tests/test_gpu_smoke.py checks that they
# still exist in the assignment, so a renamed or removed test shows up there and not as a silent gap.
MIRRORED_TESTS = ("test_meteor_architecture", "test_meteor_compile", "test_meteor_generalizes",
                  "test_meteor_training_converged", "test_meteor_retrains", "test_twenty_minute_orbit")
EXIT_PASSED, EXIT_FAILED, EXIT_NO_KERAS, EXIT_NO_GPU = 0, 1, 2, 3


# -- configuration files without PyYAML ---------------------------------------------------------
def load_yaml(path: Path) -> dict[str, Any]:
    """PyYAML when it is installed; otherwise :func:`mini_yaml`, since GPU machines may lack it."""
    text = path.read_text()
    try:
        import yaml
    except ImportError:
        return mini_yaml(text)
    return yaml.safe_load(text) or {}


def _scalar(text: str) -> Any:
    text = text.strip()
    if not text:
        return None
    if text[0] in "\"'":
        quote = text[0]
        end = text.rfind(quote)
        inner = text[1:end] if end > 0 else text[1:]
        if quote == "'":
            return inner.replace("''", "'")
        return inner.encode().decode("unicode_escape") if "\\" in inner else inner
    text = re.sub(r"\s+#.*$", "", text)
    if text in ("null", "~", "Null", "NULL"):
        return None
    if text in ("true", "True"):
        return True
    if text in ("false", "False"):
        return False
    if text.startswith("{") and text.endswith("}"):
        out = {}
        for part in filter(None, (p.strip() for p in text[1:-1].split(","))):
            key, _, value = part.partition(":")
            out[_scalar(key)] = _scalar(value)
        return out
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def mini_yaml(text: str) -> dict[str, Any]:
    """Nested block mappings with scalar or flow-mapping values: the part of ``assignment.yaml`` and
    ``datasets/registry.yaml`` this script reads. Lists, and everything inside them, are skipped."""
    root: dict[str, Any] = {}
    stack: list[tuple[int, dict[str, Any]]] = [(-1, root)]
    skip_deeper_than: int | None = None
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        if skip_deeper_than is not None:
            if indent > skip_deeper_than:
                continue
            skip_deeper_than = None
        line = raw.strip()
        if line.startswith("- ") or line == "-":
            skip_deeper_than = indent  # a list item, and whatever continues it
            continue
        match = re.match(r"""^("[^"]*"|'[^']*'|[^:#]+?)\s*:(?:\s+(.*))?$""", line)
        if not match:
            continue
        key, value = _scalar(match.group(1)), match.group(2)
        while stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        if value is None or value.startswith("#"):
            child: dict[str, Any] = {}
            parent[key] = child
            stack.append((indent, child))
        elif value.startswith(("|", ">")):
            parent[key] = None
            skip_deeper_than = indent  # a block scalar: not needed here
        else:
            parent[key] = _scalar(value)
    return root


def assignment_thresholds(assignment_dir: Path) -> dict[str, tuple[float, str]]:
    """``{key: (value, direction)}`` of the calibrated thresholds in ``assignment.yaml``."""
    config = load_yaml(assignment_dir / "assignment.yaml")
    out = {}
    for key, spec in (config.get("thresholds") or {}).items():
        if "value" not in spec:
            raise KeyError(f"threshold {key!r} of {ASSIGNMENT} is not calibrated")
        out[key] = (float(spec["value"]), spec.get("direction", "below"))
    return out


def dataset_entry(name: str = DATASET) -> dict[str, Any]:
    """The registry entry (file, sha256, split) of one dataset."""
    registry = load_yaml(REPO / "datasets" / "registry.yaml")
    return registry[name]


# -- data ---------------------------------------------------------------------------------------
@dataclass
class Orbit:
    """The orbit measurements split the way the grader splits them."""

    x_public: Any
    y_public: Any
    x_hidden: Any
    y_hidden: Any
    source: str
    synthetic: bool


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_orbit(data: Path | None, entry: dict[str, Any]) -> tuple[Path | None, list[str]]:
    """The first copy with the registered hash, and notes on the copies that were passed over."""
    rel = Path(entry["file"])
    places: list[Path] = []
    if data is not None:
        places += [data / rel, data / rel.name] if data.is_dir() else [data]
    else:
        from datasets.registry import CACHE_ENV, mirror_dir

        mirror = mirror_dir()
        if mirror is not None:
            places.append(mirror / rel)
        if os.environ.get(CACHE_ENV):
            places.append(Path(os.environ[CACHE_ENV]) / rel)
    notes = []
    for path in places:
        if not path.is_file():
            notes.append(f"{path}: not there")
            continue
        actual = _sha256(path)
        if actual == entry["sha256"]:
            return path, notes
        notes.append(f"{path}: sha256 {actual[:12]}… is not the registered {entry['sha256'][:12]}…")
    return None, notes


def load_orbit(data: Path | None) -> Orbit:
    """Public and hidden rows of the real orbit data, or of a synthetic stand-in of the same shape."""
    import numpy as np

    from datasets.registry import Split
    from datasets.split_secret import SecretUnavailable, group_key
    from datasets.splits import hidden_mask

    entry = dataset_entry()
    path, notes = find_orbit(data, entry)
    if path is not None:
        with path.open() as handle:
            header = handle.readline().strip().split(",")
        if header != ["time_steps", "y"]:
            raise ValueError(f"{path}: columns {header}, expected time_steps,y")
        table = np.loadtxt(path, delimiter=",", skiprows=1, dtype="float64")
        t, y = table[:, 0], table[:, 1]
        source, synthetic = f"{path} (sha256 checked)", False
    else:
        t = np.linspace(-10.0, 10.0, 2000)
        y = t**2
        looked = "; ".join(notes) or "no --data and no dataset mirror"
        source = (f"SYNTHETIC stand-in (y = t² on 2000 points in [-10, 10], the schema of orbit.csv): "
                  f"no verified copy of {entry['file']} ({looked})")
        synthetic = True
    split = Split(float(entry["split"]["hidden_fraction"]), str(entry["split"]["group"]))
    try:  # the deployment's rows where this machine has its key; a GPU box usually has none
        key = group_key(split.group)
    except SecretUnavailable:
        key = BENCH_SPLIT_KEY
    hidden = np.asarray(hidden_mask(len(t), split, key))

    def column(values: Any) -> Any:
        return values.reshape(-1, 1).astype("float32")

    return Orbit(column(t[~hidden]), y[~hidden].astype("float32"), column(t[hidden]),
                 y[hidden].astype("float32"), source, synthetic)


# -- backend and devices --------------------------------------------------------------------------
def prepare_environment(backend: str, cpu_only: bool) -> None:
    """Choose the Keras backend (and hide the GPU for CPU runs) before Keras is imported."""
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # leave GPU memory to others
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if cpu_only:
        os.environ["JAX_PLATFORMS"] = "cpu"
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


def backend_versions(backend: str) -> str:
    import keras

    if backend == "jax":
        import jax

        return f"Keras {keras.__version__} on jax {jax.__version__}"
    import torch

    return f"Keras {keras.__version__} on torch {torch.__version__}"


def devices(backend: str) -> list[dict[str, str]]:
    """Every device the backend can use: platform, id and name."""
    found = []
    if backend == "jax":
        import jax

        for platform in ("gpu", "cpu"):
            try:
                listed = jax.devices(platform)
            except RuntimeError:  # no such platform in this jaxlib
                continue
            found += [{"platform": platform, "id": str(d.id), "name": getattr(d, "device_kind", str(d))}
                      for d in listed]
    else:
        import torch

        if torch.cuda.is_available():
            found += [{"platform": "gpu", "id": str(i), "name": torch.cuda.get_device_name(i)}
                      for i in range(torch.cuda.device_count())]
        found.append({"platform": "cpu", "id": "0", "name": f"{os.cpu_count()} core(s)"})
    return found


def compute_platform(backend: str) -> str:
    """Where Keras puts new tensors by default: 'gpu' or 'cpu'."""
    if backend == "jax":
        import jax

        return "gpu" if jax.default_backend() in ("gpu", "cuda", "rocm") else "cpu"
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


# -- 1. a small CNN, CPU against GPU --------------------------------------------------------------
@dataclass
class CnnSize:
    samples: int
    side: int
    channels: int
    batch: int
    filters: tuple[int, ...] = (32, 64, 128)  # one 3x3 convolution block per entry

    def describe(self) -> str:
        return (f"{self.samples} images of {self.side}x{self.side}x{self.channels}, batch {self.batch}, "
                f"conv {'-'.join(map(str, self.filters))}")


FULL_CNN = CnnSize(samples=8192, side=32, channels=3, batch=128)
# smoke: one small block, since on a CPU most of the time goes into compiling the training step
SMOKE_CNN = CnnSize(samples=256, side=16, channels=1, batch=64, filters=(8,))


def time_cnn_here(size: CnnSize) -> dict[str, Any]:
    """Two epochs of a small CNN in this process: the first compiles, the second is the timing."""
    import keras
    import numpy as np
    from keras import layers

    rng = np.random.default_rng(0)  # the same data in every process
    x = rng.random((size.samples, size.side, size.side, size.channels), dtype=np.float32)
    y = rng.integers(0, 10, size.samples)
    keras.utils.set_random_seed(0)
    blocks: list[Any] = []
    for index, filters in enumerate(size.filters):
        if index:
            blocks.append(layers.MaxPooling2D())
        blocks.append(layers.Conv2D(filters, 3, padding="same", activation="relu"))
    model = keras.Sequential([keras.Input((size.side, size.side, size.channels)), *blocks,
                              layers.GlobalAveragePooling2D(), layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    times: list[float] = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            times.append(time.perf_counter() - self.start)

    model.fit(x, y, epochs=2, batch_size=size.batch, verbose=0, callbacks=[EpochTimer()])
    return {"first_epoch_s": times[0], "epoch_s": times[1]}


def time_cnn(backend: str, device: str, size: CnnSize) -> dict[str, Any]:
    """Run :func:`time_cnn_here` in a fresh process that sees only ``device`` ('cpu' or 'gpu')."""
    env = dict(os.environ, KERAS_BACKEND=backend)
    if device == "cpu":
        env.update(JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
    else:
        env.pop("JAX_PLATFORMS", None)
    command = [sys.executable, str(Path(__file__).resolve()), "--backend", backend, "--cnn-child", device,
               "--cnn-size", json.dumps(asdict(size))]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"the {device} CNN run failed (exit {done.returncode}): " + " | ".join(tail))
    return json.loads(lines[-1])


# -- 2. the assignment's model, graded -----------------------------------------------------------
@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class Grading:
    checks: list[Check] = field(default_factory=list)
    train_s: float = 0.0
    platform: str = "cpu"

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)


def build_reference_model() -> Any:
    """The model the reference solution of keras-intro/01 builds and compiles (its meteor-model cell)."""
    import keras
    from keras import layers

    model = keras.Sequential([
        keras.Input(shape=(1,)),
        layers.Dense(50, activation="relu"),
        layers.Dense(50, activation="relu"),
        layers.Dense(50, activation="relu"),
        layers.Dense(1),
    ])
    model.compile(optimizer="adam", loss="mse")
    return model


def grade_reference(orbit: Orbit, thresholds: dict[str, tuple[float, str]], backend: str) -> Grading:
    """Train as the reference does (30 epochs on the public split), then run the assignment's checks."""
    import keras
    import numpy as np

    from autograders.checks import (
        Threshold,
        check_array,
        check_history,
        check_metric,
        check_model,
        check_retraining,
        dense,
    )
    from autograders.results import CheckFailure

    limit = {key: Threshold(value, key, direction) for key, (value, direction) in thresholds.items()}
    keras.utils.set_random_seed(SEED)
    model = build_reference_model()
    start = time.perf_counter()
    history = model.fit(orbit.x_public, orbit.y_public, epochs=30, verbose=0)
    grading = Grading(train_s=time.perf_counter() - start, platform=compute_platform(backend))
    minutes = np.arange(-10, 11, dtype="float32")
    twenty = np.asarray(model.predict(minutes.reshape(-1, 1), verbose=0))

    def architecture() -> str:
        check_model(model).has_input_shape((None, 1)).has_output_shape((None, 1)).layers(
            dense(50, "relu"), dense(50, "relu"), dense(50, "relu"), dense(1, "linear"))
        return "Dense 50-50-50-1, relu, linear output"

    def compiled() -> str:
        check_model(model).is_compiled_with(optimizer="adam", loss="mse")
        return "adam, mse"

    def hidden_mse() -> str:
        check = check_metric(model, (orbit.x_hidden, orbit.y_hidden), "mse").below(limit["meteor_hidden_mse"])
        return f"hidden-split MSE {check.value:.4g} <= {limit['meteor_hidden_mse']:.4g}"

    def converged() -> str:
        check_history(history, "loss").has_epochs(30).is_finite().decreases().final_below(
            limit["meteor_final_loss"])
        return f"final loss {history.history['loss'][-1]:.4g} <= {limit['meteor_final_loss']:.4g}, decreasing"

    def retrains() -> str:
        check_retraining(model, (orbit.x_public, orbit.y_public), epochs=8, seed=SEED).is_finite().decreases()
        return "a seeded 8-epoch re-training decreases"

    def twenty_minutes() -> str:
        predicted = check_array(twenty, "twenty_min_orbit").has_shape((21, None)).array
        check = check_metric(predicted.reshape(-1), (minutes, minutes**2), "mse").below(limit["twenty_min_mse"])
        return f"20-minute MSE {check.value:.4g} <= {limit['twenty_min_mse']:.4g}"

    steps = {
        "test_meteor_architecture": architecture,
        "test_meteor_compile": compiled,
        "test_meteor_generalizes": hidden_mse,
        "test_meteor_training_converged": converged,
        "test_meteor_retrains": retrains,
        "test_twenty_minute_orbit": twenty_minutes,
    }
    assert tuple(steps) == MIRRORED_TESTS
    for name, step in steps.items():
        try:
            grading.checks.append(Check(name, True, step()))
        except CheckFailure as failure:
            grading.checks.append(Check(name, False, str(failure)))
    return grading


# -- the report -----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=BACKENDS, default=os.environ.get("KERAS_BACKEND") or "jax",
                        help="Keras backend (default: $KERAS_BACKEND, else jax)")
    parser.add_argument("--data", type=Path, help="dataset mirror, or a folder with orbit.csv")
    parser.add_argument("--smoke", action="store_true", help="CPU only and a tiny CNN: a few seconds")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--cnn-child", choices=("cpu", "gpu"), help=argparse.SUPPRESS)
    parser.add_argument("--cnn-size", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.backend not in BACKENDS:  # KERAS_BACKEND=tensorflow, say
        parser.error(f"backend {args.backend!r}: this check runs Keras on {' or '.join(BACKENDS)}")

    if args.cnn_child:  # a timing process started by time_cnn
        prepare_environment(args.backend, cpu_only=args.cnn_child == "cpu")
        spec = json.loads(args.cnn_size)
        result = time_cnn_here(CnnSize(**{**spec, "filters": tuple(spec["filters"])}))
        result["platform"] = compute_platform(args.backend)
        print(json.dumps(result))
        return 0

    prepare_environment(args.backend, cpu_only=args.smoke)
    try:
        header = backend_versions(args.backend)
    except ImportError as exc:
        print(f"cannot run: {exc}. Install keras and {args.backend} (no TensorFlow needed).", file=sys.stderr)
        return EXIT_NO_KERAS
    print(f"deepgrade GPU smoke check: {header}{' (smoke: CPU only)' if args.smoke else ''}")
    found = devices(args.backend)
    print("devices: " + ", ".join(f"{d['platform']}:{d['id']} {d['name']}" for d in found))
    gpu = any(d["platform"] == "gpu" for d in found)
    if not gpu and not args.smoke:
        print(f"WARNING: {args.backend} sees no GPU (a CPU-only jaxlib/torch wheel, no driver, or no "
              "nvidia.com/gpu in the pod's limits); everything below runs on the CPU")
    results: dict[str, Any] = {"backend": args.backend, "versions": header, "devices": found, "smoke": args.smoke}

    size = SMOKE_CNN if args.smoke else FULL_CNN
    print(f"\n1. small CNN, one epoch of {size.describe()} (same seeded data on each device)")
    # smoke: this process already sees only the CPU, and a second process would double the start-up
    timings = {"cpu": {**time_cnn_here(size), "platform": compute_platform(args.backend)} if args.smoke
               else time_cnn(args.backend, "cpu", size)}
    if gpu and not args.smoke:
        timings["gpu"] = time_cnn(args.backend, "gpu", size)
    print(f"   {'device':<8}{'ran on':<8}{'first epoch (compiles)':>24}{'steady epoch':>14}")
    for device, timing in timings.items():
        print(f"   {device:<8}{timing['platform']:<8}{timing['first_epoch_s']:>22.2f} s{timing['epoch_s']:>12.3f} s")
    if "gpu" in timings:
        ratio = timings["cpu"]["epoch_s"] / max(timings["gpu"]["epoch_s"], 1e-9)
        timings["cpu_over_gpu"] = ratio
        print(f"   the GPU epoch is {ratio:.1f}x faster than the CPU epoch")
    else:
        print("   no GPU run" + (" (smoke mode)" if args.smoke else " (no GPU visible)"))
    results["cnn"] = {"size": asdict(size), **timings}

    orbit = load_orbit(args.data)
    thresholds = assignment_thresholds(REPO / "assignments" / ASSIGNMENT)
    print(f"\n2. {ASSIGNMENT}: the reference model, trained and graded")
    print(f"   data: {orbit.source}")
    print(f"   {len(orbit.y_public)} public rows to train on, {len(orbit.y_hidden)} hidden rows to grade")
    grading = grade_reference(orbit, thresholds, args.backend)
    print(f"   trained 30 epochs on {grading.platform} in {grading.train_s:.2f} s")
    for check in grading.checks:
        print(f"   {'PASS' if check.passed else 'FAIL'}  {check.name}: {check.detail}")
    verdict = "passes" if grading.passed else "FAILS"
    print(f"   the reference {verdict} the assignment's thresholds"
          + (" (on synthetic data)" if orbit.synthetic else ""))
    results["assignment"] = {"id": ASSIGNMENT, "data": orbit.source, "synthetic": orbit.synthetic,
                             "platform": grading.platform, "train_s": grading.train_s,
                             "passed": grading.passed, "checks": [asdict(c) for c in grading.checks]}

    tensorflow = "tensorflow" in sys.modules
    print(f"\nTensorFlow imported: {'YES (unexpected)' if tensorflow else 'no'}")
    results["tensorflow_imported"] = tensorflow
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if not grading.passed:
        return EXIT_FAILED
    if not gpu and not args.smoke:
        return EXIT_NO_GPU
    return EXIT_PASSED


if __name__ == "__main__":
    sys.exit(main())
