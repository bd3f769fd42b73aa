"""DVC stage `download_<name>`: `stcn download` of a registry dataset (or the pretrained weights).

Options: the shared `download` block under `datasets.<name>.download` (model weights, the registry's `weights:`
entries: the `download_<name>` block, e.g. `download_pretrained`, into models/<name>).
With `optional: true` a dataset whose source needs the internet, when it is unreachable, is
skipped: `<to>/STATUS` says why, and the stage succeeds (nothing downstream needs it by default).
"""

from __future__ import annotations

import typer
from stage import command, dataset, given, load, log


def download(name: str = typer.Argument(...)) -> None:
    """Download (or, with source `bundled`, build) dataset NAME into data/NAME (weights: models/NAME)."""
    from stcn.data.fetch.download import NeedsInternet, download_dataset

    p = load()
    ds = dataset(name, p)
    shared = p[f"download_{name}"] if ds.layout_type.own_download_block else p["download"]
    knobs, to = {**shared, **given(ds.download or {})}, ds.layout_type.download_folder(ds)
    optional = knobs.pop("optional", False)
    (to / "STATUS").unlink(missing_ok=True)  # the output folder persists across runs (resumable downloads)
    try:
        download_dataset(ds, to=to, log=log, **knobs)
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
