"""DVC stage `shard_<name>`: `stcn shard` of a registry dataset into `<shard.url>/<name>`.

The dataset's `layout` picks the reader (davis, youtube, static, bl30k); `datasets.<name>.shard` holds its
options over the shared `shard` block. BL30K without a `root` of its own is downloaded one segment at a time
into data/bl30k (scratch, not an output), sharded and deleted (`stcn shard bl30k-stream`): peak local disk is
one segment plus the shards (only the index when `shard.url` is s3://). `shard.url` is `shards` (local,
DVC-tracked) or an s3:// prefix; for the latter the index is also written to `shards/<name>/index.json`, the
stage's DVC output (it lists every shard's sha256).
"""

from __future__ import annotations

import typer
from stage import command, dataset, given, load, log

LOCAL = "shards"


def shard(name: str = typer.Argument(..., help="a dataset of params.yaml `datasets`")) -> None:
    """Shard dataset NAME (its folder `root`, default data/NAME; bl30k: the folder of segment tars)."""
    from stcn.data.shards.build import shard_dataset
    from stcn.data.shards.store import Store

    p = load()
    ds = dataset(name, p)
    shared = {k: p["shard"][k] for k in ("shard_size_mb", "check", "workers")}
    knobs = given({**shared, **(ds.shard or {})})  # null: the library's default
    out = f"{p['shard']['url'].rstrip('/')}/{name}"
    if ds.layout == "bl30k" and ds.root is None:
        from stcn.data.shards.bl30k_stream import segment_fetcher, shard_bl30k_streamed

        source = {**p["download"], **(ds.download or {})}
        names, fetch = segment_fetcher(ds, source.get("source"), source.get("url"), log)
        index = shard_bl30k_streamed(names, fetch, out, ds.folder, log=log, **knobs)
    else:
        index = shard_dataset(ds, out, log=log, **knobs)
    if out != f"{LOCAL}/{name}":
        Store(f"{LOCAL}/{name}").write_index(index)
    log(f"shard_{name}: {index['totals']['samples']} samples in {index['totals']['shards']} shards -> {out}")


if __name__ == "__main__":
    command(shard)
