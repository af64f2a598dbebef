"""The PicoGPT section of RESULTS.md: our retraining-free numbers beside the paper's trained MPO cores."""

from __future__ import annotations

from typing import Any

from bench.markdown import table
from bench.settings import METHOD_LABELS

LANDED = 0.05  # a compressed model within 5% of the paper's parameter count counts as landed


def _dense_line(result: dict[str, Any]) -> str:
    dense, paper = result["dense"], result["paper"]
    train = dense.get("train", {})
    recipe = train.get("recipe", {})
    acc = dense["metrics"]["token_accuracy"]
    return (
        f"Dense model (ours): GPT2LMHeadModel, {recipe.get('n_layer')} layers, d = {recipe.get('n_embd')}, "
        f"{recipe.get('n_head')} heads, FFN {recipe.get('n_inner')}, context {recipe.get('n_positions')}, "
        f"{dense['params']:,} parameters, trained {recipe.get('steps')} steps × {recipe.get('batch_size')} "
        f"windows in {train.get('seconds', 0) / 60:.1f} min "
        f"(final training loss {train.get('final_loss', float('nan')):.3f}): "
        f"held-out token accuracy **{acc:.1%}** (perplexity {dense['metrics']['perplexity']:.2f}). "
        f"Paper: {paper['dense_params']:,} parameters, **{paper['dense_token_accuracy']:.1%}**."
    )


def _rows(result: dict[str, Any]) -> list[list[Any]]:
    dense_acc = result["dense"]["metrics"]["token_accuracy"]
    paper_dense = result["paper"]["dense_token_accuracy"]
    rows = []
    for r in result["rows"]:
        method = METHOD_LABELS.get(r["method"], r["method"])
        paper = f"{r['paper_token_accuracy']:.1%} ({r['paper_token_accuracy'] / paper_dense:.1%})"
        if "metrics" not in r:
            rows.append(
                [r["chi"], f"{r['goal_params']:,}", paper, method, "-", "-", r.get("error", "-"), "-"]
            )
            continue
        acc = r["metrics"]["token_accuracy"]
        rows.append(
            [
                r["chi"],
                f"{r['goal_params']:,}",
                paper,
                method,
                f"{r['target']:.4f} ({r['mac_ratio']:.3f})",
                f"{r['params_after']:,} ({r['params_gap']:+,})",
                f"{acc:.1%} ({acc / dense_acc:.1%})",
                f"{(acc - r['paper_token_accuracy']) * 100:+.1f}",
            ]
        )
    return rows


def _verdicts(result: dict[str, Any]) -> list[str]:
    """One plain sentence per χ: the best retraining-free method against the trained MPO."""
    dense_acc = result["dense"]["metrics"]["token_accuracy"]
    paper_dense = result["paper"]["dense_token_accuracy"]
    lines = []
    for chi in dict.fromkeys(r["chi"] for r in result["rows"]):
        scored = [r for r in result["rows"] if r["chi"] == chi and "metrics" in r]
        landed = [r for r in scored if abs(r["params_gap"]) <= LANDED * r["goal_params"]]
        if not landed:
            closest = min(scored, key=lambda r: abs(r["params_gap"]), default=None)
            note = f" (closest: {closest['params_after']:,} parameters)" if closest else ""
            lines.append(
                f"- χ = {chi}: no method could be compressed to within {LANDED:.0%} of this parameter count"
                f"{note}: the embeddings and the narrowest blocks the engine allows already hold more."
            )
            continue
        scored = landed
        best = max(scored, key=lambda r: r["metrics"]["token_accuracy"])
        acc, paper = best["metrics"]["token_accuracy"], best["paper_token_accuracy"]
        ours_kept, paper_kept = acc / dense_acc, paper / paper_dense
        absolute = "below" if acc < paper else "above"
        relative = "less" if ours_kept < paper_kept else "more"
        lines.append(
            f"- χ = {chi} ({best['goal_params']:,} parameters): the best retraining-free method, "
            f"{METHOD_LABELS.get(best['method'], best['method'])} ({best['params_after']:,} parameters), "
            "reaches "
            f"{acc:.1%} token accuracy, {abs(acc - paper) * 100:.1f} points {absolute} the trained MPO cores "
            f"({paper:.1%}). Measured against each one's own dense model (ours {dense_acc:.1%}, the paper's "
            f"{paper_dense:.1%}) it keeps {ours_kept:.1%} against the trained cores' {paper_kept:.1%}: "
            f"{abs(ours_kept - paper_kept) * 100:.1f} points {relative}."
        )
    return lines


def picogpt_lines(result: dict[str, Any]) -> list[str]:
    lines = ["## PicoGPT: a paper's table, retraining-free", "", _dense_line(result), ""]
    lines += [
        "Each method compresses our dense model without training to the paper's whole-model parameter count "
        "(the MAC target found by bisection; both are shown). The paper's figures: "
        + result["paper"]["source"]
        + ".",
        "",
    ]
    lines += table(
        [
            "χ",
            "paper params",
            "paper MPO, trained (of dense)",
            "method",
            "MAC target (achieved)",
            "params landed (gap)",
            "token accuracy (of our dense)",
            "vs paper, points",
        ],
        _rows(result),
    )
    lines += ["Where retraining-free loses to trained cores, and by how much:", ""] + _verdicts(result) + [""]
    if result.get("quick"):
        lines += [
            "(Quick run: the dense model trained for a few dozen steps only; these figures say nothing "
            "about the methods.)",
            "",
        ]
    return lines
