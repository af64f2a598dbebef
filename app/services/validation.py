"""Checks made before a job is queued: the model's config is read, datasets must exist, limits hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Dataset
from app.errors import InvalidRequest, MetricNotEvaluated
from app.schemas import EstimateRequest, JobRequest
from app.services import egress
from app.settings import Settings
from core import hub
from core import methods as catalogue
from core.errors import BudgetInfeasible, InvalidSpec, ModelRefused
from core.evaluation import parse_options
from core.macs import Geometry, block_macs, dense_shape, least_block_macs
from core.macs import estimate as macs_estimate

DATASET_PREFIX = "ds_"


def inspect_model(
    *, model_id: str, revision: str | None, model_root: Path | None = None
) -> tuple[hub.ResolvedModel, hub.ModelInfo]:
    """Resolve and inspect a hub id offline (the cache, then the operator's model root); ids that
    are paths or URLs are refused first."""
    hub.validate_model_id(model_id)
    resolved = hub.resolve_model(model_id, revision, allow_local=False, model_root=model_root)
    return resolved, hub.inspect_model(resolved)


def check_dataset_ref(session: Session, *, tenant_id: str, ref: str, field: str) -> Dataset | None:
    """An uploaded dataset of this tenant (`ds_...`), or None for a syntactically valid hub dataset id."""
    if ref.startswith(DATASET_PREFIX):
        dataset = session.scalars(
            select(Dataset).where(Dataset.id == ref, Dataset.tenant_id == tenant_id)
        ).first()
        if dataset is None:
            raise InvalidRequest(f"dataset {ref!r} does not exist", field=field)
        return dataset
    try:
        hub.validate_model_id(ref)
    except ModelRefused as exc:
        raise InvalidRequest(
            f"{ref!r} is neither an uploaded dataset id nor a hub dataset id", field=field
        ) from exc
    return None


def validate_job_request(
    session: Session, *, tenant_id: str, request: JobRequest, settings: Settings
) -> dict[str, Any]:
    """Everything checkable at submit time; returns the facts resolved so far (model revision, type)."""
    request.method.validated_params()
    quality = request.target.parsed().quality
    if quality is not None and not any(t.task == quality.task for t in request.evaluation):
        raise MetricNotEvaluated(
            f"a {quality.metric} target needs a {quality.task!r} evaluation task to measure it",
            field="target.metric",
        )
    cal = request.calibration
    if cal.num_samples > settings.max_num_samples:
        raise InvalidRequest(f"at most {settings.max_num_samples} samples", field="calibration.num_samples")
    if cal.max_seq_length > settings.max_seq_length:
        raise InvalidRequest(f"at most {settings.max_seq_length} tokens", field="calibration.max_seq_length")
    check_dataset_ref(session, tenant_id=tenant_id, ref=cal.dataset, field="calibration.dataset")
    for i, task in enumerate(request.evaluation):
        try:
            parse_options(task.task, task.all_options())
        except InvalidSpec as exc:
            raise InvalidRequest(str(exc), field=f"evaluation.{i}.options") from exc
        if task.dataset is not None:
            check_dataset_ref(session, tenant_id=tenant_id, ref=task.dataset, field=f"evaluation.{i}.dataset")
    if request.webhook is not None:
        egress.check_url(str(request.webhook.url), allow_networks=settings.webhook_allow_networks)
    resolved, info = inspect_model(
        model_id=request.model.id, revision=request.model.revision, model_root=settings.model_root
    )
    return {
        "model": {
            "id": request.model.id,
            "revision": resolved.revision,
            "model_type": info.model_type,
            "architectures": info.architectures,
            "config_sha256": resolved.config_sha256,
        }
    }


def estimate(*, request: EstimateRequest, model_root: Path | None = None) -> dict[str, Any]:
    """Baseline MACs and parameters and the planned widths for a target, from the config alone."""
    params = request.method.validated_params()
    resolved, info = inspect_model(
        model_id=request.model.id, revision=request.model.revision, model_root=model_root
    )
    seq_len = request.target.reference_seq_len or 128
    result = _uniform_estimate(info.config, request.method.name, request.target.mac_ratio, seq_len)
    if isinstance(params, catalogue.FactorizedParams):
        result["planned"] = _factorized_estimate(info.config, request.method.name, params,
                                                 request.target.mac_ratio, seq_len)
    return {
        "object": "estimate",
        "model": {"id": request.model.id, "revision": resolved.revision, "model_type": info.model_type},
        "method": request.method.name,
        "mac_ratio": request.target.mac_ratio,
        "reference_seq_len": seq_len,
        **result,
    }


def _factorized_estimate(config: dict[str, Any], method: str, params: catalogue.FactorizedParams,
                         mac_ratio: float, seq_len: int) -> dict[str, Any]:
    """For a factorising method: the least kept ratio its cheapest forms reach on this model
    (`core.macs.least_block_macs`, the same bound the engine checks before any compute); a target
    below it is refused here (BudgetInfeasible). The forms themselves are chosen from calibration
    data when the job runs."""
    geom = Geometry.from_config(config)
    dense = dense_shape(geom)
    floor = least_block_macs(geom, [dense] * geom.num_layers, params, seq_len) / (
        geom.num_layers * block_macs(geom, dense, seq_len))
    if floor > mac_ratio * (1 + 1e-9):
        raise BudgetInfeasible(
            f"method {method!r} cannot go below {floor:.4f} of the block MACs of this model with these "
            f"parameters (reference_seq_len {seq_len}), above mac_ratio {mac_ratio}",
            field="target.mac_ratio",
        )
    return {
        "allocation": "global",
        "kinds": [k for k in catalogue.get(method).structures],
        "floor_mac_ratio": floor,
        "mac_ratio": mac_ratio,
        "chosen_at_run_time": "per-matrix ranks, blocks or bonds, from the calibration data",
    }


def _uniform_estimate(config: dict[str, Any], method: str, mac_ratio: float, seq_len: int) -> dict[str, Any]:
    """`core.macs.estimate`, with the two ways it can fail a request turned into domain errors (422).

    A config read by the hub can still hold sizes too large for float arithmetic (ModelRefused);
    and for a method that prunes heads and neurons, a target below what the narrowest uniform
    plan keeps (one query head per kv group, one neuron per block) is infeasible: the engine would
    refuse the job for it, so the estimate does too (BudgetInfeasible, field target.mac_ratio).
    """
    try:
        result = macs_estimate(config, mac_ratio, seq_len)
    except OverflowError as exc:
        raise ModelRefused(
            f"the config's sizes are out of range for MAC accounting ({exc})", field="model.id"
        ) from exc
    planned = result["planned"]["mac_ratio"]
    structured = {"heads", "neurons"} & set(catalogue.get(method).structures)
    if structured and planned > mac_ratio + 1e-9:
        raise BudgetInfeasible(
            f"mac_ratio {mac_ratio} is below what the narrowest uniform plan keeps on this model "
            f"({planned:.4f} of the block MACs at reference_seq_len {seq_len})",
            field="target.mac_ratio",
        )
    return result
