"""reports/s2m.md: the held-out IoUs of an S2M training run as a markdown table, and how the run went."""

from __future__ import annotations

from typing import Any

BASELINES = {
    "first": "positive stroke's bounding box, filled",
    "correction": "current mask with the strokes painted in",
}


def report_markdown(result: dict[str, Any], notes: list[str] = ()) -> str:
    """reports/s2m.md: held-out IoU per round and method, and how the run went."""
    lines = [
        "# S2M (scribble-to-mask) trained on simulated strokes",
        "",
        f"Held-out: {result.get('heldout_frames', 0)} frames of {', '.join(result.get('heldout_sequences', []))}; "
        f"{result['train_images']} training images, {result['iterations']} iterations in {result['seconds']} s "
        f"(loss {result['first_loss']:.3f} -> {result['last_loss']:.3f}).",
        *(
            [
                f"{result['train_images_from_heldout_videos']} training images are other frames of the held-out videos "
                "(the sample's static stand-in): the held-out frames are unseen, their objects are not."
            ]
            if result.get("train_images_from_heldout_videos")
            else []
        ),
        "",
        "| round | trained S2M | untrained stand-in | baseline (no network) | objects |",
        "|---|---|---|---|---|",
    ]
    by = {(r["round"], r["method"]): r for r in result["rows"]}
    for name in ("first", "correction"):
        if (name, "trained") in by:
            cells = [f"{by[(name, m)]['iou']:.3f}" for m in ("trained", "stand-in", "baseline")]
            lines.append(f"| {name} | {' | '.join(cells)} | {by[(name, 'trained')]['n']} |")
    lines += ["", "IoU (Jaccard) of the masks S2M gives from one simulated interaction, mean over objects."]
    lines += [f"- baseline, {k} round: {v}" for k, v in BASELINES.items()]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"
