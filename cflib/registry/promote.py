"""The promotion gate: when ``latest`` moves to a newly published run.

``latest`` never moves to a run whose test RMSE is not below the user + item bias
baseline's on the same test split: such a model learned nothing the biases do not know
(a diverged training, a model wrong for the data). Otherwise ``latest`` moves only if
the new run's test RMSE is no worse than the current latest's by more than
``--promote-tolerance``, and only when both were tested on the same data (same data
fingerprint). When the current latest was tested on other data,
the RMSEs do not compare; the new run is promoted, as the model of the newer data,
and the decision says so. Every decision is recorded in the artifact's
``artifact.json`` under ``promotion``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cflib.config import PublishConfig
from cflib.errors import CfpipeError
from cflib.registry.store import Location, latest_info


def decide(
    model_dir: Location | Path,
    *,
    rmse: float,
    data_fingerprint: str,
    cfg: PublishConfig,
    baseline_rmse: float | None = None,
) -> dict[str, Any]:
    """Whether a new run with test ``rmse`` on ``data_fingerprint`` becomes ``latest``.

    Args:
        model_dir: ``REG/<dataset>/<model>``, local or remote.
        rmse: the new run's test RMSE.
        data_fingerprint: the fingerprint of the data it was tested on.
        cfg: ``promote`` and ``promote_tolerance``.
        baseline_rmse: the user + item bias baseline's test RMSE on the same split
            (``metrics.json``); None where the metrics do not have it (no gate then).

    Returns:
        ``{"promoted": bool, "reason": str, "previous": run id or None,
        "previous_rmse": float or None, "tolerance": float}``.
    """
    decision: dict[str, Any] = {
        "promoted": False,
        "reason": "",
        "previous": None,
        "previous_rmse": None,
        "tolerance": cfg.promote_tolerance,
    }
    if not cfg.promote:
        decision["reason"] = "--no-promote"
        return decision
    if baseline_rmse is not None and not rmse < baseline_rmse:  # NaN is never promoted
        decision["reason"] = (
            f"test RMSE {rmse:.4f} is not better than the user + item bias baseline "
            f"{baseline_rmse:.4f}"
        )
        return decision
    try:
        where = model_dir if isinstance(model_dir, Location) else Location(None, str(model_dir))
        latest = latest_info(where)
    except CfpipeError as exc:
        decision.update(promoted=True, reason=f"the current latest is unreadable ({exc})")
        return decision
    if latest is None:
        decision.update(promoted=True, reason="first promoted run of this model")
        return decision
    old = float(latest["rmse"])
    decision.update(previous=latest["run_id"], previous_rmse=old)
    if latest.get("data_fingerprint") != data_fingerprint:
        decision.update(
            promoted=True,
            reason=f"latest {latest['run_id']} was tested on other data (fingerprint "
            f"{str(latest.get('data_fingerprint'))[:12]}), so the RMSEs do not compare; "
            "promoted as the model of the newer data",
        )
    elif rmse <= old + cfg.promote_tolerance:
        decision.update(
            promoted=True,
            reason=f"test RMSE {rmse:.4f} is within {cfg.promote_tolerance:g} of latest "
            f"{latest['run_id']}'s {old:.4f}",
        )
    else:
        decision["reason"] = (
            f"test RMSE {rmse:.4f} is worse than latest {latest['run_id']}'s {old:.4f} "
            f"by more than --promote-tolerance {cfg.promote_tolerance:g}"
        )
    return decision
