"""The validation search in words, as `cfpipe train` prints it and the benchmark shows it."""

from __future__ import annotations

from cflib.evaluate.summary import tuning_words


def test_tuning_words() -> None:
    trials = [{"values": {"embedding_dim": 32, "l2": 0.05}, "val_rmse": 0.8}] * 5
    searched = {"skipped": None, "chosen": {"embedding_dim": 32, "l2": 0.05}, "trials": trials}
    assert tuning_words(searched) == "embedding-dim 32, l2 0.05 (best of 5 trials)"
    assert tuning_words({**searched, "skipped": "--no-tune"}) == "no (--no-tune)"
    assert tuning_words(None) == "no"  # a run trained before the search existed
