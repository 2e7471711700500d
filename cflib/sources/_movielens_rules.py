"""The line rules of the MovieLens files, as ``Layout``s for the shared line scanner.

* ``\\n`` or ``\\r\\n`` line endings; the last line may lack its newline.
* Blank lines are skipped wherever they are; line numbers in errors still count them.
* Ids are positive plain ASCII integers; timestamps are unix seconds (a non-negative
  integer before the year 10000) and become their UTC calendar date.
* Side tables (items, users) list each id once.
"""

from __future__ import annotations

import re

from cflib.sources._lines import ID_RE, Check, Layout, check_int, check_nonempty, check_title

#: Unix seconds of 10000-01-01 UTC: later dates do not fit Python's ``date``, and a
#: millisecond timestamp (a common mix-up) lands far beyond it.
TIMESTAMP_END = 253_402_300_800
#: The 19 genre flags of ML-100K's u.item, in column order.
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
#: ML-1M users.dat age buckets (the code is the bucket's lowest age).
ML1M_AGES = frozenset({1, 18, 25, 35, 45, 50, 56})
_DECIMAL_RE = re.compile(r"[0-9]+\.?[0-9]*|\.[0-9]+")  # what pyarrow reads from these bytes
_RELEASE_RE = re.compile(r"[0-9]{1,2}-[A-Za-z]{3}-[0-9]{4}")  # "01-Jan-1995", "4-Feb-1971"


def _check_stars(field: str) -> str | None:
    ok = ID_RE.fullmatch(field) is not None and 1 <= int(field) <= 5
    return None if ok else f"rating {field!r} is not one of 1..5"


def _check_half_stars(field: str) -> str | None:
    ok = _DECIMAL_RE.fullmatch(field) is not None and 0.5 <= float(field) <= 5.0
    if ok and (2 * float(field)).is_integer():
        return None
    return f"rating {field!r} is not a half star in 0.5..5.0"


def _check_timestamp(field: str) -> str | None:
    if ID_RE.fullmatch(field) is None:
        return f"timestamp {field!r} is not a non-negative integer"
    return None if int(field) < TIMESTAMP_END else f"timestamp {field!r} is after the year 9999"


def _check_release(field: str) -> str | None:
    ok = not field or _RELEASE_RE.fullmatch(field) is not None
    return None if ok else f"release date {field!r} is not empty or D-Mon-YYYY or DD-Mon-YYYY"


def _check_flag(genre: str) -> Check:
    def check(field: str) -> str | None:
        return None if field in ("0", "1") else f"{genre} flag {field!r} is not 0 or 1"

    return check


def _check_genres(field: str) -> str | None:
    if not field:
        return "empty genres"
    return None if "" not in field.split("|") else f"empty genre in {field!r}"


def _check_gender(field: str) -> str | None:
    return None if field in ("M", "F") else f"gender {field!r} is not M or F"


def _check_age_code(field: str) -> str | None:
    ok = ID_RE.fullmatch(field) is not None and int(field) in ML1M_AGES
    return None if ok else f"age {field!r} is not one of {', '.join(map(str, sorted(ML1M_AGES)))}"


def _check_occupation_code(field: str) -> str | None:
    ok = ID_RE.fullmatch(field) is not None and int(field) <= 20
    return None if ok else f"occupation {field!r} is not a code in 0..20"


def _any(field: str) -> str | None:
    return None


_check_user = check_int("user id")
_check_movie = check_int("movie id")


def _colon_ratings(stars: Check) -> Layout:
    """ML-1M's ``ratings.dat`` layout (ML-10M's too, with half stars)."""
    fields = (_check_user, _check_movie, stars, _check_timestamp)
    return Layout("UserID::MovieID::Rating::Timestamp", fields, "none", sep="::")


ML100K_RATINGS = Layout(
    "user id | item id | rating | timestamp",
    (_check_user, check_int("item id"), _check_stars, _check_timestamp),
    "none",
    sep="\t",
)
ML1M_RATINGS = _colon_ratings(_check_stars)
ML10M_RATINGS = _colon_ratings(_check_half_stars)
CSV_RATINGS = Layout(
    "userId,movieId,rating,timestamp",
    (_check_user, _check_movie, _check_half_stars, _check_timestamp),
    "names",
)
ML100K_ITEMS = Layout(
    "movie id | title | release date | video release date | IMDb URL | 19 genre flags",
    (
        _check_movie,
        check_title,
        _check_release,
        _any,  # video release date: empty throughout ML-100K and never used
        _any,  # IMDb URL
        *(_check_flag(genre) for genre in ML100K_GENRES),
    ),
    "none",
    sep="|",
)
ML1M_ITEMS = Layout(
    "MovieID::Title::Genres", (_check_movie, check_title, _check_genres), "none", sep="::"
)
CSV_ITEMS = Layout(
    "movieId,title,genres", (_check_movie, check_title, _check_genres), "names", quoted=True
)
ML100K_USERS = Layout(
    "user id | age | gender | occupation | zip code",
    (
        _check_user,
        check_int("age", 150),
        _check_gender,
        check_nonempty("occupation"),
        check_nonempty("zip code"),
    ),
    "none",
    sep="|",
)
ML1M_USERS = Layout(
    "UserID::Gender::Age::Occupation::Zip-code",
    (
        _check_user,
        _check_gender,
        _check_age_code,
        _check_occupation_code,
        check_nonempty("zip code"),
    ),
    "none",
    sep="::",
)
