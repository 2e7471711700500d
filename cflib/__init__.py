"""cfpipe: raw rating dumps to a trained, evaluated, published rating-prediction model."""

__version__ = "0.1.0"
