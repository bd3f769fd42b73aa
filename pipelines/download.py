"""DVC stage `download_<dataset>`: `stcn download` with the `download_<dataset>` params.

With `optional: true` a dataset whose source needs the internet, when it is unreachable, is
skipped: `<to>/STATUS` says why, and the stage succeeds (nothing downstream needs it by default).
"""

from __future__ import annotations

from pathlib import Path

import typer
from stage import command, log, params


def download(dataset: str = typer.Argument(...), to: Path = typer.Argument(...)) -> None:
    """Download (or, with source `bundled`, build) DATASET into TO."""
    from stcn.data.fetch.download import NeedsInternet, download_dataset

    knobs = params(f"download_{dataset}")
    optional = knobs.pop("optional", False)
    (to / "STATUS").unlink(missing_ok=True)  # the output folder persists across runs (resumable downloads)
    try:
        download_dataset(dataset, to=to, log=log, **knobs)
    except NeedsInternet as e:
        if not optional:
            raise
        reason = str(e).removeprefix("skipped: ")
        message = f"skipped: needs internet (source {knobs.get('source')}): {reason}"
        to.mkdir(parents=True, exist_ok=True)
        (to / "STATUS").write_text(message + "\n")
        log(f"download_{dataset}: {message}")


if __name__ == "__main__":
    command(download)
