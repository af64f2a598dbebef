"""Method parameters are validated at submit against the catalogue: 422 with the field, nothing queued."""

from __future__ import annotations

import httpx
import pytest

from tests import factories
from tests.factories import job_body
from tests.service.helpers import PROBLEM


def _jobs(client: httpx.Client) -> list[str]:
    return [j["id"] for j in client.get("/v1/jobs", params={"limit": 100}).json()["data"]]


@pytest.mark.parametrize(
    ("method", "params", "field"),
    [
        ("id", {"bogus": 1}, "method.params.bogus"),
        ("id", {"damping": "a lot"}, "method.params.damping"),
        ("id", {"damping": -1}, "method.params.damping"),
        ("id", {"min_keep": 2.0}, "method.params.min_keep"),
        ("svd", {"allocation": "sideways"}, "method.params.allocation"),
        ("svd", {"activation_aware": "perhaps"}, "method.params.activation_aware"),
        ("magnitude", {"version": 7}, "method.params.version"),
        ("block_lowrank", {"grid": [2]}, "method.params.grid.1"),  # the missing side
        ("block_lowrank", {"grid": [0, 2]}, "method.params.grid.0"),
        ("block_lowrank", {"rank": 4}, "method.params.rank"),
        ("monarch", {"blocks": 1}, "method.params.blocks"),
        ("monarch", {"max_blocks": "many"}, "method.params.max_blocks"),
        ("mpo", {"cores": 1}, "method.params.cores"),
        ("mpo", {"bond": 0}, "method.params.bond"),
    ],
)
def test_bad_method_params_are_refused_at_submit(
    client_a: httpx.Client, dataset_id: str, method: str, params: dict, field: str  # type: ignore[type-arg]
) -> None:
    before = _jobs(client_a)
    body = job_body(dataset_id, method={"name": method, "params": params})
    response = client_a.post("/v1/jobs", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    problem = response.json()
    assert problem["code"] == "invalid_spec" and problem["field"] == field, problem
    assert _jobs(client_a) == before


def test_nan_damping_is_refused(client_a: httpx.Client, dataset_id: str) -> None:
    raw = job_body(dataset_id, method={"name": "id", "params": {"damping": 0.0}})
    text = httpx.Request("POST", "/", json=raw).content.decode().replace('"damping": 0.0', '"damping": NaN')
    text = text.replace('"damping":0.0', '"damping":NaN')
    assert "NaN" in text
    response = client_a.post("/v1/jobs", content=text, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "method.params.damping"


def test_unknown_method_names_the_available_ones(client_a: httpx.Client, dataset_id: str) -> None:
    response = client_a.post("/v1/jobs", json=job_body(dataset_id, method={"name": "prune-it-all"}))
    assert response.status_code == 422
    assert response.json()["field"] == "method.name" and "id, svd, magnitude" in response.json()["detail"]


def test_good_params_are_accepted_and_echoed(client_a: httpx.Client, dataset_id: str) -> None:
    params = {"allocation": "uniform", "damping": 0.02}
    response = client_a.post("/v1/jobs", json=job_body(dataset_id, method={"name": "id", "params": params}))
    assert response.status_code == 202, response.text
    assert response.json()["method"] == {"name": "id", "params": params}
    client_a.post(f"/v1/jobs/{response.json()['id']}/cancel")


def test_estimates_validate_params_too(client_a: httpx.Client) -> None:
    body = {"model": {"id": factories.TINY_BERT}, "method": {"name": "svd", "params": {"rank": 3}},
            "target": {"mac_ratio": 0.5}}
    response = client_a.post("/v1/estimates", json=body)
    assert response.status_code == 422 and response.json()["field"] == "method.params.rank", response.text
