"""Adding a method is one module registered in one place (tests/catalogue/toy_method.py), and the
method then appears everywhere methods appear: the CLI's choices, the API schema, capabilities,
submit-time parameter validation and the engine contract tests, with no other file touched."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from cli.main import main
from core import methods as catalogue

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = "tests.catalogue.toy_method"


@pytest.fixture
def toy() -> Iterator[catalogue.MethodInfo]:
    import tests.catalogue.toy_method as module

    catalogue.register(module.INFO)  # idempotent when the import just registered it
    yield module.INFO
    catalogue.unregister("toy")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/pare.db", storage_url=str(tmp_path / "artifacts"),
        auth=False, reaper_interval_seconds=0,
    )
    with TestClient(create_app(settings, reaper=False)) as c:
        yield c


def test_unregistered_the_toy_is_unknown_everywhere(client: TestClient) -> None:
    assert "toy" not in catalogue.names()
    assert "toy" not in CliRunner().invoke(main, ["compress", "--help"]).output
    ids = [m["id"] for m in client.get("/v1/capabilities").json()["methods"]]
    assert ids == list(catalogue.names()) and "toy" not in ids


def test_the_cli_offers_it(toy: catalogue.MethodInfo) -> None:
    out = CliRunner().invoke(main, ["compress", "--help"]).output
    assert "toy" in out.replace("\n", " ")
    refused = CliRunner().invoke(main, ["compress", "--model", "m", "--method", "toy", "--mac-target", "0.5",
                                        "--calibration", "c.txt", "--out", "o", "--param", "offset=-1"])
    assert refused.exit_code == 2 and "offset" in refused.output


def test_the_api_schema_and_capabilities_list_it(toy: catalogue.MethodInfo, client: TestClient) -> None:
    schema = client.get("/openapi.json").json()  # built on first request, after the toy registered
    enum = schema["components"]["schemas"]["MethodSpec"]["properties"]["name"]["enum"]
    assert "toy" in enum and set(catalogue.names()) == set(enum)
    toy_entry = next(m for m in client.get("/v1/capabilities").json()["methods"] if m["id"] == "toy")
    assert toy_entry["params"]["properties"]["offset"]["minimum"] == 0
    assert toy_entry["defaults"]["allocation"] == "uniform" and toy_entry["data"] == "none"


def test_contract_tests_pick_it_up_and_it_passes_them() -> None:
    """The engine contract tests, run with the toy module as a plugin, include and pass `toy`."""
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", PLUGIN, "-q",
           "tests/engine/test_contract.py", "-k", "toy", "-m", "not slow"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = proc.stdout.strip().splitlines()[-1]
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 8 * 3, summary  # 8 architectures, several toy contract tests each
