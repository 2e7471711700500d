"""The validation search: the embedding size and L2 the user left unset, chosen by trials.

Before the real training (``cflib.train.loop``), short trials train candidates on the
train split and score them on the validation split; the best candidate's values are
what the run trains with, early stopping and refit as usual. The candidates follow one
another by a fixed rule (``next_candidate``): the centre (the data's defaults,
``cflib.models.sizing``), L2 halved and doubled, the embedding size halved and doubled
at the best L2, then L2 refined around the best. How many trials run is planned from the
budget at a nominal speed (``sizing.planned_trials``), never timed, so the same data and
options make the same trials anywhere. Each finished trial is written to
``checkpoints/tune.json``: a killed run resumes the search after its last finished trial.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from cflib.config import TrainConfig
from cflib.data.manifest import Manifest
from cflib.data.side import SideFeatures
from cflib.logs import stage_logger
from cflib.models import sizing
from cflib.models.catalog import SEARCHED, build_model
from cflib.train import runs, stop
from cflib.train.epochs import compile_model
from cflib.train.inputs import TrainInputs
from cflib.train.kept import Kept, TrialScores, collect
from cflib.train.progress import EpochLogger
from cflib.train.valpred import HeldValidation

log = stage_logger("train")

TUNE_FILE = "tune.json"
#: The moves after the centre, in order: (option, factor), each applied to the best
#: candidate so far.
MOVES = (
    ("l2", 0.5), ("l2", 2.0),
    ("embedding_dim", 0.5), ("embedding_dim", 2.0),
    ("l2", 0.7), ("l2", 1.4),
)  # fmt: skip
#: The smallest embedding size a move goes to.
MIN_DIM = 2

Candidate = dict[str, float | int]
Trainer = Callable[[Candidate], dict[str, Any]]


def searched(asked: TrainConfig, resolved: TrainConfig) -> tuple[str, ...]:
    """The options the search chooses: those of ``SEARCHED`` that the user left unset
    (``asked``), with ``--tune``; not L2 where the model's default has none (``deep``)."""
    if not resolved.tune:
        return ()
    fields = [f for f in SEARCHED if getattr(asked, f) is None]
    if resolved.l2 == 0 and "l2" in fields:
        fields.remove("l2")
    return tuple(fields)


def _moved(value: float | int, field: str, factor: float) -> float | int:
    if field == "embedding_dim":
        return max(MIN_DIM, round(value * factor))
    return round(value * factor, 6)


def _best(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """The trial with the lowest validation RMSE (the earlier one on a tie)."""
    return min(trials, key=lambda t: (t["val_rmse"], trials.index(t)))


def next_candidate(
    centre: Candidate, trials: list[dict[str, Any]], fields: tuple[str, ...]
) -> Candidate | None:
    """The candidate after ``trials`` (the trials made so far, in order), or None when the
    moves are exhausted. A pure function of the trials' values and scores: replayed on
    resume, it gives the trials that were made and then the next one."""
    if not trials:
        return dict(centre)
    made = trials[:1]
    for field, factor in MOVES:
        if field not in fields:
            continue
        best = _best(made)["values"]
        candidate = {**best, field: _moved(best[field], field, factor)}
        if any(t["values"] == candidate for t in made):
            continue
        if len(made) == len(trials):
            return candidate
        made.append(trials[len(made)])
    return None


def search(
    centre: Candidate,
    fields: tuple[str, ...],
    planned: int,
    trainer: Trainer,
    record: Path | None = None,
) -> list[dict[str, Any]]:
    """Run up to ``planned`` trials (``next_candidate``), each ``trainer(values)``;
    the trials, in order. With ``record``, the trials already in that file are not run
    again and each new one is added to it as it finishes."""
    trials = _recorded(record)[:planned]
    while len(trials) < planned:
        candidate = next_candidate(centre, trials, fields)
        if candidate is None:
            break
        trial = {"values": candidate, **trainer(candidate)}
        trials.append(trial)
        log.info(
            "tune: trial %d of at most %d: %s: validation RMSE %.4f after %d epochs "
            "(%.1f s)", len(trials), planned, _shown(candidate), trial["val_rmse"],
            trial["epochs"], trial["seconds"],
        )  # fmt: skip
        if record is not None:
            runs.write_json(record, {"trials": trials})
    return trials


def _shown(values: Candidate) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in values.items())


def _recorded(record: Path | None) -> list[dict[str, Any]]:
    if record is None or not record.is_file():
        return []
    try:
        trials = json.loads(record.read_text())["trials"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s is unreadable (%s); the search starts over", record, exc)
        return []
    if trials:
        log.info("tune: %d trials already made, from %s", len(trials), record)
    return list(trials)


def choose(
    asked: TrainConfig,
    cfg: TrainConfig,
    manifest: Manifest,
    make_cfg: Callable[[Candidate], TrainConfig],
    trainer: Trainer,
    *,
    ckpt_dir: Path,
    skip: str | None = None,
) -> tuple[TrainConfig, dict[str, Any]]:
    """The config to train with and ``train.json``'s ``tuning``.

    Args:
        asked: the options as the user gave them (unset ones are searched).
        cfg: the same, resolved: the centre of the search and what ``--no-tune`` trains.
        manifest: the dataset (its sizes plan the trials).
        make_cfg: the resolved config of a candidate.
        trainer: runs one trial (``trial``).
        ckpt_dir: where ``tune.json`` records the finished trials.
        skip: a reason not to search that only the caller knows (multi-worker).
    """
    assert cfg.epochs is not None and cfg.tune_budget is not None
    fields = searched(asked, cfg)
    shape = sizing.Shape(manifest.splits["train"].rows, manifest.n_users, manifest.n_items)
    validation = manifest.splits["validation"].rows
    per_trial = sizing.trial_seconds(shape, validation, cfg.epochs)
    planned = sizing.planned_trials(cfg.tune_budget, shape, validation, cfg.epochs)
    tuning: dict[str, Any] = {
        "searched": list(fields), "budget": cfg.tune_budget, "trial_seconds": per_trial,
        "planned_trials": planned, "trials": [], "chosen": {}, "skipped": None,
    }  # fmt: skip
    if skip is None:
        skip = _why_not(asked, cfg, fields, validation, planned, per_trial)
    if skip is not None:
        tuning["skipped"] = skip
        if cfg.tune:
            log.info("tune: no search (%s)", skip)
        return cfg, tuning
    centre: Candidate = {f: getattr(cfg, f) for f in fields}
    log.info(
        "tune: searching %s from %s, at most %d trials of about %.0f s (--tune-budget %g)",
        " and ".join(fields), _shown(centre), planned, per_trial, cfg.tune_budget,
    )  # fmt: skip
    trials = search(centre, fields, planned, trainer, ckpt_dir / TUNE_FILE)
    chosen = _best(trials)["values"]
    log.info("tune: chose %s (validation RMSE %.4f)", _shown(chosen), _best(trials)["val_rmse"])
    tuning.update(trials=trials, chosen=chosen)
    return make_cfg(chosen), tuning


def _why_not(
    asked: TrainConfig,
    cfg: TrainConfig,
    fields: tuple[str, ...],
    validation: int,
    planned: int,
    per_trial: float,
) -> str | None:
    if not cfg.tune:
        return "--no-tune"
    if not fields:
        given = [f"--{f.replace('_', '-')}" for f in SEARCHED if getattr(asked, f) is not None]
        unset_l2 = "" if asked.l2 is not None else f"; --model {cfg.model} has no L2 to tune"
        return f"{' and '.join(given)} given{unset_l2}"
    if validation < sizing.MIN_VALIDATION_ROWS:
        return (
            f"{validation:,} validation ratings, fewer than {sizing.MIN_VALIDATION_ROWS:,}: "
            "too few to tell candidates apart"
        )
    if planned < 2:
        return f"--tune-budget {cfg.tune_budget:g} buys {planned} trial of about {per_trial:.0f} s"
    return None


def trial(
    cfg: TrainConfig,
    manifest: Manifest,
    data_dir: Path,
    strategy: tf.distribute.Strategy,
    side: SideFeatures | None,
    in_memory: bool,
    keep: Kept | None = None,
) -> dict[str, Any]:
    """One trial: ``cfg``'s model trained on the train split from its seeded initial
    weights, at most ``sizing.TRIAL_EPOCHS`` epochs, stopped at the first epoch that does
    not improve the validation RMSE; its best validation RMSE (infinite if it diverged),
    epochs and seconds. With ``keep``, the model is offered to it (``Kept``).

    Raises:
        TrainingInterrupted: a stop was requested (between epochs); finished trials are
            kept in ``tune.json``.
    """
    assert cfg.epochs is not None
    start = time.perf_counter()
    keras.utils.set_random_seed(cfg.seed)
    inputs = TrainInputs(manifest, data_dir, cfg, strategy, None, in_memory)
    with strategy.scope():
        model = build_model(
            cfg, n_users=manifest.n_users, n_items=manifest.n_items,
            global_mean=manifest.global_mean, side=side,
        )  # fmt: skip
        model.xla = strategy.num_replicas_in_sync == 1
    compile_model(model, cfg, strategy, inputs.train_batches)
    if getattr(model, "row_step", None) is not None:
        # The row step trains without XLA: only validation would compile the model's score
        # with it, about 0.5 s a trial for the same RMSE to float rounding.
        model.xla = False
    timer = EpochLogger(cfg.batch_size or 0, quiet=True) if keep is not None else None
    scores = TrialScores(timer, cfg.batch_size or 0)
    # One ``fit`` for all the trial's epochs, the same as one ``fit`` per epoch (the
    # dataset's iterations count the epochs from 0, or it holds them all in turn) without
    # Keras' set-up per epoch (BENCHMARKS.md, "Small data").
    epochs = min(cfg.epochs, sizing.TRIAL_EPOCHS)
    train, steps = inputs.epochs(epochs)
    held = HeldValidation.of(model, inputs.held_validation())
    with inputs.strategy.scope(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        model.fit(
            train, validation_data=inputs.validation() if held is None else None,
            epochs=epochs, steps_per_epoch=steps, shuffle=False, verbose=0,
            callbacks=[c for c in (held, timer, scores) if c is not None],
        )  # fmt: skip
    if (reason := stop.requested()) is not None:
        raise stop.TrainingInterrupted(reason, None)
    if keep is None or not keep.offer(cfg, model, scores):
        collect(model)
    return {
        "val_rmse": scores.best,
        "epochs": scores.epochs,
        "seconds": time.perf_counter() - start,
    }
