"""Typed configuration: one frozen pydantic model per stage, nested in PipelineConfig.

The CLI options, the Prefect flow parameters and the deployment parameters all derive
from these models, and every artifact stores ``model_dump_json()`` of the one it used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cflib.models.catalog import MODEL_NAMES

if TYPE_CHECKING:  # a Literal built at run time is opaque to type checkers
    ModelName = str
else:
    #: The ``--model`` values, from the model catalogue (``cflib.models.catalog``).
    ModelName = Literal[MODEL_NAMES]
OptimizerName = Literal["adagrad", "adam"]
LRSchedule = Literal["constant", "cosine", "exponential"]
TextEncoderName = Literal["mean-tokens"]
SplitMode = Literal["auto", "random", "temporal"]
#: The formats of ``cflib.sources.FORMAT_NAMES`` (kept equal by a test; the config does not
#: import the parsers).
SourceFormat = Literal["auto", "netflix", "ml-100k", "ml-1m", "ml-csv"]


#: Fields that bound how a stage runs rather than what it computes: left out of
#: ``identity()``, so a rerun with another ``--timeout`` resumes or skips as before.
OPERATIONAL_FIELDS = frozenset({"timeout"})


class _Stage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def identity(self) -> dict[str, Any]:
        """The config as runs record and compare it (``train.json``, ``metrics.json``, a
        checkpoint's ``run.json``): ``model_dump`` without ``OPERATIONAL_FIELDS``."""
        return self.model_dump(mode="json", exclude=set(OPERATIONAL_FIELDS))


def _timeout(stage: str) -> Any:
    """The ``timeout`` field of a stage: Prefect's ``timeout_seconds`` on its flow."""
    return Field(
        None,
        gt=0,
        description=f"Time limit of the {stage} in seconds (default: none); then it stops "
        "as on SIGTERM, with one line.",
    )


class SynthConfig(_Stage):
    """A generated Netflix Prize-format dataset with planted structure."""

    movies: int = Field(500, gt=0, le=100_000, description="Number of movies (files).")
    users: int = Field(2_000, gt=0, le=2_649_429, description="Number of customers.")
    ratings: int = Field(200_000, gt=0, description="Ratings in training_set, probe included.")
    seed: int = Field(0, ge=0, description="Seed of every random draw.")
    rank: int = Field(8, gt=0, le=256, description="Rank of the planted user/movie factors.")
    noise: float = Field(0.8, ge=0, description="Std of the Gaussian noise before rounding.")
    probe_fraction: float = Field(
        0.014, gt=0, lt=1, description="Share of ratings also listed in probe.txt."
    )
    qualifying_fraction: float = Field(
        0.028, ge=0, lt=1, description="Unrated pairs in qualifying.txt, as a share of ratings."
    )


class IngestConfig(_Stage):
    """Parsing a source directory into the partitioned Parquet dataset."""

    format: SourceFormat = Field("auto", description="Source format; 'auto' detects it.")
    name: str | None = Field(
        None, min_length=1, description="Dataset name in the registry (default: source dir name)."
    )
    split: SplitMode = Field(
        "auto",
        description="Test split: 'random' (hash of the pair), 'temporal' (each user's latest); "
        "'auto' uses Netflix's probe.txt where present, else 'random'.",
    )
    validation_fraction: float = Field(
        0.05, gt=0, lt=1, description="Share of the training ratings held out for validation."
    )
    test_fraction: float = Field(
        0.1, gt=0, lt=1, description="Share held out for test when the source has no probe set."
    )
    seed: int = Field(0, ge=0, description="Seed of the hash that assigns splits.")
    shard_mb: float = Field(
        64,
        gt=0,
        description="Source megabytes parsed per Dask task (whole files; many files per task).",
    )
    bucket_rows: int = Field(
        2_000_000,
        gt=0,
        description="Target rows per train Parquet part; rows are shuffled across parts.",
    )
    dask_address: str | None = Field(
        None, description="tcp://HOST:PORT of an existing Dask scheduler (default: LocalCluster)."
    )
    n_workers: int = Field(2, gt=0, le=256, description="LocalCluster worker processes.")
    force: bool = Field(False, description="Rebuild even if the output matches the inputs.")
    strict: bool = Field(
        False,
        description="Stop at the first malformed line instead of quarantining it.",
    )
    timeout: float | None = _timeout("ingest")


class TrainConfig(_Stage):
    """Training one model on an ingested dataset.

    Fields left at ``None`` take the model's default (``cflib.models.catalog.MODELS``);
    ``cflib.models.catalog.resolve`` fills them in before training, and the run stores
    the resolved values.
    """

    model: ModelName = Field("biased-mf", description="Model architecture.")
    embedding_dim: int | None = Field(
        None, gt=0, le=4096, description="Embedding size (default: per model)."
    )
    l2: float | None = Field(
        None,
        ge=0,
        le=100,
        description="L2 weight on the squared table rows of each batch (default: per model).",
    )
    l2_user: float | None = Field(
        None, ge=0, le=100, description="L2 weight of the user-side tables (default: --l2)."
    )
    l2_item: float | None = Field(
        None, ge=0, le=100, description="L2 weight of the item-side tables (default: --l2)."
    )
    l2_bias: float | None = Field(
        None,
        ge=0,
        le=100,
        description="L2 weight of the bias tables (default: per model, else --l2).",
    )
    optimizer: OptimizerName = Field(
        "adagrad",
        description="adagrad (row-wise, sparse table updates) or adam (dense updates).",
    )
    learning_rate: float | None = Field(
        None, gt=0, le=10, description="Learning rate (default: per model and optimizer)."
    )
    lr_schedule: LRSchedule = Field(
        "constant", description="constant, cosine (to 1% over --epochs) or exponential."
    )
    lr_decay: float = Field(
        0.9, gt=0, le=1, description="Per-epoch factor of the exponential schedule."
    )
    batch_size: int | None = Field(
        None, gt=0, le=1 << 22, description="Global batch size (default: per model)."
    )
    epochs: int = Field(20, gt=0, le=10_000, description="Maximum number of epochs.")
    patience: int = Field(2, ge=0, description="Epochs without validation improvement to stop.")
    refit: bool = Field(
        True,
        description="Then retrain on train + validation for the epoch count that early "
        "stopping chose; that model is the run's.",
    )
    seed: int = Field(0, ge=0, description="Seed of initialization and shuffling.")
    replicas: int = Field(
        1, gt=0, le=64, description="CPU logical devices for MirroredStrategy when no GPU."
    )
    hidden: str | None = Field(
        None,
        description="MLP layer sizes, comma-separated, e.g. 128,64 "
        "(deep, residual, two-tower; default: per model).",
    )
    dropout: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="Dropout rate after each MLP layer (deep, residual, two-tower).",
    )
    text_encoder: TextEncoderName = Field(
        "mean-tokens", description="Title encoder of two-tower: mean of learned token embeddings."
    )
    checkpoint_steps: int = Field(
        1000, ge=0, description="Checkpoint every N steps, besides every epoch (0: epochs only)."
    )
    timeout: float | None = _timeout("training")

    @field_validator("hidden")
    @classmethod
    def _check_hidden(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            sizes = [int(x) for x in value.split(",")]
        except ValueError:
            raise ValueError("expected comma-separated positive integers, e.g. 128,64") from None
        if not sizes or any(n <= 0 or n > 65_536 for n in sizes):
            raise ValueError("expected comma-separated integers in 1..65536, e.g. 128,64")
        return ",".join(str(n) for n in sizes)

    def hidden_sizes(self) -> tuple[int, ...]:
        """``hidden`` as a tuple of layer sizes (empty when unset)."""
        return tuple(int(x) for x in self.hidden.split(",")) if self.hidden else ()


class EvaluateConfig(_Stage):
    """Metrics and baselines on the test split."""

    seed: int = Field(0, ge=0, description="Seed of the random baseline.")
    batch_size: int = Field(65_536, gt=0, description="Rows scored per batch.")
    timeout: float | None = _timeout("evaluation")


class PublishConfig(_Stage):
    """Publishing a run into the model registry."""

    promote: bool = Field(
        True,
        description="Point `latest` at the published run if it passes the promotion gate.",
    )
    promote_tolerance: float = Field(
        0.0,
        ge=0,
        description="How much worse than latest's test RMSE (same data) a run may be and "
        "still be promoted.",
    )
    timeout: float | None = _timeout("publishing")


class PipelineConfig(_Stage):
    """The whole pipeline: ingest, train, evaluate, publish."""

    ingest: IngestConfig = IngestConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    publish: PublishConfig = PublishConfig()
