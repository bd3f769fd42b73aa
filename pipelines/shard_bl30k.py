"""DVC stage `shard_bl30k`: download one BL30K segment at a time into `data/bl30k`, shard the videos
it completes into `<shard.url>/bl30k`, delete the segment (`stcn shard bl30k-stream`).

Peak local disk: one segment (+ the members of videos that continue in the next one) + the shards,
or only the index when `shard.url` is s3:// (then `shards/bl30k/index.json` is the DVC output).
The segments' source is the `download_bl30k` block (gdrive by default in the paper profile).
"""

from __future__ import annotations

from pathlib import Path

import typer
from stage import command, log, params

LOCAL = "shards"


def shard(work: Path = typer.Argument(Path("data/bl30k"), help="scratch folder for one segment at a time")):
    """Download, shard and drop the BL30K segments one by one."""
    from stcn.data.shard_bl30k_stream import segment_fetcher, shard_bl30k_streamed
    from stcn.data.shard_store import Store

    knobs = params("shard_bl30k", "shard")
    source = params("download_bl30k")
    out = f"{knobs.pop('url').rstrip('/')}/bl30k"
    names, fetch = segment_fetcher(source.get("source"), source.get("url"), log)
    index = shard_bl30k_streamed(names, fetch, out, work, log=log, **knobs)
    if out != f"{LOCAL}/bl30k":
        Store(f"{LOCAL}/bl30k").write_index(index)
    log(f"shard_bl30k: {index['totals']['samples']} samples in {index['totals']['shards']} shards -> {out}")


if __name__ == "__main__":
    command(shard)
