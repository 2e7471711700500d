"""``recommend`` ranks on the unclipped score, and equal scores go to the lower item id."""

from __future__ import annotations

import numpy as np
import pytest

from cflib import registry
from cflib.config import PublishConfig
from cflib.registry import npscore
from cflib.registry.serving import Artifact, open_artifact
from tests._artifacts import ingest_tiny, make_run
from tests.conftest import write_netflix

UNRATED_USER = 60  # rated nothing in the train and validation splits of the conftest data


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    root = tmp_path_factory.mktemp("ties")
    data = ingest_tiny(write_netflix(root / "netflix"), root / "data")
    run = make_run(root / "runs", data, "ties", seed=5)
    return open_artifact(registry.publish(run, root / "reg", PublishConfig())["artifact"])


def _set_item_scores(art: Artifact, item_bias: list[float]) -> None:
    """Make every user's score of item i the global mean plus ``item_bias[i]`` (in the
    numpy form, which ``recommend`` scores with)."""
    assert isinstance(art.scorer, npscore.Scorer)
    arrays = dict(art.scorer.arrays)
    for name in ("user_embedding", "item_embedding", "user_bias"):
        arrays[name] = np.zeros_like(arrays[name])
    arrays["item_bias"] = np.array(item_bias, np.float32)
    art.scorer.arrays = arrays


@pytest.mark.parametrize(
    ("item_bias", "k", "expected"),
    [
        ([0.0, 0.0, 0.0], 3, [1, 2, 3]),  # all equal: ascending ids
        ([0.2, 0.6, 0.2], 3, [2, 1, 3]),
        ([0.6, 0.2, 0.6], 2, [1, 3]),
        ([0.2, 0.6, 0.6], 3, [2, 3, 1]),
    ],
)
def test_equal_scores_go_to_the_lower_item_id(
    artifact: Artifact, item_bias: list[float], k: int, expected: list[int]
) -> None:
    assert artifact.raw_items.tolist() == [1, 2, 3]  # dense order is raw order
    _set_item_scores(artifact, item_bias)
    assert [r["item"] for r in artifact.recommend(UNRATED_USER, k=k)] == expected


def test_scores_above_the_scale_still_rank_before_ties(artifact: Artifact) -> None:
    """Items 1 and 3 tie above 5 stars, item 2 is higher still: all three show 5.0."""
    _set_item_scores(artifact, [5.0, 6.0, 5.0])
    rows = artifact.recommend(UNRATED_USER, k=3)
    assert [r["item"] for r in rows] == [2, 1, 3]
    assert [r["rating"] for r in rows] == [5.0, 5.0, 5.0]
    _set_item_scores(artifact, [-9.0, -8.0, -9.0])  # and below 1 star
    rows = artifact.recommend(UNRATED_USER, k=3)
    assert [r["item"] for r in rows] == [2, 1, 3]
    assert [r["rating"] for r in rows] == [1.0, 1.0, 1.0]
