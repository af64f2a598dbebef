"""One Settings object for the API, the workers and the CLI; every field reads a PARE_* variable."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Environment-driven configuration. Defaults give the embedded mode under ./var."""

    model_config = SettingsConfigDict(env_prefix="PARE_", extra="ignore")

    database_url: str = "sqlite:///./var/pare.db"
    broker_url: str | None = None  # None: `pare serve` runs jobs in-process (embedded mode)
    storage_url: str = "./var/artifacts"  # a directory, or s3://bucket/prefix
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    work_dir: Path = Path("./var/work")
    # Folders the API may serve as models besides the HF cache: <model_root>/<org>/<name>. Off by default.
    model_root: Path | None = None

    auth: bool = True  # False: every request is tenant "local" (development only)
    key_cache_seconds: float = Field(default=5.0, ge=0)  # API key -> tenant cache; a revocation lags this
    job_cache_seconds: float = Field(default=1.0, ge=0)  # GET /v1/jobs/{id} bodies may be this old
    max_upload_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)  # JSON bodies (uploads: max_upload_bytes)
    max_num_samples: int = Field(default=8192, gt=0)
    max_seq_length: int = Field(default=8192, gt=0)
    max_jobs_page: int = 100
    # per-tenant limits (app.services.quotas); 0 turns one off
    max_active_jobs_per_tenant: int = Field(default=0, ge=0)
    max_storage_bytes_per_tenant: int = Field(default=0, ge=0)
    rate_limit_per_second: float = Field(default=0.0, ge=0)
    rate_limit_burst: int = Field(default=50, ge=1)
    retention_days: float = Field(default=0.0, ge=0)  # >0: datasets and artifacts older than this are deleted

    queue: str = "gpu"
    max_attempts: int = Field(default=3, ge=1)
    lease_seconds: float = Field(default=120.0, gt=0)
    heartbeat_seconds: float = Field(default=15.0, gt=0)
    reaper_interval_seconds: float = 15.0  # 0 disables the reaper loop in `pare serve`
    republish_after_seconds: float = 600.0  # queued this long without a claim: publish again
    visibility_timeout_seconds: int = 48 * 3600  # above the longest job (Redis redelivers after it)
    broker_key_prefix: str = ""  # isolates several deployments (or test runs) on one Redis
    event_interval_seconds: float = 1.0  # progress events are written at most this often
    cancel_poll_seconds: float = 0.5
    device: str = "auto"

    webhook_max_attempts: int = Field(default=5, ge=1)
    webhook_backoff_seconds: float = 1.0  # doubled after each failed attempt
    webhook_timeout_seconds: float = 10.0
    # networks (CIDRs) webhooks may reach although private/loopback/link-local; none by default
    webhook_allow_networks: list[str] = Field(default_factory=list)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
