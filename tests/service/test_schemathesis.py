"""Schemathesis over the whole OpenAPI document of the running API, as CI runs it: every operation, with a
valid API key and without one, positive and negative data, the examples, coverage, fuzzing and stateful
phases (following the document's links), every default check. Bounded in examples and in seconds;
zero failures.

The engine is schemathesis' own (`schemathesis.engine`, what `st run` drives), so the phases, the
checks and their de-duplication are the CLI's. What the test adds:

- its own `pare serve` publishing to a queue no worker reads, and a tenant of its own: the fuzzer's
  jobs stay queued (no GPU, no worker) even when the session's test worker runs, and other tests'
  job listings never see them; they are cancelled at the end;
- a model id, a dataset id and a webhook host name resources no schema can enumerate (what the
  model cache holds, what this tenant uploaded, which hosts resolve), so positive job and estimate
  bodies name the ones this session has, and each positive submission gets a fresh Idempotency-Key
  (a key reused with another body is refused with 422, as the Idempotency-Key draft says);
- files of the dataset formats for the upload's parts (`schemathesis.openapi.media_type`);
- two refusals of schema-valid data are waived, and counted: `budget_infeasible`, the least MAC
  ratio a method reaches depends on the model's shapes, known only once its config is read; and
  `metric_not_evaluated`, a quality target whose metric no evaluation task of the job measures.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import strategies as st

from tests import factories, reliability
from tests.service import helpers

schemathesis = pytest.importorskip("schemathesis")

from schemathesis.engine import Status, events  # noqa: E402
from schemathesis.openapi.checks import RejectedPositiveData  # noqa: E402

# (max examples per operation and pass, seconds) of each run. With a time limit the engine runs the
# examples and coverage phases once, then fuzzing and stateful passes in turn until the time is spent
# (stateful keeps a share of it): each run takes its seconds.
BUDGET = {"authenticated": (15, 120), "anonymous": (3, 30)}
REFERENCING = {"POST /v1/jobs", "POST /v1/estimates"}
WEBHOOK = "http://127.0.0.1:9/pare-webhook"  # loopback is allowed in the service tests; nothing listens
# refusals of schema-valid data that no schema states: the least MAC ratio a method reaches depends
# on the model's shapes, and a quality target's metric must be measured by one of the job's
# evaluation tasks (a rule across two properties of the body)
MODEL_DEPENDENT = {"budget_infeasible", "metric_not_evaluated"}


def _register_upload_formats() -> None:
    """Files of the dataset formats for the upload's parts (the document lists them as the part's
    Content-Type; a format's content is more than a schema says: UTF-8 lines, JSON objects, a header)."""
    line = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1)
    lines = st.lists(line.filter(str.strip), min_size=1, max_size=5)
    cells = st.lists(line.map(lambda x: x.replace(",", " ").replace('"', " ")).filter(str.strip), min_size=1)
    records = st.lists(st.dictionaries(st.text(max_size=8), st.text(max_size=8)), min_size=1, max_size=5)
    formats = {
        "text/plain": lines.map("\n".join),
        "application/jsonl": records.map(lambda rows: "\n".join(json.dumps(r) for r in rows)),
        "text/csv": cells.map(lambda rows: "text\n" + "\n".join(rows)),
        "text/tab-separated-values": lines.map(lambda rows: "text\n" + "\n".join(rows)),
    }
    for media_type, text in formats.items():
        schemathesis.openapi.media_type(media_type, text.map(str.encode))


@dataclass
class Outcome:
    """One engine run: cases sent, failures by (operation, check, status, problem code and field)."""

    cases: int = 0
    waived: int = 0
    seconds: float = 0.0
    stop_reason: str = ""
    phases: dict[str, list[float]] = field(default_factory=dict)  # phase -> [cases, seconds]
    failures: dict[tuple[str, str, int | None, str], str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, recorder: Any, phase: str) -> None:
        self.cases += len(recorder.cases)
        self.phases.setdefault(phase, [0, 0.0])[0] += len(recorder.cases)
        self.waived += sum(recorder.filtered_failures.values())
        for case_id, checks in recorder.checks.items():
            for check in checks:
                if check.status == Status.FAILURE and check.failure_info is not None:
                    self._add_failure(recorder, case_id, check)

    def _add_failure(self, recorder: Any, case_id: str, check: Any) -> None:
        interaction = recorder.interactions.get(case_id)
        response = interaction.response if interaction is not None else None
        status = response.status_code if response is not None else None
        node = recorder.cases.get(case_id)
        label = node.value.operation.label if node is not None else recorder.label
        key = (label, check.name, status, _problem_code(response))
        if key not in self.failures:
            body = response.text[:300] if response is not None else ""
            self.failures[key] = (
                f"{label} [{check.name}] {check.failure_info.failure.title} -> {status} {body}\n"
                f"    {check.failure_info.code_sample}"
            )


def _problem_code(response: Any) -> str:
    """The problem's code and field ("invalid_request:calibration.dataset"), or ""."""
    try:
        body = response.json() if response is not None else None
    except Exception:  # noqa: BLE001 - not JSON
        return ""
    return f"{body.get('code', '')}:{body.get('field', '')}" if isinstance(body, dict) else ""


@pytest.fixture(scope="module")
def fuzz_api(env: dict[str, str], root: Path) -> Iterator[str]:
    """`pare serve` as `api_url` runs it, publishing to a queue of its own that no worker consumes."""
    port = helpers.free_port()
    log = root / "api-schemathesis.log"
    proc = helpers.start(
        [*helpers.PARE, "serve", "--port", str(port), "--no-migrate", "--log-level", "warning"],
        env={**env, "PARE_QUEUE": f"{env['PARE_QUEUE']}_schemathesis"},
        cwd=root,
        log=log,
    )
    url = f"http://127.0.0.1:{port}"
    helpers.wait_http(f"{url}/healthz", proc, log)
    yield url
    helpers.stop(proc)


@pytest.fixture(scope="module")
def fuzz_client(fuzz_api: str, settings: Any) -> Iterator[httpx.Client]:
    """A client of a tenant of its own; its unfinished jobs are cancelled at the end."""
    key = factories.make_key(settings, f"schemathesis-{secrets.token_hex(3)}")
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=fuzz_api, headers=headers, timeout=30) as client:
        yield client
        _cancel_queued(client)


def _cancel_queued(client: httpx.Client) -> None:
    while True:
        page = client.get("/v1/jobs", params={"status": "queued", "limit": 100}).json()
        for job in page["data"]:
            client.post(f"/v1/jobs/{job['id']}/cancel")
        if not page["data"]:
            return


def _config(api_url: str, key: str | None, max_examples: int, max_time: int) -> Any:
    project: dict[str, Any] = {
        "seed": 15,
        "max-time": max_time,
        "base-url": api_url,
        "request-timeout": 10,
        "workers": 1,
        "generation": {"mode": "all", "max-examples": max_examples, "database": "none"},
        "phases": {"stateful": {"enabled": key is not None, "max-steps": 10}},
    }
    if key is not None:
        project["auth"] = {"openapi": {"HTTPBearer": {"bearer": key}}}
    return schemathesis.Config.from_dict(project)


def _run(api_url: str, *, key: str | None, dataset_id: str, max_examples: int, max_time: int) -> Outcome:
    schema = schemathesis.openapi.from_url(
        f"{api_url}/openapi.json", config=_config(api_url, key, max_examples, max_time)
    )

    @schema.hook("filter_failure")
    def model_dependent(context: Any, failure: Any, case: Any, response: Any) -> bool:
        del context, case
        code = _problem_code(response).split(":", 1)[0]
        return not (isinstance(failure, RejectedPositiveData) and code in MODEL_DEPENDENT)

    def existing_resources(context: Any, case: Any, kwargs: Any) -> None:
        """Positive job and estimate bodies name this session's model, dataset and webhook receiver,
        and each positive submission has an Idempotency-Key of its own."""
        del context, kwargs
        positive = case.meta is not None and case.meta.generation.mode.is_positive
        if case.operation.schema is schema and positive and case.operation.label in REFERENCING:
            _name_existing(case.body, dataset_id)
            key = (case.headers or {}).get("Idempotency-Key")
            if key:
                case.headers["Idempotency-Key"] = f"{key[:150]}.{case.id}"

    schemathesis.hook("before_call")(existing_resources)  # only a global hook sees every phase's calls
    outcome = Outcome()
    started: dict[str, float] = {}
    try:
        for event in schemathesis.engine.from_schema(schema).execute():
            if isinstance(event, events.ScenarioFinished):
                outcome.add(event.recorder, str(event.phase))
            elif isinstance(event, events.PhaseStarted):
                started[str(event.phase.name)] = event.timestamp
            elif isinstance(event, events.PhaseFinished) and str(event.phase.name) in started:
                phase = str(event.phase.name)
                outcome.phases.setdefault(phase, [0, 0.0])[1] += event.timestamp - started.pop(phase)
            elif isinstance(event, events.NonFatalError):
                outcome.errors.append(f"{event.label}: {event.value!r}")
            elif isinstance(event, events.FatalError):
                outcome.errors.append(repr(event.exception))
            elif isinstance(event, events.EngineFinished):
                outcome.errors.extend(repr(failure) for failure in event.failures)
                outcome.seconds, outcome.stop_reason = event.running_time, str(event.stop_reason)
    finally:
        schemathesis.hooks.unregister(existing_resources)
    return outcome


def _name_existing(body: Any, dataset_id: str) -> None:
    if not isinstance(body, dict):
        return
    body["model"] = {"id": factories.TINY_BERT}
    calibration = body.get("calibration")
    if isinstance(calibration, dict):
        calibration["dataset"] = dataset_id
    for task in body.get("evaluation") or []:
        if isinstance(task, dict) and task.get("dataset") is not None:
            task["dataset"] = dataset_id
    if isinstance(body.get("webhook"), dict):
        body["webhook"]["url"] = WEBHOOK


def test_the_whole_schema_with_and_without_a_key(fuzz_api: str, fuzz_client: httpx.Client) -> None:
    _register_upload_formats()
    dataset_id = factories.upload_dataset(fuzz_client, factories.calibration_lines().encode(), "calib.jsonl")
    key = fuzz_client.headers["Authorization"].removeprefix("Bearer ")
    start = time.monotonic()
    outcomes = {
        name: _run(fuzz_api, key=k, dataset_id=dataset_id, max_examples=examples, max_time=seconds)
        for (name, (examples, seconds)), k in zip(BUDGET.items(), (key, None), strict=True)
    }
    elapsed = time.monotonic() - start
    cases = sum(o.cases for o in outcomes.values())
    waived = sum(o.waived for o in outcomes.values())
    failures = [f"({name}) {text}" for name, o in outcomes.items() for text in o.failures.values()]
    errors = [f"({name}) {text}" for name, o in outcomes.items() for text in o.errors]
    reliability.record(
        "API contract",
        test="tests/service/test_schemathesis.py",
        cases=cases,
        failures=len(failures) + len(errors),
        waived=waived,
        seconds=round(elapsed, 1),
    )
    for name, o in outcomes.items():
        print(f"schemathesis {name}: {o.cases} cases in {o.seconds:.0f} s ({o.stop_reason}) {o.phases}")
    print(f"schemathesis: {cases} cases, {len(failures)} failures, {len(errors)} errors, {waived} waived")
    assert cases > 1000 and all(o.cases for o in outcomes.values()), outcomes
    assert outcomes["authenticated"].phases.get("stateful", [0])[0] > 0, "the stateful phase did not run"
    assert not errors, "\n".join(errors)
    assert not failures, "\n".join(failures)
