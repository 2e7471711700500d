"""One line per stage of a pipeline run: what the parent run shows in its own logs and
artifacts (the Prefect UI's `pipeline` run, the nightly e-mail of a scheduler)."""

from __future__ import annotations

from typing import Any


def stage_lines(
    ingest: dict[str, Any],
    trained: dict[str, Any],
    train_skipped: bool,
    metrics: dict[str, Any],
    published: dict[str, Any],
) -> list[str]:
    """``ingest``: the ingest flow's result; ``trained``: ``train.json``; ``metrics``:
    ``metrics.json``; ``published``: the publish result (``skipped`` when the registry
    held the run already)."""
    if ingest.get("up_to_date"):
        first = f"ingest: skipped, {ingest['out']} is up to date"
    else:
        splits = ", ".join(f"{v['rows']:,} {k}" for k, v in ingest["splits"].items())
        bad = ingest.get("quarantined", 0)
        quarantine = f", {bad:,} malformed line{'' if bad == 1 else 's'} quarantined" if bad else ""
        first = (
            f"ingest: {ingest['name']}, {ingest['n_users']:,} users, {ingest['n_items']:,} "
            f"items, ratings {splits}{quarantine}"
        )
    how = (
        "skipped, trained before with the same data and options"
        if train_skipped
        else (f"{trained['epochs_run']} epochs, best {trained['best_epoch']}")
    )
    base = metrics.get("baselines", {}).get("user_item_bias", {}).get("rmse")
    versus = f" (user + item bias {base:.4f})" if base is not None else ""
    if published.get("skipped"):
        last = f"publish: skipped, {published['artifact']} is in the registry already"
    elif published.get("latest"):
        last = f"publish: {published['artifact']}, now latest"
    else:
        reason = (published.get("promotion") or {}).get("reason", "")
        last = f"publish: {published['artifact']}, not promoted: {reason}"
    return [
        first,
        f"train: {trained['run_id']}, {trained['model']}, {how}, validation RMSE "
        f"{trained['val_rmse']:.4f}",
        f"evaluate: test RMSE {metrics['rmse']:.4f}{versus} over {metrics['n_test']:,} ratings",
        last,
    ]


def tuning_words(tuning: dict[str, Any] | None) -> str:
    """``train.json``'s ``tuning`` in words: the search's choice and its trials
    (``embedding-dim 32, l2 0.05 (best of 5 trials)``), or ``no (why)``."""
    if not tuning:
        return "no"
    if tuning["skipped"]:
        return f"no ({tuning['skipped']})"
    chosen = ", ".join(f"{k.replace('_', '-')} {v:g}" for k, v in tuning["chosen"].items())
    return f"{chosen} (best of {len(tuning['trials'])} trials)"
