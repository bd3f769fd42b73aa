"""DVC stage `shard_<kind>`: `stcn shard KIND` into `<shard.url>/<kind>`.

`shard.url` is `shards` (local, DVC-tracked) or an s3:// prefix; for the latter the index is also
written to `shards/<kind>/index.json`, the stage's DVC output (it lists every shard's sha256).
"""

from __future__ import annotations

from pathlib import Path

import typer
from stage import command, log, params

LOCAL = "shards"


def shard(kind: str = typer.Argument(..., help="static | davis | youtube | bl30k"), source: Path = typer.Argument(...)):
    """Shard the dataset folder SOURCE (bl30k: the folder of segment tars)."""
    from stcn.data.shards import build as shards
    from stcn.data.shards.store import Store

    knobs = params(f"shard_{kind}", "shard")
    out = f"{knobs.pop('url').rstrip('/')}/{kind}"
    inputs = sorted(source.glob("*.tar")) if kind == "bl30k" else source
    index = getattr(shards, f"shard_{kind}")(inputs, out, log=log, **knobs)
    if out != f"{LOCAL}/{kind}":
        Store(f"{LOCAL}/{kind}").write_index(index)
    log(f"shard_{kind}: {index['totals']['samples']} samples in {index['totals']['shards']} shards -> {out}")


if __name__ == "__main__":
    command(shard)
