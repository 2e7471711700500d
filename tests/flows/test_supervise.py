"""``supervise.cancelling``: how a flow run's process tells a Cancel (SIGTERM from the
runner or worker, the run Cancelling in the API) from any other SIGTERM. The real
Cancel, end to end, is ``test_cancel.py``."""

from __future__ import annotations

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run
from prefect.states import Cancelling, Running

from flows import supervise


def _seen_while(run_id: str) -> tuple[bool, bool]:
    """``cancelling()`` while flow run ``run_id`` is Running, then while Cancelling (it
    is set back to Running after, so that the flow run can end)."""
    before = supervise.cancelling()
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run_id, Cancelling(), force=True)
        try:
            return before, supervise.cancelling()
        finally:
            client.set_flow_run_state(run_id, Running(), force=True)


@flow
def _top() -> tuple[bool, bool]:
    return _seen_while(flow_run.id)


@flow
def _sub(root: str) -> tuple[bool, bool]:
    return _seen_while(root)


@flow
def _parent() -> tuple[bool, bool]:
    return _sub(flow_run.id)


def test_a_run_is_cancelling_when_its_root_flow_run_is(prefect_harness: None) -> None:
    assert _top() == (False, True)
    # A subflow (`train` in `pipeline`) looks at the run the runner started.
    assert _parent() == (False, True)
    assert supervise.cancelling() is False  # no flow run at all


def test_the_cancelled_task_run_says_whether_a_rerun_resumes() -> None:
    assert supervise.cancelled_message("train") == (
        "flow run cancelled during train; training stopped at a checkpoint, which a rerun "
        "into the same run resumes from"
    )
    assert supervise.cancelled_message("evaluate") == "flow run cancelled during evaluate"
