"""The report's figures as PNG bytes (matplotlib, headless Agg backend)."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

_DPI = 100


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=_DPI)
    plt.close(fig)
    return buf.getvalue()


def learning_curves(history: dict[str, list[float]]) -> bytes | None:
    """Train and validation RMSE per epoch, or None when the history has neither."""
    keys = [k for k in ("rmse", "val_rmse") if history.get(k)]
    if not keys:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key in keys:
        values = history[key]
        label = "validation RMSE" if key == "val_rmse" else "train RMSE"
        ax.plot(range(1, len(values) + 1), values, marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("RMSE")
    ax.legend()
    ax.grid(alpha=0.3)
    return _png(fig)


def segments(rows: list[dict[str, Any]], title: str) -> bytes:
    """RMSE of the model and of the bias baseline per activity bucket."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.arange(len(rows))
    for offset, (key, label) in zip(
        (-0.2, 0.2), (("model", "model"), ("user_item_bias", "user + item bias")), strict=True
    ):
        values = [r[key] if r[key] is not None else np.nan for r in rows]
        ax.bar(x + offset, values, width=0.4, label=label)
    ax.set_xticks(x, [f"{r['bucket']}\n({r['rows']:,})" for r in rows], fontsize=8)
    ax.set_ylabel("RMSE")
    ax.set_title(title)
    ax.legend()
    return _png(fig)


def distribution(dist: dict[str, list[Any]]) -> bytes:
    """Counts of true ratings next to predictions rounded to the nearest rating."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    values = dist["values"]
    x = np.arange(len(values))
    ax.bar(x - 0.2, dist["true"], width=0.4, label="true")
    ax.bar(x + 0.2, dist["predicted"], width=0.4, label="predicted (rounded)")
    ax.set_xticks(x, [f"{v:g}" for v in values])
    ax.set_xlabel("rating")
    ax.set_ylabel("test ratings")
    ax.legend()
    return _png(fig)
