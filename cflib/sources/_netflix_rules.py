"""The line rules of the Netflix Prize files, as ``Layout``s for the shared line scanner
and as the pyarrow regular expressions of the vectorized paths.

* ``\\n`` or ``\\r\\n`` line endings; the last line may lack its newline.
* Blank lines (empty, or a lone ``\\r``) are skipped wherever they are; line numbers
  in errors still count them, so they point at the physical line.
* Numbers are plain ASCII digits: no sign, no spaces, no hex. Leading zeros are fine.
* A ``MovieID:`` header holds a positive integer followed by a colon. A header with no
  data lines after it (a movie without ratings) is allowed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from cflib.sources._lines import Layout, check_int, check_title

_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_YEAR_RE = re.compile(r"[0-9]{4}|NULL")


def _check_date(field: str) -> str | None:
    try:
        if _DATE_RE.fullmatch(field) and dt.date.fromisoformat(field):
            return None
    except ValueError:
        pass
    return f"bad date {field!r}"


def _check_year(field: str) -> str | None:
    return None if _YEAR_RE.fullmatch(field) else f"year {field!r} is not 4 digits or NULL"


_check_customer = check_int("customer id")

#: training_set/mv_*.txt: a 'MovieID:' line 1, then its ratings.
TRAINING = Layout(
    "CustomerID,Rating,Date", (_check_customer, check_int("rating", 5), _check_date), "first"
)
#: combined_data_*.txt: the training files concatenated, one 'MovieID:' line per block.
COMBINED = dataclasses.replace(TRAINING, headers="blocks")
PROBE = Layout("CustomerID", (_check_customer,), "blocks")
QUALIFYING = Layout("CustomerID,Date", (_check_customer, _check_date), "blocks")
TITLES = Layout(
    "MovieID,Year,Title", (check_int("movie id"), _check_year, check_title), "none", False
)

# The same rules as pyarrow regular expressions, for the vectorized paths.
HEADER_PA = r"^[0-9]+:$"
PROBE_PA = r"^[0-9]+$"
QUALIFYING_PA = r"^[0-9]+,[0-9]{4}-[0-9]{2}-[0-9]{2}$"
TITLE_PA = r"^(?P<id>[0-9]+),(?P<year>[0-9]{4}|NULL),(?P<title>.+)$"
