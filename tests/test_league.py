"""Tests for the synthetic basketball league (``datasets/league.py``) and its registry entries.

Small leagues (a few thousand teams) test the rules quickly; the registered full-size league
is generated once per session, into a temporary cache, for the counts and the pinned bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import datasets
from datasets import Entry, HashMismatch, RegistryError, get_registry, league
from datasets.registry import REPO_ROOT

REAL_MIRROR = REPO_ROOT.parent / "shared" / "datasets"
needs_mirror = pytest.mark.skipif(
    not (REAL_MIRROR / "MANIFEST.csv").is_file(), reason="course mirror ../shared/datasets absent"
)
SEASON = "keras-advanced/games_season_synthetic"
TOURNEY = "keras-advanced/games_tourney_synthetic"
SMALL = {"n_teams": 2640, "n_season_rows": 40_000}


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """The real mirror, but a cache and public folder of this session only."""
    root = tmp_path_factory.getbasetemp() / "league-dirs"
    monkeypatch.setenv("DEEPGRADE_DATA_MIRROR", str(REAL_MIRROR) if REAL_MIRROR.is_dir() else "")
    monkeypatch.setenv("DEEPGRADE_CACHE", str(root / "cache"))
    monkeypatch.setenv("DEEPGRADE_PUBLIC_DATA", str(root / "public"))


@pytest.fixture(scope="module")
def small() -> league.League:
    return league.generate(7, **SMALL)


@pytest.fixture(scope="module")
def full() -> league.League:
    if not (REAL_MIRROR / "MANIFEST.csv").is_file():
        pytest.skip("the registered league's seed comes from the real games_tourney.csv")
    mp = pytest.MonkeyPatch()
    mp.setenv("DEEPGRADE_DATA_MIRROR", str(REAL_MIRROR))
    try:
        return league.generate()
    finally:
        mp.undo()


# --- determinism ---------------------------------------------------------------------------------


def test_same_seed_same_league(small: league.League) -> None:
    again = league.generate(7, **SMALL)
    pd.testing.assert_frame_equal(small.season, again.season)
    pd.testing.assert_frame_equal(small.tourney, again.tourney)
    pd.testing.assert_frame_equal(small.teams, again.teams)


def test_other_seed_other_league(small: league.League) -> None:
    other = league.generate(8, **SMALL)
    assert not np.allclose(small.strengths, other.strengths)
    assert not small.season.equals(other.season)


def test_true_strengths_without_games(small: league.League) -> None:
    """The answer key is recomputed from the seed alone, identical to the simulated league's."""
    pd.testing.assert_frame_equal(league.true_strengths(7, n_teams=SMALL["n_teams"]), small.teams)


@needs_mirror
def test_registered_seed_is_pinned() -> None:
    """With the reference key (the test deployment's), the seed is the one the registry's files pin."""
    assert datasets.group_key(league.SECRET_GROUP) == league.REFERENCE_KEY
    assert league.league_seed() == 1767100280510704179


@needs_mirror
def test_a_deployment_key_makes_its_own_league(tmp_path, monkeypatch) -> None:
    """Another key gives another seed and strengths, cached apart from the pinned files: knowing the
    repository and the tournament file is not enough to rebuild a deployment's answer key."""
    reference = league.league_seed()
    monkeypatch.setenv("DEEPGRADE_SPLIT_SECRET", str(tmp_path / "secret.yaml"))
    datasets.ensure_secret()
    assert datasets.group_key(league.SECRET_GROUP) != league.REFERENCE_KEY
    assert league.league_seed() != reference
    entry = datasets.get_registry()["keras-advanced/games_season_synthetic"]
    assert any("deployment-" in str(path) for _, path in datasets.registry.candidates(entry))


# --- schema --------------------------------------------------------------------------------------


def test_exact_season_columns(small: league.League) -> None:
    assert list(small.season.columns) == [
        "season", "team_1", "team_2", "home", "score_diff", "score_1", "score_2", "won"]
    assert all(dtype == np.int64 for dtype in small.season.dtypes)


@needs_mirror
def test_tourney_columns_match_datacamp(small: league.League) -> None:
    """Same columns, in the same order, as the real games_tourney.csv (= enriched minus pred)."""
    real = datasets.load("keras-advanced/games_tourney")
    enriched = datasets.load("keras-advanced/games_season_enriched")
    assert list(small.tourney.columns) == list(real.columns)
    assert list(enriched.columns) == [*real.columns, "pred"]
    assert list(small.season.columns) == [c for c in real.columns if c != "seed_diff"]
    assert (small.tourney.dtypes == real.dtypes).all()


def test_every_game_twice_from_both_sides(small: league.League) -> None:
    for games in (small.season, small.tourney):
        half = len(games) // 2
        for season, rows in games.groupby("season"):
            n = len(rows) // 2
            a, b = rows.iloc[:n].reset_index(drop=True), rows.iloc[n:].reset_index(drop=True)
            assert (a.team_1 == b.team_2).all() and (a.team_2 == b.team_1).all(), season
            assert (a.score_1 == b.score_2).all() and (a.score_diff == -b.score_diff).all()
            assert (a.won + b.won == 1).all()
            assert not ((a.home == 1) & (b.home == 1)).any()
        assert half * 2 == len(games)
        assert (games.score_diff == games.score_1 - games.score_2).all()
        assert (games.won == (games.score_diff > 0)).all()
        assert (games.score_diff != 0).all(), "basketball has no ties"
        assert games.won.mean() == 0.5


def test_rows_ordered_by_season(small: league.League) -> None:
    for games in (small.season, small.tourney):
        assert games.season.is_monotonic_increasing
        assert games.season.min() == 1985 and games.season.max() == 2017


# --- the registered, full-size league ------------------------------------------------------------


def test_full_size_counts(full: league.League) -> None:
    assert len(full.season) == 312_178
    assert full.season.team_1.nunique() == 10_888
    assert full.season.team_1.min() == 0 and full.season.team_1.max() == 10_887
    assert len(full.teams) == 10_888 and full.teams.team.tolist() == list(range(10_888))
    assert len(full.tourney) == 33 * 63 * 2
    per_team = full.season.groupby("team_1").size()
    assert per_team.min() >= 25 and per_team.max() <= 30
    assert set(full.tourney.team_1) <= set(full.season.team_1)


def test_a_team_id_is_one_school_in_one_season(full: league.League) -> None:
    assert (full.season.groupby("team_1").season.nunique() == 1).all()
    team_season = full.teams.set_index("team").season
    assert (full.season.team_1.map(team_season) == full.season.season).all()
    assert (full.season.team_2.map(team_season) == full.season.season).all()
    # a school's ids are consecutive, so a season's ids spread over the whole range
    spans = full.teams.groupby("season").team.agg(["min", "max"])
    assert (spans["max"] - spans["min"] > 9_000).all()


def test_scores_look_like_college_basketball(full: league.League) -> None:
    season = full.season
    assert 69 < season.score_1.mean() < 72
    assert 10 < season.score_1.std() < 15
    assert 15 < season.score_diff.std() < 20
    assert 8 < full.strengths.std() < 11


def test_home_advantage(full: league.League) -> None:
    """The home side wins by 3.5 points more than the strengths alone say; neutral games by 0."""
    season = full.season
    strength = full.strengths
    surplus = (season.score_diff - (strength[season.team_1] - strength[season.team_2])).to_numpy()
    # within a season, row i of the first half and row i of the second half are one game
    twin = np.empty(len(season), np.int64)
    for _, rows in season.groupby("season"):
        n = len(rows) // 2
        twin[rows.index[:n]], twin[rows.index[n:]] = rows.index[n:], rows.index[:n]
    home = season.home.to_numpy() == 1
    away = np.zeros(len(season), bool)
    away[twin[home]] = True
    neutral = ~home & ~away
    assert abs(surplus[home].mean() - league.HOME_ADVANTAGE) < 0.2
    assert abs(surplus[away].mean() + league.HOME_ADVANTAGE) < 0.2
    assert abs(surplus[neutral].mean()) < 0.3
    assert 0.40 < home.mean() < 0.46  # 88% of games have a home side, half the rows show it
    assert (full.tourney.home == 0).all(), "tournament games are on neutral courts"


def test_tourney_seeds_come_from_strength(full: league.League) -> None:
    tourney, strength = full.tourney, full.strengths
    seed_and_strength = []
    for season, rows in tourney.groupby("season"):
        n = len(rows) // 2
        first = rows.iloc[:32]  # the first round: 1 v 16, 8 v 9, ... in every region
        gaps = first.seed_diff.abs()
        assert sorted(gaps.tolist()) == sorted([15, 1, 7, 9, 5, 11, 3, 13] * 4), season
        teams = np.unique(rows.team_1)
        assert len(teams) == 64 and n == 63
        in_season = full.teams[full.teams.season == season].strength
        # the field is the strongest fifth of the league, give or take the committee's noise
        assert strength[teams].min() > np.quantile(in_season, 0.6)
        # in the first round the seeds add up to 17, so seed_1 = (17 - seed_diff) / 2
        both_sides = pd.concat([first, rows.iloc[n: n + 32]])
        seed = (17 - both_sides.seed_diff) // 2
        assert sorted(seed.tolist()) == sorted(list(range(1, 17)) * 4)
        seed_and_strength.append(np.c_[seed, strength[both_sides.team_1]])
    seed, team_strength = np.concatenate(seed_and_strength).T
    assert np.corrcoef(seed, team_strength)[0, 1] < -0.75  # seed 1 is the strongest line
    # a better seed (positive seed_diff) goes with a stronger team_1 and a winning margin
    gap = strength[tourney.team_1] - strength[tourney.team_2]
    assert np.corrcoef(tourney.seed_diff, gap)[0, 1] > 0.85
    assert np.corrcoef(tourney.seed_diff, tourney.score_diff)[0, 1] > 0.4
    assert tourney.seed_diff.between(-15, 15).all()


# --- the registry: generated files, splits, and what never becomes public ------------------------


@needs_mirror
def test_registered_files_are_generated_and_pinned(full: league.League, tmp_path: Path) -> None:
    reg = get_registry()
    for name, frame in ((SEASON, full.season), (TOURNEY, full.tourney)):
        entry = reg[name]
        assert entry.generator is not None and entry.url is None and entry.split is not None
        path = datasets.fetch(name)  # written into the (temporary) cache by the generator
        assert path.is_relative_to(datasets.cache_dir())
        assert datasets.sha256_file(path) == entry.sha256
        pd.testing.assert_frame_equal(pd.read_csv(path), frame)
        public, hidden = datasets.public_split(name), datasets.hidden_split(name)
        assert len(public) + len(hidden) == len(frame)
        assert 0.05 < len(hidden) / len(frame) < 0.35


@needs_mirror
def test_public_files_hold_no_strengths(tmp_path: Path) -> None:
    paths = datasets.materialize(tmp_path / "public", [SEASON, TOURNEY])
    for path in paths.values():
        header = path.read_text().splitlines()[0]
        assert "strength" not in header and "school" not in header
    assert not any("strength" in e.file for e in get_registry().values())


def test_generated_bytes_must_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A generator that writes other bytes than registered fails loudly and leaves nothing."""
    monkeypatch.setenv("DEEPGRADE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(league, "write_tourney", lambda path: Path(path).write_text("x\n1\n"))
    entry = Entry("test/bad", "synthetic/bad.csv", "0" * 64, generator="league:write_tourney")
    with pytest.raises(HashMismatch, match="generated dataset"):
        datasets.fetch(entry)
    assert not any((tmp_path / "cache").rglob("*.csv"))
    assert not any((tmp_path / "cache").rglob("*.tmp"))


def test_generator_field_is_validated() -> None:
    with pytest.raises(RegistryError, match="generator"):
        Entry("x/y", "x/y.csv", "0" * 64, generator="os.system")
    with pytest.raises(RegistryError, match="unknown fields"):
        Entry.from_dict("x/y", {"file": "x/y.csv", "sha256": "0" * 64, "generate": "league:x"})
    ok = Entry.from_dict("x/y", {"file": "x/y.csv", "sha256": "0" * 64, "generator": "league:f"})
    assert ok.generator == "league:f"
