"""Training: one model on an ingested dataset, into a run directory.

``loop`` is the trainer (``train``); ``inputs`` the train and validation datasets of a
strategy; ``checkpoint`` the checkpoints, resume and progress callbacks; ``distribute``
the strategies; ``optim`` the sparse optimizer; ``preflight`` the checks the CLI makes
before anything starts; ``runs`` the run directories the later stages read;
``keras_strategy`` a private Keras attribute multi-worker training clears; ``stop`` a
request to stop at the next batch, with a checkpoint. Importing
the package loads no TensorFlow: ``preflight`` and ``runs`` are read by the CLI and the
flows.
"""
