"""DVC stage `shard_<name>`: `stcn shard` of a registry dataset into `<shard.url>/<name>`.

The dataset's `layout` picks the reader (davis, youtube, static, bl30k); `datasets.<name>.shard` holds its
options over the shared `shard` block. BL30K without a `root` of its own is downloaded one segment at a time
into data/bl30k (scratch, not an output), sharded and deleted (`stcn shard bl30k-stream`): peak local disk is
one segment plus the shards (only the index when `shard.url` is s3://). `shard.url` is `shards` (local,
DVC-tracked) or an s3:// prefix; for the latter the index is also written to `shards/<name>/index.json`, the
stage's DVC output (it lists every shard's sha256).
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
    shared = {k: p["shard"][k] for k in ("shard_size_mb", "check", "workers")}
    knobs = {**shared, **(entry.get("shard") or {})}
    out = f"{p['shard']['url'].rstrip('/')}/{name}"
    root, layout = Path(entry["root"]), entry["layout"]
    if layout == "bl30k" and "root" not in (p["datasets"][name] or {}):
        from stcn.data.shards.bl30k_stream import segment_fetcher, shard_bl30k_streamed

        source = {**p["download"], **(entry.get("download") or {})}
        names, fetch = segment_fetcher(source.get("source"), source.get("url"), log)
        index = shard_bl30k_streamed(names, fetch, out, root, log=log, **knobs)
    elif layout == "bl30k":
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
