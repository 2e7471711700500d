"""The validation search (``--tune``): the candidates, the budget in trials, the choice,
the user's flags kept, the record in ``train.json``, and resuming a search."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from cflib.config import TrainConfig
from cflib.data.manifest import load_manifest
from cflib.models import sizing
from cflib.models.catalog import resolve, resolve_for
from cflib.models.io import load_model
from cflib.train import epochs, loop, stop, tune
from cflib.train.loop import train
from tests._planted import write_planted


def _scored(scores: dict[tuple[Any, ...], float]) -> tuple[tune.Trainer, list[dict]]:
    """A trainer that scores each candidate from ``scores`` (by its values), and its calls."""
    calls: list[dict] = []

    def trainer(values: tune.Candidate) -> dict[str, Any]:
        calls.append(dict(values))
        val = scores.get(tuple(sorted(values.items())), 1.0)
        return {"val_rmse": val, "epochs": 1, "seconds": 0.0}

    return trainer, calls


def test_candidates_move_from_the_best_so_far() -> None:
    centre = {"embedding_dim": 32, "l2": 0.05}
    fields = ("embedding_dim", "l2")
    # L2 halved is the best so far: the next moves start from it.
    trainer, calls = _scored({(("embedding_dim", 32), ("l2", 0.025)): 0.5})
    trials = tune.search(centre, fields, sizing.MAX_TRIALS, trainer)
    assert calls == [
        {"embedding_dim": 32, "l2": 0.05},
        {"embedding_dim": 32, "l2": 0.025},  # doubling the best is the centre: not again
        {"embedding_dim": 16, "l2": 0.025},
        {"embedding_dim": 64, "l2": 0.025},
        {"embedding_dim": 32, "l2": 0.0175},
        {"embedding_dim": 32, "l2": 0.035},
    ]
    assert [t["values"] for t in trials] == calls


def test_the_budget_counts_trials() -> None:
    trainer, calls = _scored({})
    trials = tune.search({"embedding_dim": 32, "l2": 0.05}, ("embedding_dim", "l2"), 3, trainer)
    assert len(trials) == len(calls) == 3
    shape = sizing.Shape(ratings=1_000_000, users=6_000, items=4_000)
    per_trial = sizing.trial_seconds(shape, 50_000, 40)
    assert sizing.planned_trials(3 * per_trial + 0.1, shape, 50_000, 40) == 3
    assert sizing.planned_trials(3 * per_trial - 0.1, shape, 50_000, 40) == 2
    assert sizing.planned_trials(1e9, shape, 50_000, 40) == sizing.MAX_TRIALS


def test_only_the_options_the_user_left_unset_are_searched() -> None:
    def fields(**given: Any) -> tuple[str, ...]:
        asked = TrainConfig(**given)
        return tune.searched(asked, resolve(asked))

    assert fields() == ("embedding_dim", "l2")
    assert fields(l2=0.1) == ("embedding_dim",)
    assert fields(embedding_dim=64) == ("l2",)
    assert fields(embedding_dim=64, l2=0.1) == ()
    assert fields(tune=False) == ()
    assert fields(model="deep") == ("embedding_dim",)  # no L2 by default: none to tune
    trainer, calls = _scored({})
    tune.search({"embedding_dim": 32}, ("embedding_dim",), sizing.MAX_TRIALS, trainer)
    assert calls == [{"embedding_dim": 32}, {"embedding_dim": 16}, {"embedding_dim": 64}]


def test_a_resumed_search_does_not_redo_finished_trials(tmp_path: Path) -> None:
    record = tmp_path / tune.TUNE_FILE
    centre, fields = {"embedding_dim": 32, "l2": 0.05}, ("embedding_dim", "l2")
    scores = {(("embedding_dim", 32), ("l2", 0.1)): 0.5}
    first, first_calls = _scored(scores)
    tune.search(centre, fields, 2, first, record)  # killed after two trials, say
    assert json.loads(record.read_text())["trials"][1]["values"] == {
        "embedding_dim": 32, "l2": 0.025,
    }  # fmt: skip
    again, again_calls = _scored(scores)
    trials = tune.search(centre, fields, 5, again, record)
    assert again_calls == [
        {"embedding_dim": 32, "l2": 0.1},
        {"embedding_dim": 16, "l2": 0.1},  # from the best, found after the resume
        {"embedding_dim": 64, "l2": 0.1},
    ]
    assert [t["values"] for t in trials] == first_calls + again_calls


def test_defaults_follow_the_data_shape() -> None:
    def shaped(ratings: int, users: int, items: int) -> tuple[int | None, int | None, int | None]:
        cfg = resolve(TrainConfig(), n_users=users, n_items=items, n_ratings=ratings)
        return cfg.embedding_dim, cfg.epochs, cfg.patience

    assert shaped(100_000, 5_000, 1_000) == (32, 40, 3)
    assert shaped(855_000, 6_040, 3_706) == (32, 40, 3)  # MovieLens-1M-like
    assert shaped(9_000_000, 480_000, 17_770) == (32, 40, 2)  # Netflix-like: long epochs
    given = resolve(TrainConfig(embedding_dim=8, epochs=5), n_users=9, n_items=9, n_ratings=81)
    assert (given.embedding_dim, given.epochs, given.patience) == (8, 5, 3)
    budget = resolve(
        TrainConfig(), n_users=6_040, n_items=3_706, n_ratings=855_000, n_validation=45_000
    ).tune_budget
    shape = sizing.Shape(855_000, 6_040, 3_706)
    assert sizing.planned_trials(budget or 0, shape, 45_000, 40) == sizing.DEFAULT_TRIALS


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_planted(tmp_path_factory.mktemp("data") / "planted")


def test_the_search_takes_the_better_candidate(
    planted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Embedding size 1 against 8 on rank-4 planted data: 8 is clearly better; it is
    tried second, so a search that kept its centre would fail. ``l2`` is given: kept."""
    monkeypatch.setattr(sizing, "MIN_VALIDATION_ROWS", 0)  # the planted set is small
    monkeypatch.setattr(tune, "MOVES", (("embedding_dim", 8.0), ("embedding_dim", 16.0)))
    base = sizing.shape_defaults

    def centre_one(shape: sizing.Shape, base_dim: int) -> dict[str, int]:
        return {**base(shape, base_dim), "embedding_dim": 1}

    monkeypatch.setattr(sizing, "shape_defaults", centre_one)
    asked = TrainConfig(
        learning_rate=0.1, batch_size=2000, epochs=3, l2=0.0, l2_bias=0.0, refit=False
    )
    manifest = load_manifest(planted)
    shape = sizing.Shape(manifest.splits["train"].rows, manifest.n_users, manifest.n_items)
    per_trial = sizing.trial_seconds(shape, manifest.splits["validation"].rows, 3)
    # Two trials' budget: the third move (embedding size 16) is not made.
    asked = asked.model_copy(update={"tune_budget": 2.5 * per_trial})
    summary = train(planted, tmp_path / "run", asked, run_id="tuned")
    tuning = summary["tuning"]
    assert tuning["searched"] == ["embedding_dim"] and tuning["planned_trials"] == 2
    assert [t["values"] for t in tuning["trials"]] == [{"embedding_dim": 1}, {"embedding_dim": 8}]
    one, eight = (t["val_rmse"] for t in tuning["trials"])
    assert eight < one - 0.05
    assert tuning["chosen"] == {"embedding_dim": 8} and tuning["skipped"] is None
    assert summary["config"]["embedding_dim"] == 8 and summary["config"]["l2"] == 0.0
    assert summary["request"] == resolve_for(asked, manifest).identity()
    assert summary["request"]["embedding_dim"] == 1
    written = json.loads((tmp_path / "run" / "train.json").read_text())
    assert written["tuning"] == json.loads(json.dumps(tuning))
    assert load_model(tmp_path / "run" / "model.keras").user_embedding.output_dim == 8
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_no_search_on_a_small_validation_split(planted: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(embedding_dim=4, batch_size=2000, epochs=1, refit=False)
    summary = train(planted, tmp_path / "run", cfg)
    tuning = summary["tuning"]
    assert tuning["trials"] == [] and "too few to tell candidates apart" in tuning["skipped"]
    assert summary["config"] == summary["request"]


def test_a_stop_request_ends_a_trial_at_its_next_batch(planted: Path) -> None:
    import tensorflow as tf

    manifest = load_manifest(planted)
    cfg = resolve_for(TrainConfig(embedding_dim=4, batch_size=500, epochs=3), manifest)
    with stop.listening(), pytest.raises(stop.TrainingInterrupted) as stopped:
        stop.request("SIGTERM")
        tune.trial(cfg, manifest, planted, tf.distribute.get_strategy(), None, False)
    assert stopped.value.reason == "SIGTERM" and stopped.value.checkpoint is None


def test_the_run_goes_on_from_the_chosen_trial(
    planted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chosen trial's compiled model is kept (no second compile) and its epochs are the
    fit phase's first: the fit phase trains only the epochs after them, and the run has
    the same epochs, losses, RMSEs, best epoch's predictions and model, fit and refit, as a
    run given the chosen values without a search."""
    monkeypatch.setattr(sizing, "MIN_VALIDATION_ROWS", 0)  # the planted set is small
    monkeypatch.setattr(sizing, "TRIAL_EPOCHS", 2)
    monkeypatch.setattr(tune, "MOVES", (("embedding_dim", 2.0),))
    compiled: list[str] = []
    build = loop._compiled_model

    def counted(cfg: TrainConfig, *args: Any) -> Any:
        compiled.append(cfg.model)
        return build(cfg, *args)

    trained: list[tuple[str, int]] = []
    fit_epoch = epochs._fit_epoch

    def logged(fit: Any, state: Any, *args: Any) -> Any:
        trained.append((state.phase, state.epoch))
        return fit_epoch(fit, state, *args)

    monkeypatch.setattr(loop, "_compiled_model", counted)
    monkeypatch.setattr(epochs, "_fit_epoch", logged)
    asked = TrainConfig(
        learning_rate=0.1, batch_size=2000, epochs=5, patience=5, l2=0.0, l2_bias=0.0
    )
    tuned = train(planted, tmp_path / "tuned", asked)
    assert len(tuned["tuning"]["trials"]) == 2 and compiled == []
    chosen = tuned["tuning"]["chosen"]
    assert [t["epochs"] for t in tuned["tuning"]["trials"]] == [2, 2]
    assert [e for p, e in trained if p == "fit"] == [2, 3, 4]  # after the trial's 2
    trained.clear()
    plain = train(planted, tmp_path / "plain", asked.model_copy(update={**chosen, "tune": False}))
    assert plain["tuning"]["trials"] == [] and compiled == ["biased-mf"]
    assert [e for p, e in trained if p == "fit"] == [0, 1, 2, 3, 4]
    assert {**tuned["config"], "tune": False} == plain["config"]
    assert tuned["epochs_run"] == plain["epochs_run"] == 5  # patience 5: every epoch
    assert tuned["best_epoch"] == plain["best_epoch"] == tuned["refit"]["epochs"]
    assert tuned["val_rmse"] == pytest.approx(plain["val_rmse"], rel=1e-6)
    assert len(tuned["train_seconds"]) == 5
    for metric, values in plain["history"].items():
        assert tuned["history"][metric] == pytest.approx(values, rel=1e-6), metric
    for metric, values in plain["refit"]["history"].items():
        assert tuned["refit"]["history"][metric] == pytest.approx(values, rel=1e-6), metric
    runs = [tmp_path / "tuned", tmp_path / "plain"]
    val = [pq.read_table(r / "val_predictions.parquet")["prediction"].to_numpy() for r in runs]
    np.testing.assert_allclose(val[0], val[1], rtol=1e-5, atol=1e-6)
    models = [load_model(r / "model.keras").get_weights() for r in runs]
    for a, b in zip(*models, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_a_run_stopped_after_the_hand_over_resumes_as_if_never_stopped(
    planted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped mid-batch in the fit phase's first epoch after the chosen trial's, the run
    resumes from its checkpoint (not from the trial) and ends as the run never stopped."""
    from cflib.train import checkpoint

    monkeypatch.setattr(sizing, "MIN_VALIDATION_ROWS", 0)  # the planted set is small
    monkeypatch.setattr(sizing, "TRIAL_EPOCHS", 2)
    monkeypatch.setattr(tune, "MOVES", (("embedding_dim", 2.0),))
    asked = TrainConfig(
        learning_rate=0.1, batch_size=2000, epochs=4, patience=4, l2=0.0, l2_bias=0.0
    )
    whole = train(planted, tmp_path / "whole", asked)
    original = checkpoint.Checkpointer.on_train_batch_end

    def ask(self: Any, batch: int, logs: Any = None) -> None:
        if self.state.phase == "fit" and (self.state.epoch, self.state.batch) == (2, 4):
            assert stop.request("SIGTERM")
        original(self, batch, logs)

    with monkeypatch.context() as mp:
        mp.setattr(checkpoint.Checkpointer, "on_train_batch_end", ask)
        with pytest.raises(stop.TrainingInterrupted):
            train(planted, tmp_path / "stopped", asked)
    state = json.loads((tmp_path / "stopped" / "checkpoints" / "state.json").read_text())
    assert (state["phase"], state["epoch"]) == ("fit", 2) and state["batch"] > 0
    assert len(state["history"]["val_rmse"]) == 2  # the trial's epochs, handed over
    resumed = train(planted, tmp_path / "stopped", asked)
    assert resumed["resumed"] == {"epoch": 3, "batch": state["batch"]}

    def shown(trials: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(t["values"], t["val_rmse"], t["epochs"]) for t in trials]

    assert shown(resumed["tuning"]["trials"]) == shown(whole["tuning"]["trials"])
    for key in ("epochs_run", "best_epoch"):
        assert resumed[key] == whole[key], key
    # The same weights after every epoch: the same validation figures; the training loss
    # of the epoch the stop split is the mean over its resumed batches only.
    for metric, values in whole["history"].items():
        got, want = resumed["history"][metric], values
        if metric in ("loss", "rmse"):
            got, want = got[:2] + got[3:], want[:2] + want[3:]
        assert got == pytest.approx(want, rel=1e-5), metric
    runs = [tmp_path / "whole", tmp_path / "stopped"]
    models = [load_model(r / "model.keras").get_weights() for r in runs]
    for a, b in zip(*models, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
