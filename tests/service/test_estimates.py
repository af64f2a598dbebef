"""POST /v1/estimates never answers 500: every config the hub lets through and every target in
(0, 1] gets an estimate or a 422 problem+json with a stable code.

Extra models are placed in the session's HF cache (the API subprocess reads it at request time)
with configs that pass the hub's trust rules but cannot be estimated: fields missing, sizes that
do not divide, sizes beyond float arithmetic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import factories
from tests.service.helpers import assert_problem

BERT = {
    "model_type": "bert", "architectures": ["BertModel"], "vocab_size": 64, "hidden_size": 32,
    "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
}
LLAMA = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 64, "hidden_size": 32,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64,
}
BROKEN = {
    "no-intermediate": {k: v for k, v in BERT.items() if k != "intermediate_size"},
    "no-layers": {k: v for k, v in BERT.items() if k != "num_hidden_layers"},
    "heads-do-not-divide": {**BERT, "num_attention_heads": 5},
    "kv-heads-do-not-divide": {**LLAMA, "num_key_value_heads": 3},
    "zero-kv-heads": {**LLAMA, "num_key_value_heads": 0},
    "string-size": {**BERT, "hidden_size": "32"},
    "float-size": {**BERT, "intermediate_size": 64.5},
    "boolean-size": {**BERT, "num_attention_heads": True},
    "huge-sizes": {**BERT, "hidden_size": 4 * 10**200, "intermediate_size": 10**200},
}


@pytest.fixture(scope="module")
def estimate_models(hf_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Hub ids of the configs above (and of two sound ones), placed in the session's cache."""
    import numpy as np
    from safetensors.numpy import save_file

    from workers.models import place_in_cache

    ids = {}
    for name, config in {**BROKEN, "sound-bert": BERT, "sound-llama": LLAMA}.items():
        src = tmp_path_factory.mktemp(name)
        (src / "config.json").write_text(json.dumps(config))
        save_file({"unread": np.zeros(1, dtype=np.float32)}, str(src / "model.safetensors"))  # never read
        ids[name] = f"pare-test/estimate-{name}"
        place_in_cache(src, ids[name], hf_home=hf_home)
    return ids


def estimate(client: httpx.Client, model: str, mac_ratio: float, **extra: Any) -> httpx.Response:
    body = {"model": {"id": model}, "target": {"mac_ratio": mac_ratio, "reference_seq_len": 64}, **extra}
    return client.post("/v1/estimates", json=body)


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_config_that_cannot_be_estimated_is_a_422_with_a_code(
    client_a: httpx.Client, estimate_models: dict[str, str], case: str
) -> None:
    body = assert_problem(estimate(client_a, estimate_models[case], 0.5), 422, "model.id")
    assert body["code"] == "model_refused", body


@pytest.mark.parametrize("method", ["id", "magnitude"])
@pytest.mark.parametrize("mac_ratio", [0.0001, 0.01])
def test_a_target_below_the_narrowest_uniform_plan_is_budget_infeasible(
    client_a: httpx.Client, estimate_models: dict[str, str], method: str, mac_ratio: float
) -> None:
    for model in (factories.TINY_BERT, estimate_models["sound-llama"]):
        response = estimate(client_a, model, mac_ratio, method={"name": method})
        body = assert_problem(response, 422, "target.mac_ratio")
        assert body["code"] == "budget_infeasible" and "narrowest uniform plan" in body["detail"], body


@pytest.mark.parametrize("mac_ratio", [0.5, 0.7, 0.9, 1.0])
def test_a_feasible_target_is_estimated_within_it(
    client_a: httpx.Client, estimate_models: dict[str, str], mac_ratio: float
) -> None:
    for model in (estimate_models["sound-bert"], estimate_models["sound-llama"]):
        response = estimate(client_a, model, mac_ratio)
        assert response.status_code == 200, response.text
        planned = response.json()["planned"]
        assert 0 < planned["mac_ratio"] <= mac_ratio + 1e-9
        assert planned["kv_heads_per_layer"] >= 1 and planned["neurons_per_layer"] >= 1


@pytest.mark.parametrize("method", ["svd", "block_lowrank", "monarch", "mpo"])
def test_a_factorising_method_is_estimated_with_the_floor_it_can_reach(
    client_a: httpx.Client, estimate_models: dict[str, str], method: str
) -> None:
    """From the shapes alone (core.macs.least_block_macs): the least kept ratio its cheapest forms
    reach, below the target; the forms themselves are chosen from calibration data at run time."""
    for model in (estimate_models["sound-bert"], estimate_models["sound-llama"]):
        response = estimate(client_a, model, 0.5, method={"name": method})
        assert response.status_code == 200, response.text
        planned = response.json()["planned"]
        assert planned["kinds"] == [method if method != "svd" else "lowrank"]
        assert 0 < planned["floor_mac_ratio"] < 0.5


@pytest.mark.parametrize(("method", "params"), [
    ("monarch", {"blocks": 3}),  # 3 divides no dimension of the model: every matrix stays dense
    ("mpo", {"bond": 64}),  # a fixed bond whose tensor trains cost more than the dense matrices
])
def test_a_target_a_factorising_method_cannot_reach_is_refused_before_queueing(
    client_a: httpx.Client, estimate_models: dict[str, str], method: str, params: dict[str, Any]
) -> None:
    response = estimate(client_a, estimate_models["sound-bert"], 0.5,
                        method={"name": method, "params": params})
    body = assert_problem(response, 422, "target.mac_ratio")
    assert body["code"] == "budget_infeasible" and "cannot go below" in body["detail"], body
