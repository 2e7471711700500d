"""Typed configuration: one frozen pydantic model per stage, nested in PipelineConfig.

The CLI options, the Prefect flow parameters and the deployment parameters all derive
from these models, and every artifact stores ``model_dump_json()`` of the one it used.
Titles and descriptions are what a user reads, in ``--help`` and in the Prefect run form:
they name no module or command-line flag, and an optional field (``None`` until a stage
fills it in) says in words what it defaults to, and is shown in the form as a plain
input left empty (``optional``) rather than as a choice between a value and "None".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cflib.fields import number, optional, per_model
from cflib.models.catalog import LEARNING_RATES, MODEL_NAMES, ROW_LOOKUPS_PER_BATCH

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
    return optional(
        "Time limit (seconds)",
        f"Past it the {stage} stops as on Ctrl-C, with one line saying so. Default: no limit.",
        gt=0,
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
    """Reading the source files into a dataset of training, validation and test ratings."""

    model_config = ConfigDict(title="Ingest")

    format: SourceFormat = Field(
        "auto", title="Source format", description="'auto' recognizes it from the files."
    )
    name: str | None = optional(
        "Dataset name",
        "The dataset's name in the model registry. Default: the source directory's name.",
        min_length=1,
    )
    split: SplitMode = Field(
        "auto",
        title="Test split",
        description="How test ratings are chosen: 'random' (a seeded hash of user and "
        "item), 'temporal' (each user's latest ratings); 'auto' uses Netflix's probe set "
        "where there is one, else 'random'.",
    )
    validation_fraction: float = Field(
        0.05,
        gt=0,
        lt=1,
        title="Validation share",
        description="Share of the ratings left after the test split held out for validation "
        "(between 0 and 1).",
    )
    test_fraction: float = Field(
        0.1,
        gt=0,
        lt=1,
        title="Test share",
        description="Share of the ratings held out for test with a 'random' or 'temporal' "
        "split (between 0 and 1).",
    )
    seed: int = Field(0, ge=0, title="Seed", description="Seed of the hash that splits.")
    shard_mb: float = Field(
        64,
        gt=0,
        title="Megabytes per parse task",
        description="Source megabytes one Dask task parses (whole files).",
    )
    bucket_rows: int = Field(
        2_000_000,
        gt=0,
        title="Rows per Parquet file",
        description="Target number of training ratings in each Parquet file of the dataset.",
    )
    dask_address: str | None = optional(
        "Dask scheduler",
        "Address of an existing Dask scheduler, e.g. tcp://10.0.0.5:8786. Default: a local "
        "cluster started for the ingest.",
    )
    n_workers: int = Field(
        2,
        gt=0,
        le=256,
        title="Dask workers",
        description="Worker processes of the local cluster (not used with a Dask scheduler).",
    )
    force: bool = Field(
        False,
        title="Rebuild",
        description="Rebuild the dataset even when it is up to date with the source files.",
    )
    strict: bool = Field(
        False,
        title="Stop at a malformed line",
        description="Stop at the first malformed line instead of setting it aside in the "
        "quarantine file.",
    )
    timeout: float | None = _timeout("ingest")


class TrainConfig(_Stage):
    """Training: the model and how it learns. Empty fields take the model's default."""

    # Fields left at None take the model's default (cflib.models.catalog.MODELS);
    # catalog.resolve fills them in before training, and the run stores the resolved values.
    model_config = ConfigDict(title="Training")

    model: ModelName = Field(
        "biased-mf", title="Model", description="The model to train (see the README's table)."
    )
    embedding_dim: int | None = optional(
        "Embedding size",
        f"Length of each user and item vector. Default: {per_model('embedding_dim')}.",
        gt=0,
        le=4096,
    )
    l2: float | None = optional(
        "L2 weight",
        "Penalty on the squared vector entries of each batch, every table. "
        f"Default: {per_model('l2')}.",
        ge=0,
        le=100,
    )
    l2_user: float | None = optional(
        "L2 weight, user tables",
        "The L2 weight of the user-side tables. Default: the L2 weight.",
        ge=0,
        le=100,
    )
    l2_item: float | None = optional(
        "L2 weight, item tables",
        "The L2 weight of the item-side tables. Default: the L2 weight.",
        ge=0,
        le=100,
    )
    l2_bias: float | None = optional(
        "L2 weight, bias tables",
        "The L2 weight of the bias tables. "
        f"Default: {per_model('l2_bias', 'the L2 weight for {}')}.",
        ge=0,
        le=100,
    )
    optimizer: OptimizerName = Field(
        "adagrad",
        title="Optimizer",
        description="adagrad (updates only the table rows of each batch) or adam (updates "
        "every row each step: slow on large tables).",
    )
    learning_rate: float | None = optional(
        "Learning rate",
        "Step size of the optimizer. "
        f"Default: {number(LEARNING_RATES['adagrad'])} with adagrad, "
        f"{number(LEARNING_RATES['adam'])} with adam.",
        gt=0,
        le=10,
    )
    lr_schedule: LRSchedule = Field(
        "constant",
        title="Learning rate schedule",
        description="constant; cosine (down to 1% by the last epoch); exponential (times "
        "the decay factor every epoch).",
    )
    lr_decay: float = Field(
        0.9,
        gt=0,
        le=1,
        title="Decay factor",
        description="Per-epoch factor of the exponential schedule, in (0, 1].",
    )
    batch_size: int | None = optional(
        "Batch size",
        f"Ratings per training step. Default: {per_model('batch_size')}, at most "
        f"{ROW_LOOKUPS_PER_BATCH} times the smaller of the numbers of users and items.",
        gt=0,
        le=1 << 22,
    )
    epochs: int | None = optional(
        "Maximum epochs",
        "Passes over the training data at most. Default: 40.",
        gt=0,
        le=10_000,
    )
    patience: int | None = optional(
        "Patience",
        "Epochs in a row without a better validation RMSE before training stops. "
        "Default: 3, or 2 from 5,000,000 training ratings.",
        ge=0,
        le=10_000,
    )
    refit: bool = Field(
        True,
        title="Refit on train + validation",
        description="After early stopping, train again on the training and validation "
        "ratings for the best epoch count; that model is the run's.",
    )
    seed: int = Field(
        0, ge=0, title="Seed", description="Seed of initialization, shuffling and dropout."
    )
    tune: bool = Field(
        True,
        title="Validation search",
        description="Choose the embedding size and the L2 weight, where not given, by a "
        "short search scored on the validation ratings, within the search budget.",
    )
    tune_budget: float | None = optional(
        "Search budget (seconds)",
        "Seconds the search may plan for, counted at a fixed nominal speed so that its "
        "trials are the same on any machine. Default: five trials' worth, from the data's size.",
        gt=0,
        le=86_400,
    )
    replicas: int = Field(
        1,
        gt=0,
        le=64,
        title="CPU replicas",
        description="Logical CPU devices to train on in parallel when there is no GPU.",
    )
    hidden: str | None = optional(
        "Hidden layers",
        f"Layer sizes of the MLP, comma-separated, e.g. 128,64. Default: {per_model('hidden')}.",
    )
    dropout: float | None = optional(
        "Dropout",
        f"Dropout rate after each MLP layer, in [0, 1). Default: {per_model('dropout')}.",
        ge=0,
        lt=1,
    )
    text_encoder: TextEncoderName = Field(
        "mean-tokens",
        title="Title encoder",
        description="How two-tower reads titles: the mean of learned word vectors.",
    )
    checkpoint_steps: int = Field(
        1000,
        ge=0,
        title="Checkpoint every N steps",
        description="Besides the end of every epoch; 0: at the end of epochs only.",
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
    """Evaluation: the model and the baselines scored on the test ratings."""

    model_config = ConfigDict(title="Evaluation")

    seed: int = Field(0, ge=0, title="Seed", description="Seed of the random baseline.")
    batch_size: int = Field(
        65_536, gt=0, title="Batch size", description="Test ratings scored per step."
    )
    timeout: float | None = _timeout("evaluation")


class PublishConfig(_Stage):
    """Publishing: the run copied into the model registry."""

    model_config = ConfigDict(title="Publishing")

    promote: bool = Field(
        True,
        title="Promote",
        description="Make the published run the latest one if its test RMSE is no worse "
        "than the latest's on the same data (plus the tolerance).",
    )
    promote_tolerance: float = Field(
        0.0,
        ge=0,
        title="Promotion tolerance",
        description="How much higher than the latest run's test RMSE a run's may be and "
        "still be promoted.",
    )
    timeout: float | None = _timeout("publishing")


class PipelineConfig(_Stage):
    """The options of each stage; each field shows its default."""

    # default_factory, not an instance: an instance default would put every stage's full
    # default (None included) into the form as one value, over the fields' own defaults.
    model_config = ConfigDict(title="Options")

    ingest: IngestConfig = Field(default_factory=IngestConfig, title="Ingest")
    train: TrainConfig = Field(default_factory=TrainConfig, title="Training")
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, title="Evaluation")
    publish: PublishConfig = Field(default_factory=PublishConfig, title="Publishing")
