"""The ``cfpipe`` command: every stage ad hoc, and the whole pipeline, as Prefect flows."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import typer

from cflib import schema
from cflib.config import (
    EvaluateConfig,
    IngestConfig,
    PipelineConfig,
    PublishConfig,
    SynthConfig,
    TrainConfig,
)
from cflib.errors import CfpipeError
from cflib.evaluate import report
from cflib.evaluate.summary import tuning_words
from cflib.train import stop
from flows.app import prepare
from flows.app.deploy_commands import deploy_app, server
from flows.app.options import RUN_OPTIONS, config_options, pipeline_config
from flows.app.registry_commands import models_app, predict, recommend
from flows.native_logs import VERBOSE_ENV

app = typer.Typer(
    name="cfpipe",
    help="Raw rating dumps -> trained, evaluated, published rating-prediction models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
synth_app = typer.Typer(help="Generate datasets with planted structure.", no_args_is_help=True)


@app.callback()
def _global_options(
    verbose: bool = typer.Option(
        False, "--verbose", help="Also show TensorFlow's native start-up lines (CUDA, absl)."
    ),
) -> None:
    """Raw rating dumps -> trained, evaluated, published rating-prediction models."""
    if verbose:
        os.environ[VERBOSE_ENV] = "1"


app.add_typer(synth_app, name="synth")
app.add_typer(deploy_app, name="deploy")
app.command("server")(server)
app.add_typer(models_app, name="models")
app.command()(predict)
app.command()(recommend)

#: Exit status of a command whose stage reached its --timeout (as GNU timeout's).
TIMED_OUT = 124
DEMO_SYNTH = SynthConfig(movies=400, users=3_000, ratings=300_000, probe_fraction=0.05)


def _echo_kv(title: str, rows: dict[str, Any]) -> None:
    typer.echo(title)
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        typer.echo(f"  {key:<{width}}  {value}")


def _generate(out: Path, cfg: SynthConfig) -> dict[str, Any]:
    """``generate_netflix`` with a progress bar over movies when stderr is a terminal."""
    from rich.progress import Progress

    from cflib.synth import generate_netflix

    with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(f"generating {cfg.ratings:,} ratings", total=cfg.movies)
        return generate_netflix(
            out, cfg, progress=lambda done, _total: bar.update(task, completed=done)
        )


@synth_app.command("netflix")
@config_options(SynthConfig, param="cfg")
def synth_netflix(
    out: Path = typer.Argument(..., help="Directory to create (must not exist or be empty)."),
    *,
    cfg: SynthConfig,
) -> None:
    """Write a Netflix Prize-format directory with a planted model and truth.json."""
    truth = _generate(out, cfg)
    _echo_kv(
        f"wrote {out}",
        {
            "ratings": f"{truth['n_ratings']:,}",
            "probe": f"{truth['n_probe']:,}",
            "qualifying": f"{truth['n_qualifying']:,}",
            "oracle probe RMSE": f"{truth['oracle_rmse_probe']:.4f}",
        },
    )


@app.command()
@config_options(IngestConfig, param="cfg")
def ingest(
    source: Path = typer.Argument(
        ..., help="Source directory: Netflix Prize or MovieLens (100K, 1M, CSV)."
    ),
    out: Path = typer.Option(..., "--out", help="Dataset directory to write."),
    *,
    cfg: IngestConfig,
) -> None:
    """Parse a source directory into partitioned Parquet with dense ids and splits."""
    from cflib.ingest.source import find_source
    from flows.runtime import started

    find_source(source, cfg.format)  # Fail fast, before any server or cluster starts.
    with started(tensorflow=False) as server_ready:
        from flows.ingest import run_ingest

        server_ready()
        result = run_ingest(str(source), str(out), cfg)
    _print_ingest(result, out)


def _print_ingest(result: dict[str, Any], out: Path) -> None:
    if result.get("up_to_date"):
        typer.echo(f"{result['out']} is up to date (fingerprint {result['fingerprint'][:12]})")
        return
    splits, bad = result["splits"], result["quarantined"]
    _echo_kv(
        f"dataset {result['name']}",
        {
            "users": f"{result['n_users']:,}",
            "items": f"{result['n_items']:,}",
            **{f"{k} ratings": f"{v['rows']:,}" for k, v in splits.items()},
            "quarantined": f"{bad:,} line{'' if bad == 1 else 's'}"
            + (f" (see {out / schema.QUARANTINE_FILE})" if bad else ""),
            **(
                {"Dask report": str(out / schema.PERFORMANCE_REPORT_FILE)}
                if (out / schema.PERFORMANCE_REPORT_FILE).is_file()
                else {}
            ),
        },
    )


@app.command()
@config_options(TrainConfig, param="cfg")
def train(
    data: Path = typer.Argument(..., help="Dataset directory written by `cfpipe ingest`."),
    out: Path = typer.Option(
        ..., "--out", help="Run directory to create, or an interrupted run's to resume."
    ),
    run_id: str | None = typer.Option(None, "--run-id", help="Run id (default: time-based)."),
    *,
    cfg: TrainConfig,
) -> None:
    """Train a model on an ingested dataset (one device, MirroredStrategy or multi-worker)."""
    from cflib.train.preflight import check_inputs
    from flows.runtime import started

    # Fail fast, before a Prefect server starts. The options go on as given: training
    # resolves them, and searches those left unset (--tune).
    check_inputs(data, cfg)
    with started(tensorflow=True) as server_ready:
        from flows.train import run_train

        server_ready()
        summary = run_train(str(data), str(out), cfg, run_id)
    _echo_kv(
        f"run {summary['run_id']} in {out}",
        {
            "model": summary["model"],
            "epochs": summary["epochs_run"],
            "validation RMSE": f"{summary['val_rmse']:.4f}",
            "replicas": summary["replicas"],
            "tuned": tuning_words(summary.get("tuning")),
        },
    )


@app.command()
@config_options(EvaluateConfig, param="cfg")
def evaluate(
    run: Path = typer.Argument(..., help="Run directory written by `cfpipe train`."),
    *,
    cfg: EvaluateConfig,
) -> None:
    """Score a run on the test split against the baselines; write metrics.json and reports."""
    from cflib.train import runs
    from flows.runtime import started

    runs.train_summary(run)
    with started(tensorflow=True) as server_ready:
        from flows.evaluate_publish import run_evaluate

        server_ready()
        metrics = run_evaluate(str(run), cfg)
    typer.echo(report.format_table(metrics))
    typer.echo(f"report: {run / schema.REPORT_FILE} and {run / schema.REPORT_HTML_FILE}")
    if metrics.get("qualifying"):
        typer.echo(f"qualifying predictions: {run / metrics['qualifying']['file']}")


@app.command()
@config_options(PublishConfig, param="cfg")
def publish(
    run: Path = typer.Argument(..., help="Evaluated run directory."),
    registry: str = typer.Option(..., "--registry", help="Registry root: a path or fsspec URL."),
    *,
    cfg: PublishConfig,
) -> None:
    """Copy an evaluated run into the registry atomically; move `latest` if it passes the gate."""
    from cflib.registry.store import locate
    from cflib.train import runs
    from flows.runtime import started

    locate(registry)  # A bad URL fails here, before Prefect starts and records it.
    runs.metrics(run)
    with started(tensorflow=True) as server_ready:
        from flows.evaluate_publish import run_publish

        server_ready()
        result = run_publish(str(run), str(registry), cfg)
    typer.echo(f"published {result['artifact']}")
    if result["latest"]:
        typer.echo(f"latest -> {result['latest']} ({result['promotion']['reason']})")
    else:
        typer.echo(f"not promoted: {result['promotion']['reason']}")


def _run_pipeline(source: Path, work: Path, cfg: PipelineConfig, registry: str | None) -> None:
    from cflib.ingest.source import find_source
    from flows.runtime import started

    find_source(source, cfg.ingest.format)
    if registry is not None:
        from cflib.registry.store import locate

        locate(registry)  # A bad URL fails here, before Prefect records it.
    with started(tensorflow=True) as server_ready:
        from flows.pipeline import PipelineParams, pipeline_flow

        params = PipelineParams(
            source=str(source),
            work=str(work),
            registry=None if registry is None else str(registry),
            config=cfg,
        )
        server_ready()
        result = pipeline_flow(params)
    typer.echo("")
    typer.echo(report.format_table(result["metrics"]))
    typer.echo("")
    typer.echo(f"report:   {Path(result['run']) / schema.REPORT_HTML_FILE}")
    published = result["published"]
    skipped = " (already published)" if published.get("skipped") else ""
    typer.echo(f"artifact: {published['artifact']}{skipped}")
    if published["latest"]:
        typer.echo(f"latest:   {published['latest']}")
    elif published.get("promotion"):
        typer.echo(f"not promoted: {published['promotion']['reason']}")


@app.command()
@config_options(IngestConfig, param="ingest_cfg", include=RUN_OPTIONS["ingest"])
@config_options(TrainConfig, param="train_cfg", include=RUN_OPTIONS["train"])
@config_options(PublishConfig, param="publish_cfg", include=RUN_OPTIONS["publish"])
def run(
    ctx: typer.Context,
    source: Path = typer.Argument(
        ..., help="Source directory: Netflix Prize or MovieLens (100K, 1M, CSV)."
    ),
    out: Path = typer.Option(..., "--out", help="Work directory: data/, runs/, registry/."),
    registry: str | None = typer.Option(
        None, "--registry", help="Registry root, a path or fsspec URL (default: OUT/registry)."
    ),
    config: Path | None = typer.Option(
        None, "--config", help="YAML or JSON file of stage options; options given here win."
    ),
    timeout: float | None = typer.Option(
        None,
        "--timeout",
        help="Time limit of each stage in seconds (default: none); the config file sets one "
        "per stage.",
    ),
    *,
    ingest_cfg: IngestConfig,
    train_cfg: TrainConfig,
    publish_cfg: PublishConfig,
) -> None:
    """Ingest, train, evaluate and publish as one Prefect flow."""
    stages = {"ingest": ingest_cfg, "train": train_cfg, "publish": publish_cfg}
    _run_pipeline(source, out, pipeline_config(ctx, stages, timeout, config), registry)


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-work"), "--out", help="Work directory of the demo."),
) -> None:
    """Generate a small Netflix-format dataset and run the whole pipeline on it."""
    source = out / "source"
    if not (source / "truth.json").is_file():
        typer.echo(f"generating {DEMO_SYNTH.ratings:,} ratings in {source} ...")
        _generate(source, DEMO_SYNTH)
    _run_pipeline(source, out, PipelineConfig(ingest=IngestConfig(name="netflix-demo")), None)


def _set_process_defaults() -> None:
    """Environment defaults of a ``cfpipe`` process, set before TensorFlow or Prefect load.

    Each is a default: a value already in the environment wins.
    """
    # Quiet TensorFlow's C++ start-up logs (a CUDA build logs cuInit errors on CPU machines).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Dask's per-worker start/stop chatter at INFO would bury the flow's own progress.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    # cflib's progress lines (training epochs, ...) go to the flow runs' logs in the Prefect
    # UI too; outside a run they stay on the console only. Read when Prefect is imported.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "cflib")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    # The temporary Prefect server migrates a new database at its first start: 25 s or more
    # on a loaded 2-core machine, past Prefect's 20 s default, which failed whole runs
    # ("Timed out while attempting to connect to ephemeral Prefect API server").
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


def _log_cflib_info() -> None:
    """Show cflib's INFO progress lines; other libraries keep their own logging set-up."""
    logger = logging.getLogger("cflib")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s | %(levelname)-7s | %(message)s", "%H:%M:%S")
        )
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI; user errors print one line and exit with status 2, system
    errors (a full disk, a read-only directory) one line and status 1, a stage past its
    ``--timeout`` one line and status 124."""
    _set_process_defaults()
    _log_cflib_info()
    args = sys.argv[1:] if argv is None else argv
    flows_run = prepare.runs_flows(args)  # predict, models, ...: no Prefect import
    if flows_run:
        prepare.quiet_prefect_console()
    from flows import supervise
    from flows.limits import TimeLimitReached

    # SIGINT, SIGTERM: stop the tree; the temporary server dies with us. A served
    # deployment's runner handles its own signals (it pauses its deployments).
    with supervise.installed(signals=args[:1] != ["deploy"], server=flows_run):
        try:
            result = app(args=argv, standalone_mode=False)
        except CfpipeError as exc:
            typer.echo(f"cfpipe: error: {exc}", err=True)
            return 2
        except typer.TyperException as exc:  # Option parsing: usage errors and --help.
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            if not message.strip():  # A group called with no command: help is already shown.
                return 0
            typer.echo(f"cfpipe: error: {message}", err=True)
            return int(getattr(exc, "exit_code", 2))
        except TimeLimitReached as exc:  # a stage's --timeout; a TimeoutError, so before OSError
            supervise.print_last(f"cfpipe: error: {exc.message}")
            return TIMED_OUT
        except OSError as exc:  # the machine, not the input: a full disk, a read-only mount
            where = f"{exc.filename}: " if exc.filename else ""
            if exc.filename2:  # a copy or a rename: from where to where
                where = f"{exc.filename} -> {exc.filename2}: "
            typer.echo(f"cfpipe: error: {where}{exc.strerror or exc}", err=True)
            return 1
        except stop.TrainingInterrupted as exc:  # a signal to the training's process alone
            typer.echo(f"cfpipe: error: {exc}; rerun the same command to resume", err=True)
            return 1
        except (typer.Abort, KeyboardInterrupt):  # typer.Abort: Ctrl-C at a prompt
            return supervise.report(supervise.interrupted_by(signal.SIGINT))
        except BaseException as exc:
            if isinstance(exc, supervise.Interrupted) or prepare.is_termination_signal(exc):
                return supervise.report(supervise.interrupted_by(exc))
            raise
        return result if isinstance(result, int) else 0


def entrypoint() -> None:
    """The console script."""
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
