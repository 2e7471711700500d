"""Per-stage time limits (``--timeout``): Prefect's ``timeout_seconds`` on a stage's flow,
and the one line a stage ends with when it reaches its limit.

Prefect 3.8 enforces a sync flow's ``timeout_seconds`` with a SIGALRM interval timer when
the flow runs in the main thread (``cfpipe``, a deployment's flow-run process;
``AlarmCancelScope`` in ``prefect._internal.concurrency.cancellation``): the alarm
raises Prefect's ``CancelledError`` (an ``asyncio.CancelledError``, so a BaseException)
wherever the flow's thread is, including a blocking wait such as ``run_in_child``'s
wait for its child, which then stops the child as for SIGTERM. The flow run ends
Failed, named ``TimedOut``, and its call raises ``FlowRunTimeoutError``, which ``call``
turns into :class:`TimeLimitReached`. In any other thread Prefect injects the error
between two bytecodes instead, which does not interrupt a blocking wait.

:func:`shield` holds the alarm's error off until a block ends (a Dask cluster that is
starting); it is Prefect's private ``shield``, kept in ``flows/patches/prefect_shield.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

if TYPE_CHECKING:  # Prefect loads when a flow runs, not when `cfpipe` starts
    from prefect import Flow

P = ParamSpec("P")
R = TypeVar("R")


class TimeLimitReached(TimeoutError):
    """A stage ran past its ``--timeout``; ``message`` is the one line the command prints.

    A TimeoutError, so a parent flow (``pipeline``) ends ``TimedOut`` too, with one line
    and no traceback.
    """

    def __init__(self, stage: str, seconds: float) -> None:
        self.stage = stage
        self.seconds = seconds
        super().__init__(self.message)

    @property
    def message(self) -> str:
        if self.stage == "train":
            hint = "rerun the same command to resume from the last checkpoint"
        else:
            hint = "rerun it with a larger --timeout"
        return f"{self.stage}: time limit of {self.seconds:g} s reached (--timeout); {hint}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.stage, self.seconds))


def call(flow_: Flow[P, R], seconds: float | None, *args: P.args, **kwargs: P.kwargs) -> R:
    """Call the stage flow ``flow_`` with Prefect's ``timeout_seconds`` set to ``seconds``
    (None: no limit).

    Raises:
        TimeLimitReached: the flow run reached its limit (it ends ``TimedOut``).
    """
    from prefect.flow_engine import FlowRunTimeoutError

    if seconds is None:
        return flow_(*args, **kwargs)
    try:
        return flow_.with_options(timeout_seconds=seconds)(*args, **kwargs)
    except FlowRunTimeoutError:
        raise TimeLimitReached(flow_.name, seconds) from None


def reached() -> TimeLimitReached | None:
    """The limit of the flow running in this thread, as a :class:`TimeLimitReached`, if it
    has one (for the task run of a child stopped when the limit fired)."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow is None or ctx.flow.timeout_seconds is None:
        return None
    return TimeLimitReached(ctx.flow.name, ctx.flow.timeout_seconds)


def warn_if_unenforced(seconds: float | None) -> None:
    """In a stage flow: warn when its config's ``timeout`` is not its flow run's limit
    (the flow called or deployed directly rather than through :func:`call`), instead of
    ignoring it silently."""
    from prefect import get_run_logger
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    limit = ctx.flow.timeout_seconds if ctx is not None and ctx.flow is not None else None
    if seconds is not None and limit != seconds:
        get_run_logger().warning(
            "config timeout %g s is not enforced: this flow run was started without it "
            "(run the stage through cfpipe or the pipeline flow, which apply it)",
            seconds,
        )
