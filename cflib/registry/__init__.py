"""The model registry: versioned artifacts under ``REG/<dataset>/<model>/<run-id>/``.

``publish`` writes an artifact (``publish.py``; the SavedModel in ``export.py``, the
seen pairs in ``seen.py``) and moves ``latest`` through the gate in ``promote.py``;
``artifact.py`` resolves references and verifies checksums; ``catalog.py`` lists what
a registry holds. TensorFlow is imported only when a run is published.
"""

from cflib.registry.artifact import (
    ARTIFACT_FILE,
    LATEST,
    SAVED_MODEL_DIR,
    SEEN_FILE,
    ArtifactError,
    RefError,
    artifact_dir,
    read_info,
    resolve,
    verify,
)
from cflib.registry.publish import find_published, publish

__all__ = [
    "ARTIFACT_FILE",
    "LATEST",
    "SAVED_MODEL_DIR",
    "SEEN_FILE",
    "ArtifactError",
    "RefError",
    "artifact_dir",
    "find_published",
    "publish",
    "read_info",
    "resolve",
    "verify",
]
