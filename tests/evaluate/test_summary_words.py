"""The validation search in words, as `cfpipe train` prints it and the benchmark shows it."""

from __future__ import annotations

from cflib.evaluate.summary import tuning_words


def test_tuning_words() -> None:
    trials = [{"values": {"embedding_dim": 32, "l2": 0.05}, "val_rmse": 0.8}] * 5
    searched = {"skipped": None, "chosen": {"embedding_dim": 32, "l2": 0.05}, "trials": trials}
    assert tuning_words(searched) == "embedding-dim 32, l2 0.05 (best of 5 trials)"
    assert tuning_words({**searched, "skipped": "--no-tune"}) == "no (--no-tune)"
    assert tuning_words(None) == "no"  # a run trained before the search existed


def test_the_report_lists_the_trials_and_the_choice() -> None:
    from cflib.evaluate.report import Table, _tuning_section

    trials = [
        {"values": {"embedding_dim": 32, "l2": 0.05}, "val_rmse": 0.83314, "epochs": 8,
         "seconds": 10.04},
        {"values": {"embedding_dim": 32, "l2": 0.025}, "val_rmse": 0.8397, "epochs": 6,
         "seconds": 9.5},
    ]  # fmt: skip
    tuning = {
        "searched": ["embedding_dim", "l2"], "budget": 51.0, "planned_trials": 5,
        "trials": trials, "chosen": {"embedding_dim": 32, "l2": 0.05}, "skipped": None,
    }  # fmt: skip
    section = _tuning_section(tuning)
    assert section is not None and section.title == "Validation search"
    text, table = section.blocks
    assert "2 trials of at most 5 (`--tune-budget 51`)" in str(text)
    assert "chosen: embedding_dim 32, l2 0.05" in str(text)
    assert isinstance(table, Table)
    assert table.rows == [["1", "32", "0.05", "0.8331", "8", "10.0"],
                          ["2", "32", "0.025", "0.8397", "6", "9.5"]]  # fmt: skip
    assert _tuning_section({**tuning, "skipped": "--no-tune"}) is None
    skipped = _tuning_section({**tuning, "skipped": "--embedding-dim and --l2 given"})
    assert skipped is not None and skipped.blocks == ["No search: --embedding-dim and --l2 given."]
