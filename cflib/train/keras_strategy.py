"""A private attribute of ``keras.Model`` cleared for multi-worker training (Keras 3.15).

Under ``MultiWorkerMirroredStrategy``, Keras 3.15's ``fit`` averages the first batch of
the distributed dataset over replicas to build the model symbolically, which fails on
dict inputs (keras-team/keras#20329, open). The trainer builds its models before
``fit``; with the strategy Keras recorded at construction cleared, ``fit`` takes the one
of the scope it runs in and skips that step.

Verified on keras ``VERIFIED``; ``pyproject.toml`` keeps keras below 3.16, and
``tests/flows/test_patches.py`` fails on a newer Keras or when the attribute is gone.
"""

from __future__ import annotations

import keras

#: The Keras release this was checked against.
VERIFIED = "3.15.1"

#: The private attribute in which a Keras 3 model records its distribution strategy.
ATTRIBUTE = "_distribute_strategy"


def use_scope_strategy(model: keras.Model) -> None:
    """Make ``model.fit`` take the strategy of the scope it runs in (see above)."""
    setattr(model, ATTRIBUTE, None)
