"""DVC stage `shard_<name>`: `stcn shard` of a registry dataset into `<shard.url>/<name>`.

The dataset's `layout` picks the reader (davis, youtube, static, bl30k); `datasets.<name>.shard` holds its
options. `shard.url` is `shards` (local, DVC-tracked) or an s3:// prefix; for the latter the index is also
written to `shards/<name>/index.json`, the stage's DVC output (it lists every shard's sha256).
"""

from __future__ import annotations

from pathlib import Path

import typer
from stage import command, dataset, load, log

LOCAL = "shards"


def shard(name: str = typer.Argument(..., help="a dataset of params.yaml `datasets`")) -> None:
    """Shard dataset NAME (its folder `root`, default data/NAME; bl30k: the folder of segment tars)."""
    from stcn.data.shards import build
    from stcn.data.shards.store import Store

    p = load()
    entry = dataset(name, p)
    knobs = {"shard_size_mb": p["shard"]["shard_size_mb"], **(entry.get("shard") or {})}
    out = f"{p['shard']['url'].rstrip('/')}/{name}"
    root, layout = Path(entry["root"]), entry["layout"]
    if layout == "bl30k":
        index = build.shard_bl30k(sorted(root.glob("*.tar")), out, log=log, **knobs)
    elif layout == "static":
        index = build.shard_static(root, out, log=log, **knobs)
    else:
        index = build.shard_generic(root, out, layout=layout, name=name, log=log, **knobs)
    if out != f"{LOCAL}/{name}":
        Store(f"{LOCAL}/{name}").write_index(index)
    log(f"shard_{name}: {index['totals']['samples']} samples in {index['totals']['shards']} shards -> {out}")


if __name__ == "__main__":
    command(shard)
