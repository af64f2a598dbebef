"""Property-based run over every operation of the OpenAPI schema (schemathesis strategies driven by
hypothesis directly): no 500s, and every error is problem+json."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

schemathesis = pytest.importorskip("schemathesis")


def test_no_server_errors(api_url: str, key_a: str) -> None:
    schema = schemathesis.openapi.from_dict(httpx.get(f"{api_url}/openapi.json").json())
    headers = {"Authorization": f"Bearer {key_a}"}
    failures: list[str] = []
    calls: list[int] = []
    with httpx.Client(base_url=api_url, headers=headers, timeout=30) as client:
        for result in schema.get_all_operations():
            operation = result.ok()

            @given(case=operation.as_strategy())
            @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def check(case) -> None:  # type: ignore[no-untyped-def]
                response = client.request(
                    case.method,
                    case.formatted_path,
                    params=case.query,
                    json=case.body if case.media_type == "application/json" else None,
                    headers={**(case.headers or {}), **headers},
                )
                calls.append(response.status_code)
                if response.status_code >= 500 and response.status_code != 503:
                    failures.append(
                        f"{case.method} {case.formatted_path} -> {response.status_code} {response.text}"
                    )
                elif response.status_code >= 400:
                    assert response.headers["content-type"].startswith("application/problem+json"), (
                        response.text
                    )

            check()
    assert not failures, failures[:5]
    assert len(calls) >= 50 and any(c < 300 for c in calls) and any(c == 422 for c in calls)
