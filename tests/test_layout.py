"""The direction of every import, as the layout promises (README, "The house").

    core/      torch-free facts: standard library and pydantic only; imports neither side
    app/       the service (API, data layer): imports core, never workers or cli
    workers/   the engine (compression, evaluation, data, models, pipeline): core only;
               the Celery side (tasks, celery_app): core, the engine and the service's data layer
    cli/       the one package allowed to import both

Every import statement is read from the source (module level and inside functions), so a lazy
import cannot hide a wrong direction.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("core", "app", "workers", "cli", "bench", "tests")
# The service's data layer: what a worker may use to claim jobs, store artifacts and send webhooks.
DATA_LAYER = ("app.db", "app.storage", "app.settings", "app.queue", "app.schemas", "app.services")
CELERY_SIDE = ("workers.tasks", "workers.celery_app")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _package_imports(package: str) -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted((ROOT / package).rglob("*.py"))}


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def test_core_imports_only_the_standard_library_pydantic_and_itself() -> None:
    allowed = set(sys.stdlib_module_names) | {"pydantic", "core", "__future__"}
    imports = _package_imports("core")
    bad = {m: sorted(i for i in imps if _top(i) not in allowed) for m, imps in imports.items()}
    assert {m: i for m, i in bad.items() if i} == {}


def test_app_never_imports_the_workers_or_the_cli() -> None:
    bad = {m: sorted(i for i in imps if _top(i) in ("workers", "cli", "torch", "transformers"))
           for m, imps in _package_imports("app").items()}
    assert {m: i for m, i in bad.items() if i} == {}


def test_the_engine_never_imports_the_service_and_the_celery_side_only_its_data_layer() -> None:
    for module, imps in _package_imports("workers").items():
        ours = {i for i in imps if _top(i) in ("app", "cli")}
        if _within(module, CELERY_SIDE):
            assert {i for i in ours if not _within(i, DATA_LAYER)} == set(), module
        else:
            assert ours == set(), f"{module} (engine) imports the service: {sorted(ours)}"


def test_nothing_but_the_cli_imports_the_cli() -> None:
    for package in ("core", "app", "workers"):
        for module, imps in _package_imports(package).items():
            assert not any(_top(i) == "cli" for i in imps), module


@pytest.mark.parametrize("module", ["app.main", "core.methods", "core.hub", "core.macs"])
def test_importing_the_api_or_the_core_loads_neither_torch_nor_transformers(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'numpy', 'workers') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
