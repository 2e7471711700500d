"""A seeded Netflix Prize-format dataset with planted structure and a known oracle RMSE.

The planted model: ``rating = clip(round(mu + b_user + b_movie + p_user . q_movie + noise),
1, 5)``. ``truth.json`` records how well the noise-free score predicts the written stars
(the oracle RMSE), a floor that no model trained on the files can beat by much.

Everything about movie ``m`` (its bias, factors, raters, noise, dates, probe rows,
qualifying pairs, title) comes from ``np.random.default_rng([seed, m])``; the user side
and the per-movie rating counts come from ``default_rng([seed, 0])``. The files are
therefore byte-identical for one config, and memory stays O(users * rank + largest
movie): movies are generated and written one at a time.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from cflib.config import SynthConfig
from cflib.errors import ConfigError
from cflib.fsutil import atomic_dir
from cflib.logs import stage_logger
from cflib.sources import netflix

logger = stage_logger("synth")

TRUTH_FILE = "truth.json"
MAX_CUSTOMER_ID = 2_649_429  # the largest customer id in the real Prize data
FIRST_DAY = dt.date(1999, 11, 11)
LAST_DAY = dt.date(2005, 12, 31)

GLOBAL_MEAN = 3.6
USER_BIAS_STD = 0.4
MOVIE_BIAS_STD = 0.5
FACTOR_TERM_STD = 0.5  # std of p_user . q_movie, whatever the rank
ACTIVITY_SIGMA = 1.2  # lognormal user activity: mean/median ~2, as in the Prize data
POPULARITY_EXPONENT = 1.2  # movie counts ~ 1 / (rank + offset) ** exponent
NULL_YEAR_SHARE = 0.02

_EPOCH = dt.date(1970, 1, 1)
_FIRST = (FIRST_DAY - _EPOCH).days
_LAST = (LAST_DAY - _EPOCH).days
_WRITE = pacsv.WriteOptions(include_header=False, quoting_style="none")
_WORDS = (
    "Night Day Love War Last First Dark City Secret Island Return Summer Winter Road Star "
    "King Queen River Shadow Blue Red Dead Lost Little Big Ghost House Story Life Time "
    "Dream Fire Stone Garden Journey Planet Dinosaur Sea Wild Silent"
).split()
# Latin-1 (not ASCII) words, so readers must decode movie_titles.txt as ISO-8859-1.
_ACCENTED = ("Amélie", "Café", "Noël", "Señor", "Über", "Garçon", "Déjà Vu", "Fiancée")


@dataclass(frozen=True)
class _Users:
    """The user side of the planted model; index i is the i-th smallest customer id."""

    ids: np.ndarray  # int64 customer ids, ascending
    bias: np.ndarray  # float64
    factors: np.ndarray  # float32, users x rank
    log_weight: np.ndarray  # lognormal activity, as logs (Gumbel-top-k sampling)
    cdf: np.ndarray  # cumulative activity (sampling with replacement)


def _check_sizes(cfg: SynthConfig) -> None:
    if cfg.ratings > cfg.movies * cfg.users:
        raise ConfigError(
            f"--ratings {cfg.ratings} is more than --movies x --users = "
            f"{cfg.movies * cfg.users}: a customer rates a movie at most once"
        )
    if cfg.ratings < cfg.movies:
        raise ConfigError(
            f"--ratings {cfg.ratings} is less than --movies {cfg.movies}: "
            "every movie gets at least one rating"
        )


def _movie_counts(cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """Ratings per movie: Zipf-like, each in 1..cap, summing exactly to ``cfg.ratings``."""
    m, total = cfg.movies, cfg.ratings
    cap = min(cfg.users, max((cfg.users + 1) // 2, -(-total // m)))
    weight = (np.arange(1, m + 1) + m / 90) ** -POPULARITY_EXPONENT
    lo, hi = 0.0, 1.0
    while np.clip(hi * weight, 1, cap).sum() < total:
        hi *= 2
    for _ in range(100):  # bisect the scale so the clipped counts sum to just under total
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.clip(mid * weight, 1, cap).sum() <= total else (lo, mid)
    share = np.clip(lo * weight, 1, cap)
    counts = np.floor(share).astype(np.int64)
    by_fraction = np.argsort(-(share - counts), kind="stable")
    while (short := total - int(counts.sum())) > 0:
        room = by_fraction[counts[by_fraction] < cap][:short]
        counts[room] += 1
    return counts[rng.permutation(m)]  # popularity rank is not movie id order


def _make_users(cfg: SynthConfig, rng: np.random.Generator) -> _Users:
    ids = np.sort(rng.choice(MAX_CUSTOMER_ID, cfg.users, replace=False)) + 1
    log_weight = rng.normal(0.0, ACTIVITY_SIGMA, cfg.users)
    scale = (FACTOR_TERM_STD**2 / cfg.rank) ** 0.25
    return _Users(
        ids=ids.astype(np.int64),
        bias=rng.normal(0.0, USER_BIAS_STD, cfg.users),
        factors=rng.normal(0.0, scale, (cfg.users, cfg.rank)).astype(np.float32),
        log_weight=log_weight,
        cdf=np.cumsum(np.exp(log_weight)),
    )


def _required_raters(
    counts: np.ndarray, n_users: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Give every user (as far as the ratings go) one rating slot, so nobody is left out.

    Returns CSR arrays: users of movie i are ``users[bounds[i]:bounds[i + 1]]``. Slots
    are distinct, so no movie gets more required users than it has ratings.
    """
    total = int(counts.sum())
    n = min(n_users, total)
    movie = np.searchsorted(np.cumsum(counts), rng.choice(total, n, replace=False), "right")
    users = rng.permutation(n_users)[:n]
    order = np.argsort(movie, kind="stable")
    bounds = np.searchsorted(movie[order], np.arange(counts.size + 1))
    return users[order], bounds


def _sample_users(
    rng: np.random.Generator, k: int, exclude: np.ndarray, users: _Users
) -> np.ndarray:
    """``k`` distinct users not in ``exclude``, drawn by activity without replacement.

    Both branches are successive sampling (each next user with probability proportional
    to activity among those not yet drawn), returned in draw order.
    """
    n = users.cdf.size
    if k == 0:
        return np.empty(0, np.int64)
    if k + exclude.size > n // 4:
        # Dense: draws with replacement would mostly repeat; Gumbel-top-k is O(users).
        keys = users.log_weight + rng.gumbel(size=n)
        keys[exclude] = -np.inf
        top = np.argpartition(-keys, k - 1)[:k]
        return top[np.argsort(-keys[top], kind="stable")]
    chosen = np.empty(0, np.int64)
    while chosen.size < k:
        u = rng.random((k - chosen.size) * 5 // 4 + 16) * users.cdf[-1]
        # Sorted keys make searchsorted 1.5-3x faster (cache-friendly); scatter them back.
        order = np.argsort(u)
        draws = np.empty(u.size, np.int64)
        draws[order] = np.minimum(np.searchsorted(users.cdf, u[order], side="right"), n - 1)
        if exclude.size:
            draws = draws[~np.isin(draws, exclude)]
        seq = np.concatenate([chosen, draws])
        _, first = np.unique(seq, return_index=True)
        chosen = seq[np.sort(first)][:k]
    return chosen


def _dates(rng: np.random.Generator, start: int, n: int) -> pa.Array:
    """Days from a movie's start to the end of the data, denser towards the end."""
    days = start + np.floor((_LAST - start + 1) * np.sqrt(rng.random(n))).astype(np.int32)
    return pa.array(days, pa.date32())


def _csv(columns: dict[str, Any]) -> bytes:
    sink = pa.BufferOutputStream()
    pacsv.write_csv(pa.table(columns), sink, _WRITE)
    return sink.getvalue().to_pybytes()


def _title(rng: np.random.Generator, movie: int) -> str:
    """``MovieID,Year,Title`` line: some NULL years, commas and Latin-1 letters."""
    words = [_WORDS[i] for i in rng.integers(len(_WORDS), size=int(rng.integers(1, 4)))]
    if rng.random() < 0.05:
        words[int(rng.integers(len(words)))] = _ACCENTED[int(rng.integers(len(_ACCENTED)))]
    title = " ".join(words)
    if rng.random() < 0.05:
        title = f"{title}, {_WORDS[int(rng.integers(len(_WORDS)))]}"
    year_draw = 2005 - min(int(rng.exponential(12.0)), 2005 - 1896)
    year = "NULL" if rng.random() < NULL_YEAR_SHARE else str(year_draw)
    return f"{movie},{year},{title}"


@dataclass
class _Totals:
    """Running sums for truth.json."""

    sse_all: float = 0.0
    sse_probe: float = 0.0
    stars: float = 0.0
    n_ratings: int = 0
    n_probe: int = 0
    n_qualifying: int = 0


def _write_movie(
    out: Path,
    movie: int,
    cfg: SynthConfig,
    count: int,
    required: np.ndarray,
    users: _Users,
    files: tuple[IO[bytes], IO[bytes]],
    totals: _Totals,
) -> str:
    """Write one movie's training file and its probe and qualifying blocks; its title line."""
    rng = np.random.default_rng([cfg.seed, movie])
    bias = rng.normal(0.0, MOVIE_BIAS_STD)
    factors = rng.normal(0.0, (FACTOR_TERM_STD**2 / cfg.rank) ** 0.25, cfg.rank)
    start = int(rng.integers(_FIRST, _LAST - 30))
    n_qual = min(int(rng.binomial(count, cfg.qualifying_fraction)), users.cdf.size - count)
    extra = _sample_users(rng, count - required.size + n_qual, required, users)
    raters = np.sort(np.concatenate([required, extra[: count - required.size]]))
    qualifying = np.sort(extra[count - required.size :])

    score = GLOBAL_MEAN + bias + users.bias[raters] + users.factors[raters] @ factors
    stars = np.clip(np.rint(score + rng.normal(0.0, cfg.noise, count)), 1, 5)
    in_probe = rng.random(count) < cfg.probe_fraction
    header = f"{movie}:\n".encode()
    body = _csv(
        {"u": users.ids[raters], "r": stars.astype(np.int8), "d": _dates(rng, start, count)}
    )
    (out / netflix.TRAINING_DIR / f"mv_{movie:07d}.txt").write_bytes(header + body)
    if in_probe.any():
        files[0].write(header + _csv({"u": users.ids[raters[in_probe]]}))
    if qualifying.size:
        dates = _dates(rng, start, qualifying.size)
        files[1].write(header + _csv({"u": users.ids[qualifying], "d": dates}))

    sq_err = (np.clip(score, 1, 5) - stars) ** 2
    totals.sse_all += float(sq_err.sum())
    totals.sse_probe += float(sq_err[in_probe].sum())
    totals.stars += float(stars.sum())
    totals.n_ratings += count
    totals.n_probe += int(in_probe.sum())
    totals.n_qualifying += int(qualifying.size)
    return _title(rng, movie)


def generate_netflix(
    out: Path,
    cfg: SynthConfig,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write a Netflix Prize-format directory with planted structure.

    Writes ``training_set/mv_NNNNNNN.txt`` (exactly ``cfg.ratings`` rating lines in
    all), ``probe.txt`` (a ``probe_fraction`` subset of those ratings, which stay in
    training_set as in the real Prize), ``qualifying.txt`` (unrated pairs, about
    ``qualifying_fraction * ratings``), ``movie_titles.txt`` (ISO-8859-1) and
    ``truth.json``. The directory appears atomically: it is built next to ``out``
    and renamed into place.

    Args:
        out: the directory to create; it must not exist or be empty.
        cfg: sizes, seed and the planted model's rank and noise.
        progress: called as ``progress(done_movies, total_movies)`` now and then.

    Returns:
        The contents of ``truth.json``: oracle RMSEs on probe and on all ratings, the
        global mean of the written stars, row counts, and the config.

    Raises:
        ConfigError: the sizes are impossible, or ``out`` exists and is not empty.
    """
    out = Path(out)
    _check_sizes(cfg)
    rng = np.random.default_rng([cfg.seed, 0])  # movie ids start at 1, so 0 is free
    counts = _movie_counts(cfg, rng)
    users = _make_users(cfg, rng)
    required, bounds = _required_raters(counts, cfg.users, rng)
    every = max(1, cfg.movies // 100)
    logger.info("generating %s movies, %s ratings into %s", cfg.movies, cfg.ratings, out)
    with atomic_dir(out, what="--out") as stage:
        (stage / netflix.TRAINING_DIR).mkdir()
        totals = _Totals()
        titles: list[str] = []
        with (
            open(stage / netflix.PROBE_FILE, "wb") as probe,
            open(stage / netflix.QUALIFYING_FILE, "wb") as qualifying,
        ):
            for i in range(cfg.movies):
                movie_required = required[bounds[i] : bounds[i + 1]]
                files = (probe, qualifying)
                count = int(counts[i])
                titles.append(
                    _write_movie(stage, i + 1, cfg, count, movie_required, users, files, totals)
                )
                if progress is not None and ((i + 1) % every == 0 or i + 1 == cfg.movies):
                    progress(i + 1, cfg.movies)
        text = "".join(f"{line}\n" for line in titles)
        (stage / netflix.TITLES_FILE).write_bytes(text.encode(netflix.TITLES_ENCODING))
        truth = {
            "oracle_rmse_probe": (totals.sse_probe / max(totals.n_probe, 1)) ** 0.5,
            "oracle_rmse_all": (totals.sse_all / totals.n_ratings) ** 0.5,
            "global_mean": totals.stars / totals.n_ratings,
            "n_ratings": totals.n_ratings,
            "n_probe": totals.n_probe,
            "n_qualifying": totals.n_qualifying,
            "movies": cfg.movies,
            "users": int(min(cfg.users, cfg.ratings)),
            "config": cfg.model_dump(),
        }
        (stage / TRUTH_FILE).write_text(json.dumps(truth, indent=2) + "\n")
    logger.info("wrote %s: oracle RMSE on probe %.4f", out, truth["oracle_rmse_probe"])
    return truth
