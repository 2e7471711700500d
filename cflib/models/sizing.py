"""Defaults from the data's shape, and what the validation search plans (no TensorFlow).

``cflib.models.catalog.resolve`` fills the options a user left unset from here once the
dataset's sizes are known: the embedding size and the L2 weight (the centre of the
search, and what ``--no-tune`` trains with), the epoch cap and patience, and the
search's budget. The rule is written down in the README ("Defaults from the data").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Ratings trained per second the search plans with: about what biased MF reaches on
#: 2 busy cores (BENCHMARKS.md). Planning at a fixed speed, not timing the trials, makes
#: the same data and options run the same trials on any machine, so a run resumes and
#: reproduces its choice.
NOMINAL_RATINGS_PER_SECOND = 1_000_000
#: Seconds a trial costs besides its epochs: building, compiling and tracing the model.
TRIAL_OVERHEAD_SECONDS = 3.0
#: Epochs of one trial at most (it also stops at the first epoch that does not improve).
TRIAL_EPOCHS = 8
#: The search's trials at most (``cflib.train.tune.next_candidate``).
MAX_TRIALS = 7
#: The default budget buys this many trials: the centre, L2 halved and doubled, the
#: embedding size halved and doubled.
DEFAULT_TRIALS = 5
#: Below this many validation ratings the search is not run: candidates differ by a few
#: thousandths of RMSE, about the standard error of a validation RMSE on 5,000 ratings.
MIN_VALIDATION_ROWS = 5_000
#: The longest default budget; a larger one is asked for with ``--tune-budget``.
MAX_DEFAULT_BUDGET = 3_600.0

#: At or above this many training ratings an epoch is long: patience 2, else 3.
LONG_EPOCH_RATINGS = 5_000_000


@dataclass(frozen=True)
class Shape:
    """What the defaults are derived from: the train split's ratings, users and items."""

    ratings: int
    users: int
    items: int

    @property
    def per_user(self) -> float:
        return self.ratings / max(self.users, 1)

    @property
    def per_item(self) -> float:
        return self.ratings / max(self.items, 1)


def shape_defaults(shape: Shape, base_dim: int) -> dict[str, int]:
    """The embedding size, epoch cap and patience for a dataset of this shape.

    The embedding size is the model's catalogue size (``base_dim``): wider tables were
    not better on the generated shapes of ``bench/peers.py`` (BENCHMARKS.md), so the
    search tries half and twice it rather than the rule guessing. The epoch cap is 40
    (early stopping ends runs well before it; a stronger L2 needs more than the old 20);
    patience is 3 epochs, 2 where an epoch is long (``LONG_EPOCH_RATINGS``).
    """
    return {
        "embedding_dim": base_dim,
        "epochs": 40,
        "patience": 2 if shape.ratings >= LONG_EPOCH_RATINGS else 3,
    }


def trial_seconds(shape: Shape, validation: int, epochs: int) -> float:
    """The planned cost of one trial: its overhead plus its epochs over train and
    validation at ``NOMINAL_RATINGS_PER_SECOND``."""
    rows = min(epochs, TRIAL_EPOCHS) * (shape.ratings + validation)
    return TRIAL_OVERHEAD_SECONDS + rows / NOMINAL_RATINGS_PER_SECOND


def default_budget(shape: Shape, validation: int, epochs: int) -> float:
    """``DEFAULT_TRIALS`` trials' planned seconds, rounded up, at most
    ``MAX_DEFAULT_BUDGET``."""
    seconds = DEFAULT_TRIALS * trial_seconds(shape, validation, epochs)
    return float(min(math.ceil(seconds), MAX_DEFAULT_BUDGET))


def planned_trials(budget: float, shape: Shape, validation: int, epochs: int) -> int:
    """How many trials ``budget`` seconds buy (at most ``MAX_TRIALS``)."""
    return min(MAX_TRIALS, int(budget // trial_seconds(shape, validation, epochs)))
