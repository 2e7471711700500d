"""Evaluation: a trained run scored on the test split against baselines, and its report.

``scoring`` computes ``metrics.json`` (with ``metrics`` and the ``submission`` file of
Netflix's qualifying set); ``report`` renders it as Markdown and HTML with ``plots``.
TensorFlow loads only when a model is scored.
"""
