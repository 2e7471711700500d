"""Rating models: one Keras 3 class per file, listed in ``catalog``.

``catalog`` (no TensorFlow) names every model, its defaults and its class, resolves a
config and builds a model; ``io`` saves and loads them. This package imports nothing
itself, so the configuration and the CLI can read the catalogue without Keras.
"""
