"""Scoring a published model with numpy alone: the artifact's ``scoring/`` directory.

``cfpipe predict`` and ``recommend`` score one user at a time; importing TensorFlow and
loading the Keras model cost several seconds for a few microseconds of arithmetic. At
publish time each model class exports its weights as named arrays
(``DotModel.scoring_arrays``) and the name of its forward pass (``scoring_kind``);
``write`` stores them as one ``.npy`` file per array plus ``scoring.json``, and
``load`` maps them back (large tables memory-mapped: a user's row is read, not the
table). No pickles: ``np.load(..., allow_pickle=False)``. The forward passes below are
the models' ``score`` for inference (dropout off), in float32 and in the Keras order of
additions; publishing checks them against the Keras model (``export_scoring``).

Array names: ``user_embedding``, ``item_embedding`` ``[n, dim]``; ``user_bias``,
``item_bias`` ``[n]``; ``global_mean`` ``[]``; a stack of Dense layers ``<name>.<k>.kernel``,
``<name>.<k>.bias`` and ``<name>.activations`` (one name per layer); the two-tower's side
features ``side_<feature>`` (codes per dense id) and their tables ``<feature>_embedding``
(``genre``, ``token``, ``year``, and each of ``user_features``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cflib import schema
from cflib.registry.artifact import ArtifactError

#: Written in ``scoring.json``; ``load`` refuses another.
FORMAT = 1
#: The kind of a blend's ``scoring/``: one subdirectory per component, plus the weights.
BLEND = "blend"
SPEC_FILE = "scoring.json"
#: Files above this size are memory-mapped rather than read.
MMAP_BYTES = 1 << 20

Arrays = Mapping[str, np.ndarray]


def write(out: Path, kind: str, arrays: Arrays) -> dict[str, Any]:
    """Write ``arrays`` (name -> array) and ``scoring.json`` into the new directory ``out``.

    Returns:
        ``scoring.json``'s content: ``format``, ``kind``, ``arrays`` (the names).
    """
    if kind not in KINDS:
        raise ValueError(f"`kind` should be one of {sorted(KINDS)}. Received: `kind` = {kind!r}.")
    out.mkdir()
    for name, array in arrays.items():
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"array name {name!r}: not a plain file name")
        np.save(out / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
    spec = {"format": FORMAT, "kind": kind, "arrays": sorted(arrays)}
    (out / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
    return spec


def write_blend(
    out: Path, components: list[tuple[str, str, Arrays]], intercept: float, weights: np.ndarray
) -> dict[str, Any]:
    """Write a blend's numpy form into the new directory ``out``: each component's
    (``model``, ``kind``, arrays) in a subdirectory ``<k>-<model>`` as ``write`` lays
    it out, and ``weights.npy`` (float64 ``[k]``) and ``intercept.npy`` (float64 ``[]``).

    Returns:
        ``scoring.json``'s content: ``format``, ``kind`` (``blend``), ``arrays``,
        ``components`` (the subdirectory names, in the weights' order).
    """
    if len(components) != len(weights):
        raise ValueError(f"{len(components)} components for {len(weights)} weights")
    out.mkdir()
    names = []
    for k, (model, kind, arrays) in enumerate(components):
        names.append(f"{k}-{model}")
        write(out / names[-1], kind, arrays)
    np.save(out / "weights.npy", np.asarray(weights, np.float64), allow_pickle=False)
    np.save(out / "intercept.npy", np.float64(intercept), allow_pickle=False)
    spec = {"format": FORMAT, "kind": BLEND, "arrays": ["intercept", "weights"]}
    spec["components"] = names
    (out / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
    return spec


class Scorer:
    """A model's numpy forward pass: ``scorer(users, items)`` -> float32 ``[B]``, unclipped.

    Attributes:
        kind: the forward pass (a key of ``KINDS``).
        arrays: the weights by name (large ones memory-mapped, read-only).
    """

    def __init__(self, kind: str, arrays: Arrays) -> None:
        self.kind = kind
        self.arrays = arrays
        self._forward = KINDS[kind]

    def __call__(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        out = self._forward(self.arrays, np.asarray(users), np.asarray(items))
        return np.asarray(out, dtype=np.float32).reshape(-1)


class BlendScorer:
    """A blend's numpy form: the intercept plus the weighted components' scores, each
    clipped to the rating scale first (as the evaluation blends them); unclipped."""

    kind = BLEND

    def __init__(self, components: list[Scorer], weights: np.ndarray, intercept: float) -> None:
        self.components = components
        self.weights = np.asarray(weights, np.float64)
        self.intercept = float(intercept)

    def __call__(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        lo, hi = schema.RATING_MIN, schema.RATING_MAX
        cols = [np.clip(c(users, items).astype(np.float64), lo, hi) for c in self.components]
        if not cols:
            return np.full(len(np.asarray(users)), self.intercept, dtype=np.float32)
        return (self.intercept + np.stack(cols, axis=1) @ self.weights).astype(np.float32)


def load(path: Path) -> Scorer | BlendScorer:
    """The scorer stored in ``path`` (a ``scoring/`` directory that ``write`` filled).

    Raises:
        ArtifactError: ``scoring.json`` is missing or unreadable, its format or kind is
            not one this cfpipe scores, or an array it lists is missing or malformed.
    """
    try:
        spec = json.loads((path / SPEC_FILE).read_text())
        kind, names = spec["kind"], list(spec["arrays"])
        fmt = spec["format"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{path / SPEC_FILE}: unreadable ({exc})") from None
    if fmt != FORMAT or (kind not in KINDS and kind != BLEND):
        raise ArtifactError(
            f"{path / SPEC_FILE}: format {fmt!r}, kind {kind!r}: written by another cfpipe "
            f"(this one reads format {FORMAT}, kinds {', '.join([*KINDS, BLEND])})"
        )
    arrays = {}
    for name in names:
        file = path / f"{name}.npy"
        try:
            big = file.stat().st_size > MMAP_BYTES
            arrays[name] = np.load(file, mmap_mode="r" if big else None, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{file}: unreadable ({exc})") from None
    if kind == BLEND:
        return _load_blend(path, spec, arrays)
    return Scorer(kind, arrays)


def _load_blend(path: Path, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> BlendScorer:
    """A blend's components (plain subdirectory names only) and weights."""
    names = spec.get("components")
    if (
        not isinstance(names, list)
        or not all(isinstance(n, str) and n and "/" not in n and n[0] != "." for n in names)
        or arrays["weights"].shape != (len(names),)
    ):
        raise ArtifactError(f"{path / SPEC_FILE}: a blend with malformed components or weights")
    components = []
    for name in names:
        component = load(path / name)
        if not isinstance(component, Scorer):
            raise ArtifactError(f"{path / name}: a blend inside a blend")
        components.append(component)
    return BlendScorer(components, arrays["weights"], float(arrays["intercept"]))


# --- the forward passes ---------------------------------------------------------------

_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, np.float32(0)),
}


def dense_stack(a: Arrays, name: str, x: np.ndarray) -> np.ndarray:
    """``x`` through the Dense layers ``name.0``, ``name.1``, ... with their activations."""
    for k, activation in enumerate(a[f"{name}.activations"].tolist()):
        x = _ACTIVATIONS[activation](x @ a[f"{name}.{k}.kernel"] + a[f"{name}.{k}.bias"])
    return x


def _rows(table: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return np.asarray(table[ids])


def _dot(a: Arrays, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    p, q = _rows(a["user_embedding"], users), _rows(a["item_embedding"], items)
    return np.sum(p * q, axis=-1)


def _biases(a: Arrays, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    return _rows(a["user_bias"], users) + _rows(a["item_bias"], items)


def _mlp_of_both(a: Arrays, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    both = [_rows(a["user_embedding"], users), _rows(a["item_embedding"], items)]
    return dense_stack(a, "mlp", np.concatenate(both, axis=-1))[:, 0]


def _biased_mf(a: Arrays, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    return _dot(a, users, items) + _biases(a, users, items) + a["global_mean"]


def _deep(a: Arrays, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    return _mlp_of_both(a, users, items) + a["global_mean"]


def _residual(a: Arrays, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    return _biased_mf(a, users, items) + _mlp_of_both(a, users, items)


def _mean_tokens(tokens: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``MeanTokens``: the mean of the rows of non-zero tokens (0 for no token)."""
    mask = (tokens != 0).astype(np.float32)[..., None]
    total = np.sum(_rows(table, tokens) * mask, axis=1)
    count = np.sum(mask, axis=1)
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def _two_tower(a: Arrays, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    user_in = [_rows(a["user_embedding"], users)]
    for feature in a["user_features"].tolist():
        codes = _rows(a[f"side_{feature}"], users)
        user_in.append(_rows(a[f"{feature}_embedding"], codes))
    item_in = [_rows(a["item_embedding"], items)]
    if "genre_embedding" in a:
        genres = _rows(a["side_genres"], items)
        count = np.maximum(np.sum(genres, axis=1, keepdims=True), np.float32(1))
        item_in.append(genres @ a["genre_embedding"] / count)
    if "token_embedding" in a:
        item_in.append(_mean_tokens(_rows(a["side_title"], items), a["token_embedding"]))
    if "year_embedding" in a:
        item_in.append(_rows(a["year_embedding"], _rows(a["side_year"], items)))
    user = dense_stack(a, "user_tower", np.concatenate(user_in, axis=-1))
    item = dense_stack(a, "item_tower", np.concatenate(item_in, axis=-1))
    inter = dense_stack(a, "mlp", user * item)[:, 0]
    return inter + _biases(a, users, items) + a["global_mean"]


#: ``scoring_kind`` -> forward pass ``(arrays, dense users, dense items) -> [B]``.
KINDS: dict[str, Callable[[Arrays, np.ndarray, np.ndarray], np.ndarray]] = {
    "dot": _dot,
    "biased-mf": _biased_mf,
    "deep": _deep,
    "residual": _residual,
    "two-tower": _two_tower,
    # SVD++ exports p_u + |N(u)|^-1/2 sum y_j as its user table (cflib.models.svdpp).
    "svdpp": _biased_mf,
}
