"""The Prefect UI in a real browser: Chromium (the system's, from the Debian packages)
driven by Playwright against a real `prefect server` on 127.0.0.1 and `cfpipe deploy
serve`. A custom run is started from the deployment's form as a user would, followed to
Completed, and the parent `pipeline` run's page is checked: its metrics table, and the
report's figures loaded (data: images inside the Markdown artifact)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests import _processes as processes
from tests import _servers as servers
from tests.conftest import write_netflix

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
#: From Submit to a final state, on a shared 2-core machine (about a minute measured).
RUN_DEADLINE_S = 600.0
#: How long the UI may take to show one thing (it polls the API every few seconds).
UI_TIMEOUT_MS = 120_000
#: The run's figures: learning curves, RMSE by user activity and by item popularity, the
#: predicted vs true ratings.
FIGURES = 4


def _chromium() -> str:
    """The system Chromium (Debian's `chromium` package); the test skips without it."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(
        "no system Chromium on PATH (`apt-get install chromium`; `.ci/run` and `make test` "
        "install it where they run as root): the browser test needs it"
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the `playwright` package (the dev extra) is missing"
    )
    with sync_api.sync_playwright() as playwright:
        # The system browser: Playwright downloads none of its own.
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A `prefect server` and `cfpipe deploy serve` over one deployment of the pipeline,
    each a process of this test's own (found again by a marker, ended by pid)."""
    from cflib.config import SynthConfig
    from cflib.synth import generate_netflix

    tmp = tmp_path_factory.mktemp("browser")
    marker = processes.new_marker()
    env = {
        **os.environ,
        processes.MARKER: marker,
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }

    def argv(host: str, port: int) -> list[str]:
        return [sys.executable, "-m", "prefect", "server", "start", f"--host={host}"] + [
            f"--port={port}"
        ]

    server = servers.start(argv, tmp / "prefect-home", env)
    serve = None
    try:
        synth = tmp / "synth"
        generate_netflix(
            synth, SynthConfig(movies=60, users=400, ratings=20_000, probe_fraction=0.05)
        )
        # The deployment's own source (checked by `deploy serve`) is not the one the form
        # gets: the test types the synthetic dataset's path.
        tiny = write_netflix(tmp / "tiny")
        spec = {
            "deployments": [
                {
                    "name": "browser-tiny",
                    "entrypoint": f"{ROOT}/flows/pipeline.py:pipeline_flow",
                    "parameters": {"params": {"source": str(tiny), "work": str(tmp / "unused")}},
                }
            ]
        }
        path = tmp / "deploy" / "prefect.yaml"
        path.parent.mkdir()
        path.write_text(yaml.safe_dump(spec))
        log = tmp / "serve.log"
        serve_env = {**env, "PREFECT_HOME": str(server.home), "PREFECT_API_URL": server.api_url}
        with log.open("wb") as out:
            serve = subprocess.Popen(
                [sys.executable, "-m", "flows.app", "deploy", "serve", "--prefect-file", str(path)],
                env=serve_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=ROOT,
            )
        yield {"url": server.url, "synth": synth, "tmp": tmp, "log": log, "serve": serve}
    finally:
        if serve is not None:
            servers.stop(serve)
        servers.stop(server.proc)
        processes.kill_marked()


def _api(ui: dict[str, Any], method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, f"{ui['url']}/api{path}", timeout=30, **kwargs)
    response.raise_for_status()
    return response.json()


def _deployment_id(ui: dict[str, Any]) -> str:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        found = _api(ui, "POST", "/deployments/filter", json={})
        if found:
            return str(found[0]["id"])
        if ui["serve"].poll() is not None:
            raise AssertionError(f"`cfpipe deploy serve` exited: {ui['log'].read_text()[-3000:]}")
        time.sleep(1)
    raise AssertionError("the deployment never appeared in the API")


def _final_state(ui: dict[str, Any], run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_DEADLINE_S
    while time.monotonic() < deadline:
        state = _api(ui, "GET", f"/flow_runs/{run_id}")["state"]
        if state and state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return dict(state)
        time.sleep(2)
    raise AssertionError(f"flow run {run_id} did not finish in {RUN_DEADLINE_S:.0f} s")


def _artifact(ui: dict[str, Any], run_id: str, key: str) -> dict[str, Any]:
    scope = {"artifacts": {"flow_run_id": {"any_": [run_id]}, "key": {"any_": [key]}}}
    [found] = _api(ui, "POST", "/artifacts/filter", json=scope)
    return dict(found)


@pytest.mark.required_in_ci(
    "the only test of the Prefect UI in a browser (CI runs as root, so make test installs chromium)"
)
def test_custom_run_from_the_form_shows_metrics_and_figures(
    browser: Any, ui: dict[str, Any]
) -> None:
    # `browser` first: without Chromium the test skips before any server starts.
    deployment = _deployment_id(ui)
    work = ui["tmp"] / "work"
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(UI_TIMEOUT_MS)
    try:
        # The deployment's page, its Run menu, Custom run: the form of `params`.
        page.goto(f"{ui['url']}/v2/deployments/deployment/{deployment}")
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text("Custom run", exact=True).click()
        page.wait_for_url(re.compile(r".*/run\b.*"))
        page.get_by_label("Source directory", exact=True).fill(str(ui["synth"]))
        page.get_by_label("Work directory", exact=True).fill(str(work))
        # Small: two epochs, no refit, one Dask worker.
        page.get_by_label(re.compile(r"^Maximum epochs\b")).fill("2")
        refit = page.get_by_label(re.compile(r"^Refit on train\b"))
        if refit.is_checked():
            refit.click()
        page.get_by_label(re.compile(r"^Dask workers\b")).fill("1")
        page.get_by_role("button", name="Submit", exact=True).click()

        # The UI goes back to the deployment and says "<run> scheduled to start now":
        # its "View run" opens the new flow run's page.
        page.get_by_text("View run", exact=True).click()
        page.wait_for_url(re.compile(r".*/runs/flow-run/[0-9a-f-]{36}"))
        run_id = re.findall(r"/runs/flow-run/([0-9a-f-]{36})", page.url)[0]
        params = _api(ui, "GET", f"/flow_runs/{run_id}")["parameters"]["params"]
        assert params["source"] == str(ui["synth"]) and params["work"] == str(work)
        assert params["config"]["train"]["epochs"] == 2
        assert params["config"]["train"]["refit"] is False
        state = _final_state(ui, run_id)
        assert state["type"] == "COMPLETED", (state, ui["log"].read_text()[-3000:])

        # The parent run's page says so, and its Artifacts tab lists its own artifacts.
        page.reload()
        page.get_by_text("Completed", exact=True).first.wait_for()
        page.get_by_role("tab", name="Artifacts").click()
        page.get_by_text("pipeline-metrics", exact=True).wait_for()
        page.get_by_text("pipeline-summary", exact=True).wait_for()

        # The metrics table (its card, then its version): the model first, then the
        # baselines.
        metrics = _artifact(ui, run_id, "pipeline-metrics")
        page.get_by_text("pipeline-metrics", exact=True).click()
        page.get_by_role("link", name=metrics["id"][:8]).click()
        page.wait_for_url(re.compile(f".*/artifacts/artifact/{metrics['id']}.*"))
        first = page.locator("table tbody tr").first
        first.wait_for()
        assert first.locator("td").first.inner_text().strip() == "biased-mf (this run)"
        assert page.locator("table tbody tr").count() >= 5

        # The report with its figures, each loaded (a sanitized or broken image has
        # naturalWidth 0).
        summary = _artifact(ui, run_id, "pipeline-summary")
        page.go_back()
        page.go_back()
        page.get_by_text("pipeline-summary", exact=True).click()
        page.get_by_role("link", name=summary["id"][:8]).click()
        page.wait_for_url(re.compile(f".*/artifacts/artifact/{summary['id']}.*"))
        figures = page.locator('img[src^="data:image/png"]')
        figures.nth(FIGURES - 1).wait_for()
        page.wait_for_function(
            "n => [...document.images].filter(i => i.src.startsWith('data:image/png')"
            " && i.complete && i.naturalWidth > 0).length >= n",
            arg=FIGURES,
        )
        sizes = figures.evaluate_all("els => els.map(e => [e.alt, e.naturalWidth])")
        assert [alt for alt, _ in sizes] == [
            "Learning curves",
            "RMSE by user activity",
            "RMSE by item popularity",
            "Predicted vs true ratings",
        ]
        assert all(width > 0 for _, width in sizes), sizes
        assert page.get_by_text("Test metrics", exact=True).count() >= 1
    except BaseException:
        page.screenshot(path=str(ui["tmp"] / "failure.png"), full_page=True)
        raise
    finally:
        page.close()
