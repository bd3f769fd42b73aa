"""DVC stage `download_<name>`: `stcn download` of a registry dataset (or the pretrained weights).

Options: the shared `download` block under `datasets.<name>.download` (`download_pretrained` for the weights).
With `optional: true` a dataset whose source needs the internet, when it is unreachable, is
skipped: `<to>/STATUS` says why, and the stage succeeds (nothing downstream needs it by default).
"""

from __future__ import annotations

from pathlib import Path

import typer
from stage import command, dataset, load, log


def download(name: str = typer.Argument(...)) -> None:
    """Download (or, with source `bundled`, build) dataset NAME into data/NAME (pretrained: models/pretrained)."""
    from stcn.data.fetch.download import NeedsInternet, download_dataset

    p = load()
    if name == "pretrained":
        knobs, to = dict(p["download_pretrained"]), Path("models/pretrained")
    else:
        knobs, to = {**p["download"], **(dataset(name, p).get("download") or {})}, Path("data") / name
    optional = knobs.pop("optional", False)
    (to / "STATUS").unlink(missing_ok=True)  # the output folder persists across runs (resumable downloads)
    try:
        download_dataset(name, to=to, log=log, **knobs)
    except NeedsInternet as e:
        if not optional:
            raise
        reason = str(e).removeprefix("skipped: ")
        message = f"skipped: needs internet (source {knobs.get('source')}): {reason}"
        to.mkdir(parents=True, exist_ok=True)
        (to / "STATUS").write_text(message + "\n")
        log(f"download_{name}: {message}")


if __name__ == "__main__":
    command(download)
