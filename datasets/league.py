"""A synthetic college-basketball league with the schema of DataCamp's ``games_season.csv``.

The course "Advanced Deep Learning with Keras" fits team-strength embeddings to about 312k
regular-season games (``games_season.csv``), a file too large for the offline course mirror.
This module stands in for it: a seeded, deterministic league whose files have exactly the
DataCamp columns, and whose true team strengths are known, so a grader can check that a learned
embedding recovers them.

The league
----------
* **Teams.** There are 10,888 team ids, ``0..10887``. As in the course data, an id is one school
  in one season: a school that plays 33 seasons has 33 ids, consecutive, and a season's ids are
  spread over the whole range. Seasons run from 1985 to 2017, with about 305 schools in the
  first and 355 in the last. A school has a lasting program quality (normal, sd 8 points) plus
  a season-to-season drift (AR(1), sd 5 points); their sum is the team's latent **strength** in
  points (sd about 9.4). Strengths are centred on 0 within each season.
* **Regular season** (``games_season``): 156,089 games, 312,178 rows. Each season is a series of
  random pairings, so every team plays about 29 games. 88% of the games have a home team, the
  rest are on neutral courts. The expected margin of team a over team b is
  ``strength_a - strength_b + 3.5 * (a at home) - 3.5 * (b at home)``. Each score is the
  season's mean score (about 70.5) plus the game's pace (normal, sd 7, shared by both teams)
  plus or minus half the margin, plus the team's own noise (normal, sd 8). Tied games go to
  overtime: both teams add a few points and the favourite is more likely to add more.
* **Tournament** (``games_tourney``): each season a committee ranks the teams by strength plus
  noise (sd 2 points; it only sees the season's results), takes the best 64 and seeds them 1 to
  16 in four regions. The 63 bracket games (1 v 16, 8 v 9, ...) are played on neutral courts with
  the same score model: 4,158 rows.

Every game is written twice, once from each side: team_1 and team_2 swapped, score_1 and score_2
swapped, score_diff negated and won flipped. ``home`` is 1 on the row whose team_1 plays at home
and 0 otherwise (so 0 on both rows of a neutral game). ``seed_diff = seed_2 - seed_1`` is
positive when team_1 is the better seed, the same sign as in the real ``games_tourney.csv``.
Rows are ordered by season, as in the course files; within a season, every game first from one
side, then every game from the other, in the same order (so row i of the first half and row i
of the second half are one game).

Columns (all integers)::

    games_season:  season, team_1, team_2, home, score_diff, score_1, score_2, won
    games_tourney: season, team_1, team_2, home, seed_diff, score_diff, score_1, score_2, won

Seed and secrecy
----------------
``generate(seed)`` is deterministic for a given seed: the strengths, schedule, scores and
tournament each draw from their own child stream of ``numpy.random.SeedSequence(seed)``, so
:func:`true_strengths` can recompute the strengths without simulating any game. The seed of a
deployment's files (:func:`league_seed`) is a hash of the deployment's secret key for the group
``league`` (``datasets.split_secret``) and the real ``games_tourney.csv``: the repository, the
registry and a student's server hold neither, so student code that imports this module cannot
rebuild the hidden rows or the true strengths. The registry pins the sha256 of the files made
with the *reference* key (:data:`REFERENCE_KEY`, public, the one the test suite uses), so a
change of numpy's random streams or of this module shows up as a ``HashMismatch`` in the tests,
never as silently different data; a deployment's own league is cached apart from it.

The registry names ``keras-advanced/games_season_synthetic`` and
``keras-advanced/games_tourney_synthetic`` point at :func:`write_season` and
:func:`write_tourney` (field ``generator``); ``datasets.fetch`` runs them into the cache on first
use. The true strengths are not a registered file, so no public folder ever contains them: the
grading side calls :func:`true_strengths`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

FIRST_SEASON = 1985
LAST_SEASON = 2017
N_TEAMS = 10_888
N_SEASON_ROWS = 312_178
FIRST_SCHOOLS, LAST_SCHOOLS = 305, 355
QUALITY_SD = 8.0
DRIFT_SD = 5.0
DRIFT_PHI = 0.7
HOME_ADVANTAGE = 3.5
HOME_GAME_SHARE = 0.88
SCORE_NOISE_SD = 8.0
PACE_SD = 7.0
COMMITTEE_NOISE_SD = 2.0
TOURNEY_TEAMS = 64
SECRET_GROUP = "league"
REFERENCE_KEY = "deepgrade keras-advanced league v1"  # public: only for the pinned test files
SOURCE_DATASET = "keras-advanced/games_tourney"

SEASON_COLUMNS = ("season", "team_1", "team_2", "home", "score_diff", "score_1", "score_2", "won")
TOURNEY_COLUMNS = ("season", "team_1", "team_2", "home", "seed_diff", "score_diff", "score_1",
                   "score_2", "won")
# Seed order of one region's first round: 1 v 16, 8 v 9, 5 v 12, ...
BRACKET = (1, 16, 8, 9, 5, 12, 4, 13, 6, 11, 3, 14, 7, 10, 2, 15)


@dataclass(frozen=True)
class League:
    """One generated league: the teams with their true strengths, and the two game tables."""

    seed: int
    teams: pd.DataFrame    # team (id), season, school, strength
    season: pd.DataFrame   # regular season, SEASON_COLUMNS
    tourney: pd.DataFrame  # tournament, TOURNEY_COLUMNS

    @property
    def strengths(self) -> np.ndarray:
        """True strength of every team id, in points (index = team id)."""
        return self.teams["strength"].to_numpy()


def league_seed() -> int:
    """The seed of this deployment's league: a hash of its secret key and the real tournament file."""
    from .registry import fetch
    from .split_secret import group_key

    key = group_key(SECRET_GROUP).encode() + b"\n"
    digest = hashlib.sha256(key + fetch(SOURCE_DATASET).read_bytes()).digest()
    return int.from_bytes(digest[:8], "little")


def _streams(seed: int) -> dict[str, np.random.Generator]:
    import numpy as np

    names = ("teams", "means", "schedule", "scores", "tourney")
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {name: np.random.default_rng(child) for name, child in zip(names, children, strict=True)}


def _schools_per_season(n_seasons: int, n_teams: int) -> np.ndarray:
    """Schools in each season: rising steadily (305 to 355 at full size), adding up to ``n_teams``."""
    import numpy as np

    shape = np.linspace(FIRST_SCHOOLS, LAST_SCHOOLS, n_seasons)
    counts = np.round(shape * n_teams / shape.sum()).astype(np.int64)
    rest = int(n_teams - counts.sum())  # at most a few ids; nudging an end keeps the order
    if rest > 0:
        counts[n_seasons - rest:] += 1
    elif rest < 0:
        counts[:-rest] -= 1
    return counts


def _teams(rng: np.random.Generator, n_teams: int) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    seasons = np.arange(FIRST_SEASON, LAST_SEASON + 1)
    counts = _schools_per_season(len(seasons), n_teams)
    if counts[0] < TOURNEY_TEAMS:
        raise ValueError(f"{n_teams} team ids leave fewer than {TOURNEY_TEAMS} teams in a season")
    n_schools = int(counts[-1])
    # school j plays from season index first[j] on; schools join in a random order
    first = np.searchsorted(counts, np.arange(n_schools), side="right")
    order = rng.permutation(n_schools)  # id order: schools shuffled, seasons consecutive
    quality = rng.normal(0.0, QUALITY_SD, n_schools)
    rows = []
    for school in order:
        drift = rng.normal(0.0, DRIFT_SD)
        for s in range(first[school], len(seasons)):
            if s > first[school]:
                drift = DRIFT_PHI * drift + rng.normal(0.0, DRIFT_SD * np.sqrt(1 - DRIFT_PHI**2))
            rows.append((int(seasons[s]), int(school), quality[school] + drift))
    teams = pd.DataFrame(rows, columns=["season", "school", "strength"])
    teams.insert(0, "team", np.arange(len(teams), dtype=np.int64))
    teams["strength"] -= teams.groupby("season")["strength"].transform("mean")
    return teams


def _scores(rng: np.random.Generator, mean: np.ndarray, margin: np.ndarray) -> tuple[np.ndarray, ...]:
    """Integer scores of side a and side b; ties are settled in overtime."""
    import numpy as np

    n = len(margin)
    pace = mean + rng.normal(0.0, PACE_SD, n)  # fast games are high-scoring for both teams
    score_a = np.round(pace + margin / 2 + rng.normal(0.0, SCORE_NOISE_SD, n)).astype(np.int64)
    score_b = np.round(pace - margin / 2 + rng.normal(0.0, SCORE_NOISE_SD, n)).astype(np.int64)
    score_a, score_b = np.maximum(score_a, 20), np.maximum(score_b, 20)
    overtime = rng.integers(4, 13, n)
    favourite_wins = rng.random(n) < 1 / (1 + np.exp(-margin / 6))
    extra = rng.integers(1, 8, n)
    tied = score_a == score_b
    score_a = score_a + np.where(tied, overtime + np.where(favourite_wins, extra, 0), 0)
    score_b = score_b + np.where(tied, overtime + np.where(favourite_wins, 0, extra), 0)
    return score_a, score_b


def _both_sides(season, a, b, home_a, home_b, score_a, score_b, seed_a=None, seed_b=None):
    """Two rows per game: first every game from side a, then every game from side b."""
    import numpy as np
    import pandas as pd

    def side(t1, t2, home, s1, s2, seed1, seed2):
        cols = {"season": season, "team_1": t1, "team_2": t2, "home": home}
        if seed1 is not None:
            cols["seed_diff"] = seed2 - seed1
        cols.update(score_diff=s1 - s2, score_1=s1, score_2=s2, won=(s1 > s2).astype(np.int64))
        return pd.DataFrame(cols)

    return pd.concat([side(a, b, home_a, score_a, score_b, seed_a, seed_b),
                      side(b, a, home_b, score_b, score_a, seed_b, seed_a)], ignore_index=True)


def _season_games(streams, teams: pd.DataFrame, n_rows: int, means: dict[int, float]) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    if n_rows % 2:
        raise ValueError("every game is written twice, so the number of rows must be even")
    n_games = n_rows // 2
    rng, score_rng = streams["schedule"], streams["scores"]
    per_season = teams.groupby("season")["team"].apply(np.asarray)
    sizes = np.array([len(ids) for ids in per_season])
    bounds = np.round(np.concatenate([[0], np.cumsum(sizes)]) / sizes.sum() * n_games).astype(int)
    strength = teams["strength"].to_numpy()
    parts = []
    for k, (season, ids) in enumerate(per_season.items()):
        games = bounds[k + 1] - bounds[k]
        per_round = len(ids) // 2
        rounds = -(-games // per_round)
        pairs = np.concatenate([rng.permutation(ids)[: 2 * per_round].reshape(-1, 2)
                                for _ in range(rounds)])[:games]
        a, b = pairs[:, 0], pairs[:, 1]
        home_a = (rng.random(games) < HOME_GAME_SHARE).astype(np.int64)  # else a neutral court
        margin = strength[a] - strength[b] + HOME_ADVANTAGE * home_a
        score_a, score_b = _scores(score_rng, np.full(games, means[season]), margin)
        parts.append(_both_sides(np.full(games, season), a, b, home_a, np.zeros(games, np.int64),
                                 score_a, score_b))
    return pd.concat(parts, ignore_index=True)[list(SEASON_COLUMNS)]


def _tourney_games(streams, teams: pd.DataFrame, means: dict[int, float]) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    rng = streams["tourney"]
    strength = teams["strength"].to_numpy()
    parts = []
    for season, group in teams.groupby("season"):
        ids = group["team"].to_numpy()
        rating = strength[ids] + rng.normal(0.0, COMMITTEE_NOISE_SD, len(ids))
        field = ids[np.argsort(-rating, kind="stable")[:TOURNEY_TEAMS]]
        seeds = np.repeat(np.arange(1, 17), 4)  # the committee's best four are the 1 seeds...
        regions = np.array([r if line % 2 == 0 else 3 - r for line in range(16) for r in range(4)])
        seed_of = dict(zip(field.tolist(), seeds.tolist(), strict=True))
        slot = {(int(g), int(s)): int(t) for t, s, g in zip(field, seeds, regions, strict=True)}
        # four regional brackets in BRACKET order, then the final four (regions 0 v 1, 2 v 3)
        alive = np.array([slot[(g, s)] for g in range(4) for s in BRACKET])
        games = []
        while len(alive) > 1:
            a, b = alive[0::2], alive[1::2]
            score_a, score_b = _scores(rng, np.full(len(a), means[season]), strength[a] - strength[b])
            games.append((a, b, score_a, score_b))
            alive = np.where(score_a > score_b, a, b)
        a, b, score_a, score_b = (np.concatenate(x) for x in zip(*games, strict=True))
        zeros = np.zeros(len(a), np.int64)
        seed_a = np.array([seed_of[t] for t in a.tolist()], dtype=np.int64)
        seed_b = np.array([seed_of[t] for t in b.tolist()], dtype=np.int64)
        parts.append(_both_sides(np.full(len(a), season), a, b, zeros, zeros, score_a, score_b,
                                 seed_a, seed_b))
    return pd.concat(parts, ignore_index=True)[list(TOURNEY_COLUMNS)]


def _season_means(streams) -> dict[int, float]:
    rng = streams["means"]
    return {s: float(70.5 + rng.normal(0.0, 1.2)) for s in range(FIRST_SEASON, LAST_SEASON + 1)}


def generate(seed: int | None = None, *, n_teams: int = N_TEAMS,
             n_season_rows: int = N_SEASON_ROWS) -> League:
    """Simulate the whole league. ``seed=None`` uses :func:`league_seed` (the registered files).

    Smaller leagues (``n_teams``, ``n_season_rows``) are for quick tests; the defaults are the
    size of the course file.
    """
    seed = league_seed() if seed is None else int(seed)
    streams = _streams(seed)
    teams = _teams(streams["teams"], n_teams)
    means = _season_means(streams)
    season = _season_games(streams, teams, n_season_rows, means)
    tourney = _tourney_games(streams, teams, means)
    return League(seed, teams, season, tourney)


def true_strengths(seed: int | None = None, *, n_teams: int = N_TEAMS) -> pd.DataFrame:
    """The teams and their true strengths (``team, season, school, strength``), without games.

    Grading side only: this is the answer key of the team-strength embedding.
    """
    seed = league_seed() if seed is None else int(seed)
    return _teams(_streams(seed)["teams"], n_teams)


@lru_cache(maxsize=1)
def _registered() -> League:
    """The league of the registered files, simulated once per process."""
    return generate()


def _write_csv(frame: pd.DataFrame, path: Path | str) -> None:
    frame.to_csv(path, index=False, lineterminator="\n")


def write_season(path: Path | str) -> None:
    """Registry generator of ``keras-advanced/games_season_synthetic``."""
    _write_csv(_registered().season, path)


def write_tourney(path: Path | str) -> None:
    """Registry generator of ``keras-advanced/games_tourney_synthetic``."""
    _write_csv(_registered().tourney, path)
