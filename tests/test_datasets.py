"""Tests for the dataset registry, loaders and public/hidden splits.

Every test points the mirror, cache and public folder at explicit places (tmp dirs or the
read-only course mirror) so nothing depends on, or writes to, the user's own cache. Data files
are copied only into tmp dirs, never into the repository.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import datasets
from datasets import (
    DatasetError,
    DatasetUnavailable,
    Entry,
    HashMismatch,
    RegistryError,
    Split,
    UnknownDataset,
    fetch,
    get_registry,
    hidden_mask,
    hidden_split,
    load,
    materialize,
    public_path,
    public_split,
)
from datasets.__main__ import main as cli_main
from datasets.registry import REPO_ROOT

REAL_MIRROR = REPO_ROOT.parent / "shared" / "datasets"
needs_mirror = pytest.mark.skipif(
    not (REAL_MIRROR / "MANIFEST.csv").is_file(), reason="course mirror ../shared/datasets absent"
)
ORBIT = "keras-intro/orbit"
IRRIGATION = "keras-intro/irrigation_machine"
UNSPLIT = "zero-to-dl/sms"  # a table with read options and no split: copied whole
CANSIM = "zero-to-dl/cansim-0800020-eng-6674700030567901031"


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Real mirror (read-only), but a fresh cache and public folder for every test."""
    dirs = {"cache": tmp_path / "cache", "public": tmp_path / "public"}
    monkeypatch.setenv("DEEPGRADE_DATA_MIRROR", str(REAL_MIRROR) if REAL_MIRROR.is_dir() else "")
    monkeypatch.setenv("DEEPGRADE_CACHE", str(dirs["cache"]))
    monkeypatch.setenv("DEEPGRADE_PUBLIC_DATA", str(dirs["public"]))
    return dirs


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _copy_entry(name: str, root: Path, corrupt: bool = False) -> Path:
    """Put a copy of a registered file under a tmp root, optionally with one byte changed."""
    entry = get_registry()[name]
    data = bytearray((REAL_MIRROR / entry.file).read_bytes())
    if corrupt:
        data[len(data) // 2] ^= 0x01
    dest = root / entry.file
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(bytes(data))
    return dest


# --- package and registry ----------------------------------------------------------------------


def test_import_is_ours_and_light() -> None:
    assert Path(datasets.__file__).resolve().parent == REPO_ROOT / "datasets"
    code = (
        "import sys, datasets; "
        "print(sorted(m for m in ('pandas', 'numpy', 'pooch', 'tensorflow') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_registry_names_and_fields() -> None:
    reg = get_registry()
    for name in (
        ORBIT,
        "dl-python/hourly_wages",
        "keras-advanced/games_tourney",
        "zero-to-dl/banknotes",
        "keras/imdb_word_index",
        "aclimdb/aclImdb_v1_labeled",
    ):
        assert name in reg
    assert reg[ORBIT].split == Split(0.2, "orbit")
    assert all(0 < e.split.hidden_fraction < 1 and e.split.group for e in reg.values() if e.split)
    assert reg[IRRIGATION].read == {"index_col": 0}
    assert reg[CANSIM].read == {"skiprows": 6, "skipfooter": 9, "engine": "python"}
    assert reg["keras-intro/orbit"].file == "datacamp-keras-intro/orbit.csv"


@needs_mirror
def test_registry_matches_manifest() -> None:
    """Every manifest file has exactly one entry with the same hash (generated data aside)."""
    with open(REAL_MIRROR / "MANIFEST.csv", newline="", encoding="utf-8") as fh:
        manifest = {row["relpath"]: row for row in csv.DictReader(fh)}
    entries = {e.file: e for e in get_registry().values() if not e.generator}
    assert set(entries) == set(manifest)
    for file, row in manifest.items():
        assert entries[file].sha256 == row["sha256"], file


def test_unknown_name_suggests() -> None:
    with pytest.raises(UnknownDataset, match=r"keras-intro/orbit"):
        fetch("keras-intro/orbitt")


def test_entry_validation() -> None:
    good = "0" * 64
    with pytest.raises(RegistryError, match="sha256"):
        Entry("x/y", "x/y.csv", "abc")
    with pytest.raises(RegistryError, match="relative path"):
        Entry("x/y", "../y.csv", good)
    with pytest.raises(RegistryError, match="only use read options"):
        Entry("x/y", "x/y.csv", good, read={"skiprows": 2}, split=Split(0.2, "s"))
    with pytest.raises(RegistryError, match="only supported"):
        Entry("x/y", "x/y.png", good, split=Split(0.2, "s"))
    with pytest.raises(RegistryError, match="unknown fields"):
        Entry.from_dict("x/y", {"file": "x/y.csv", "sha256": good, "hash": good})


# --- fetch -------------------------------------------------------------------------------------


@needs_mirror
def test_fetch_from_mirror_checks_hash() -> None:
    path = fetch(ORBIT)
    assert path == REAL_MIRROR / "datacamp-keras-intro" / "orbit.csv"
    assert datasets.sha256_file(path) == get_registry()[ORBIT].sha256


@needs_mirror
def test_corrupted_mirror_copy_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "mirror"
    bad = _copy_entry(ORBIT, mirror, corrupt=True)
    monkeypatch.setenv("DEEPGRADE_DATA_MIRROR", str(mirror))
    with pytest.raises(HashMismatch) as info:
        fetch(ORBIT)
    msg = str(info.value)
    assert str(bad) in msg
    assert get_registry()[ORBIT].sha256 in msg
    assert _sha(bad.read_bytes()) in msg
    assert info.value.actual == _sha(bad.read_bytes())


@needs_mirror
def test_mirror_before_cache_then_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_dirs: dict[str, Path]
) -> None:
    mirror = tmp_path / "mirror"
    in_mirror = _copy_entry(ORBIT, mirror)
    in_cache = _copy_entry(ORBIT, isolated_dirs["cache"])
    monkeypatch.setenv("DEEPGRADE_DATA_MIRROR", str(mirror))
    assert fetch(ORBIT) == in_mirror
    in_mirror.unlink()
    assert fetch(ORBIT) == in_cache
    monkeypatch.setenv("DEEPGRADE_DATA_MIRROR", "")  # empty disables the mirror
    assert fetch(ORBIT) == in_cache


@needs_mirror
def test_corrupted_cache_copy_raises(
    monkeypatch: pytest.MonkeyPatch, isolated_dirs: dict[str, Path]
) -> None:
    monkeypatch.setenv("DEEPGRADE_DATA_MIRROR", "")
    bad = _copy_entry(ORBIT, isolated_dirs["cache"], corrupt=True)
    with pytest.raises(HashMismatch, match="expected"):
        fetch(ORBIT)
    assert bad.exists()  # reported, not silently deleted


def test_missing_without_url(tmp_path: Path, isolated_dirs: dict[str, Path]) -> None:
    entry = Entry("test/nowhere", "test/nowhere.csv", "0" * 64)
    with pytest.raises(DatasetUnavailable) as info:
        fetch(entry)
    msg = str(info.value)
    assert "no download URL" in msg
    assert str(isolated_dirs["cache"] / "test" / "nowhere.csv") in msg
    assert str(REAL_MIRROR / "test" / "nowhere.csv") in msg or not REAL_MIRROR.is_dir()


class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]


@pytest.fixture
def http_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str, list]]:
    """A real HTTP server on 127.0.0.1 serving a tmp folder; yields (folder, base URL, log)."""
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}", server.requests  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_download_with_pooch(
    http_root: tuple[Path, str, list], isolated_dirs: dict[str, Path]
) -> None:
    root, base, log = http_root
    data = b"x,y\n1,2\n3,4\n"
    (root / "small.csv").write_bytes(data)
    entry = Entry("test/small", "test/small.csv", _sha(data), url=f"{base}/small.csv")

    path = fetch(entry)
    assert path == isolated_dirs["cache"] / "test" / "small.csv"
    assert path.read_bytes() == data
    assert fetch(entry) == path  # now served from the cache
    assert len(log) == 1
    assert load(entry).to_dict("list") == {"x": [1, 3], "y": [2, 4]}


def test_download_with_wrong_hash(
    http_root: tuple[Path, str, list], isolated_dirs: dict[str, Path]
) -> None:
    root, base, _ = http_root
    (root / "small.csv").write_bytes(b"x\n1\n")
    entry = Entry("test/small", "test/small.csv", _sha(b"something else"), url=f"{base}/small.csv")
    with pytest.raises(HashMismatch, match=entry.sha256):
        fetch(entry)
    assert not (isolated_dirs["cache"] / "test" / "small.csv").exists()


def test_download_http_error(http_root: tuple[Path, str, list]) -> None:
    _, base, _ = http_root
    entry = Entry("test/gone", "test/gone.csv", "0" * 64, url=f"{base}/gone.csv")
    with pytest.raises(DatasetUnavailable, match="404"):
        fetch(entry)


# --- load --------------------------------------------------------------------------------------


@needs_mirror
def test_read_options_applied() -> None:
    irrigation = load(IRRIGATION)
    assert irrigation.shape == (2000, 23)  # index_col=0: no "Unnamed: 0" column
    assert not any(str(c).startswith("Unnamed") for c in irrigation.columns)
    cansim = load(CANSIM)
    assert cansim.shape == (313, 3)  # skipfooter=9 drops the footnotes
    assert cansim.iloc[-1, 0] == "Jan-2017"
    assert load("zero-to-dl/sms").columns.tolist() == ["label", "msg"]


@needs_mirror
def test_load_by_extension() -> None:
    digits = load("keras-intro/digits_pixels")
    assert isinstance(digits, np.ndarray) and digits.shape == (1797, 64)
    assert isinstance(load("keras-intro/rotr"), str)
    assert len(json.loads(load("keras/imdb_word_index"))) == 88584
    with pytest.raises(DatasetError, match="fetch"):
        load("keras-intro/dog")


# --- splits ------------------------------------------------------------------------------------


def test_hidden_mask_rule_is_pinned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The documented formula, row by row, keyed by the group's secret (the test deployment's key
    for ``orbit`` is ``orbit-v1``), and a few pinned rows so it cannot drift."""
    split = Split(0.2, "orbit")
    mask = hidden_mask(2000, split)
    expected = [
        int(hashlib.sha256(f"orbit-v1:{i}".encode()).hexdigest()[:8], 16) / 2**32 < 0.2
        for i in range(2000)
    ]
    assert mask.tolist() == expected
    assert np.flatnonzero(mask)[:10].tolist() == [5, 10, 13, 20, 21, 31, 34, 36, 40, 44]
    # another deployment's key hides other rows: the registry alone does not say which
    monkeypatch.setenv("DEEPGRADE_SPLIT_SECRET", str(tmp_path / "other.yaml"))
    datasets.ensure_secret(["orbit"])
    assert hidden_mask(2000, split).tolist() != expected


@needs_mirror
def test_orbit_split_partition() -> None:
    full = load(ORBIT)
    pub1, hid1 = public_split(ORBIT), hidden_split(ORBIT)
    pub2, hid2 = public_split(ORBIT), hidden_split(ORBIT)
    pd.testing.assert_frame_equal(pub1, pub2)
    pd.testing.assert_frame_equal(hid1, hid2)
    assert abs(len(hid1) / len(full) - 0.2) < 0.03
    assert list(pub1.index) == list(range(len(pub1)))  # index reset
    pub_t, hid_t = set(pub1["time_steps"]), set(hid1["time_steps"])
    assert full["time_steps"].is_unique
    assert pub_t.isdisjoint(hid_t)
    assert pub_t | hid_t == set(full["time_steps"])
    assert len(pub1) + len(hid1) == len(full)


@needs_mirror
def test_array_split_along_axis0() -> None:
    src = get_registry()["keras-intro/digits_pixels"]
    entry = Entry("test/digits", src.file, src.sha256, split=Split(0.3, "digits"))
    full, pub, hid = load(entry), public_split(entry), hidden_split(entry)
    assert pub.shape[1:] == hid.shape[1:] == (64,)
    assert len(pub) + len(hid) == len(full)
    mask = hidden_mask(len(full), entry.split)
    np.testing.assert_array_equal(hid, full[mask])


def test_split_requires_split() -> None:
    with pytest.raises(DatasetError, match="no split"):
        public_split(UNSPLIT)


def _mtimes(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@needs_mirror
def test_materialize_idempotent_and_separate(tmp_path: Path) -> None:
    pub_root, hid_root = tmp_path / "pub", tmp_path / "hid"
    digits = "keras-intro/digits_target"  # a split .npy array
    names = [ORBIT, UNSPLIT, digits]

    pub = materialize(pub_root, names)
    hid = materialize(hid_root, names, hidden=True)
    assert set(pub) == set(names)
    assert set(hid) == {ORBIT, digits}  # entries without split never go to the hidden root
    assert pub[ORBIT] == pub_root / "keras-intro" / "orbit.csv"

    before = _mtimes(pub_root) | _mtimes(hid_root)
    writes: list[str] = []
    materialize(pub_root, names, on_write=lambda n, _p: writes.append(n))
    materialize(hid_root, names, hidden=True, on_write=lambda n, _p: writes.append(n))
    assert writes == []
    assert _mtimes(pub_root) | _mtimes(hid_root) == before

    public_df = pd.read_csv(pub[ORBIT])
    pd.testing.assert_frame_equal(public_df, public_split(ORBIT))
    pd.testing.assert_frame_equal(pd.read_csv(hid[ORBIT]), hidden_split(ORBIT))
    assert set(public_df["time_steps"]).isdisjoint(hidden_split(ORBIT)["time_steps"])
    stamps = [json.loads(p.read_text()) for p in pub_root.rglob("*.stamp")]
    assert sorted(s["part"] for s in stamps) == ["public", "public", "whole"]
    assert not list(pub_root.rglob("*hid*"))
    # whole copies keep their bytes
    assert datasets.sha256_file(pub[UNSPLIT]) == get_registry()[UNSPLIT].sha256
    # an array's parts are its rows, written as .npy
    np.testing.assert_array_equal(np.load(pub[digits]), public_split(digits))
    np.testing.assert_array_equal(np.load(hid[digits]), hidden_split(digits))
    assert len(np.load(pub[digits])) + len(np.load(hid[digits])) == 1797


@needs_mirror
def test_materialize_rewrites_tampered_file(tmp_path: Path) -> None:
    out = materialize(tmp_path / "pub", [ORBIT])[ORBIT]
    good = out.read_bytes()
    with open(out, "a", encoding="utf-8") as fh:
        fh.write("0.0,0.0\n")
    writes: list[str] = []
    materialize(tmp_path / "pub", [ORBIT], on_write=lambda n, _p: writes.append(n))
    assert writes == [ORBIT]
    assert out.read_bytes() == good


@needs_mirror
def test_materialize_split_with_index_col(tmp_path: Path) -> None:
    src = get_registry()[IRRIGATION]
    entry = Entry("test/irrigation", src.file, src.sha256, read=src.read, split=Split(0.25, "irrigation_machine"))
    out = materialize(tmp_path / "pub", [entry])[entry.name]
    back = pd.read_csv(out, index_col=0)
    expected = public_split(entry)
    pd.testing.assert_frame_equal(back, expected, check_names=False)
    assert not back.index.equals(pd.RangeIndex(len(back)))  # original row ids kept


@needs_mirror
def test_public_path_without_hidden_or_mirror(
    monkeypatch: pytest.MonkeyPatch, isolated_dirs: dict[str, Path]
) -> None:
    path = public_path(ORBIT)
    assert path == isolated_dirs["public"] / "keras-intro" / "orbit.csv"
    assert path.stat().st_mode & 0o044 == 0o044  # readable by a student uid
    assert [p.name for p in isolated_dirs["public"].rglob("*") if p.is_file()] == [
        "orbit.csv",
        "orbit.csv.stamp",
    ]
    # Student side: no mirror, no cache, only the already materialized public folder.
    monkeypatch.setenv("DEEPGRADE_DATA_MIRROR", "")
    monkeypatch.setenv("DEEPGRADE_CACHE", str(isolated_dirs["cache"] / "empty"))
    assert public_path(ORBIT) == path
    with pytest.raises(DatasetUnavailable):
        public_path("keras-intro/darts")


# --- command line ------------------------------------------------------------------------------


@needs_mirror
def test_cli_verify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["verify", ORBIT, IRRIGATION]) == 0
    out = capsys.readouterr().out
    assert "2 ok, 0 mismatch, 0 missing" in out
    mirror = tmp_path / "mirror"
    _copy_entry(ORBIT, mirror, corrupt=True)
    monkeypatch.setenv("DEEPGRADE_DATA_MIRROR", str(mirror))
    assert cli_main(["verify", ORBIT, IRRIGATION]) == 1
    assert "1 mismatch, 1 missing" in capsys.readouterr().out


@needs_mirror
def test_cli_materialize(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pub, hid = tmp_path / "pub", tmp_path / "hid"
    args = ["materialize", "--public", str(pub), "--hidden", str(hid), ORBIT]
    assert cli_main(args) == 0
    assert (pub / "keras-intro" / "orbit.csv").is_file()
    assert (hid / "keras-intro" / "orbit.csv").is_file()
    capsys.readouterr()
    assert cli_main(args) == 0
    assert "0 written" in capsys.readouterr().out
    assert cli_main(["materialize", "--public", str(pub), "--hidden", str(pub)]) == 2
    shutil.rmtree(pub)
