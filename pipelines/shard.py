"""DVC stage `shard_<name>`: `stcn shard` of a registry dataset into `<shard.url>/<name>`.

The dataset's `layout` picks the reader (davis, youtube, static, bl30k); `datasets.<name>.shard` holds its
options over the shared `shard` block. BL30K without a `root` of its own is downloaded one segment at a time
into data/bl30k (scratch, not an output), sharded and deleted (`stcn shard bl30k-stream`): peak local disk is
one segment plus the shards (only the index when `shard.url` is s3://). `shard.url` is `shards` (local,
DVC-tracked) or an s3:// prefix; for the latter the index is also written to `shards/<name>/index.json`, the
stage's DVC output (it lists every shard's sha256).

BL30K with `datasets.bl30k.shard.parts: N` (N > 1) is sharded by N + 2 stages that N machines can share:
`shard_bl30k_index` (`--index-only`: the member index of every segment, scanned once, `shards/bl30k/members.npz`),
`shard_bl30k_part@I` (`--part I/N`: the videos of part I, balanced by bytes, read by byte ranges;
`shards/bl30k/parts/I-of-N`) and `shard_bl30k` (`--merge`: `shards/bl30k/index.json` over the parts).
The segments are read where they are when `download` names a mirror (`source: s3|http|file` with a `url`);
otherwise the index stage fetches them once into data/bl30k (its output).
"""

from __future__ import annotations

from pathlib import Path

import typer
from stage import command, dataset, given, load, log

from stcn.errors import UserError

LOCAL = "shards"


def segments(ds, p: dict, fetch_missing: bool) -> list[str]:
    """BL30K segment locations: the mirror's URLs when `download` names one, else files in data/<name>
    (fetched there when `fetch_missing`)."""
    from stcn.data.fetch.sources import file_url
    from stcn.data.shards.bl30k_stream import segment_fetcher

    source = {**p["download"], **(ds.download or {})}
    if ds.root is not None:
        return [str(path) for path in sorted(ds.folder.glob("*.tar"))]
    if source.get("source") in ("s3", "http", "file") and source.get("url"):
        return [file_url(ds, f, source["source"], source["url"]) for f in ds.files]
    names, fetch = segment_fetcher(ds, source.get("source"), source.get("url"), log)
    paths = [ds.folder / n for n in names]
    for i, path in enumerate(paths):
        if fetch_missing and not path.is_file():
            ds.folder.mkdir(parents=True, exist_ok=True)
            fetch(i, path)
    return [str(path) for path in paths]


def bl30k_parts(name: str, ds, p: dict, knobs: dict, out: str, part: str | None, merge: bool) -> dict | None:
    """One of the per-part BL30K stages (see the module docstring); None for --index-only."""
    from stcn.data.shards.build import bl30k_member_index, shard_bl30k
    from stcn.data.shards.parallel import check_parts, merge_parts

    parts = check_parts(knobs.pop("parts"), f"params.yaml: datasets.{name}.shard.parts")
    index = f"{LOCAL}/{name}/members.npz"
    if merge:
        return merge_parts(out, knobs.get("split", "train"), parts)
    paths = segments(ds, p, fetch_missing=part is None)
    if part is None:
        Path(index).parent.mkdir(parents=True, exist_ok=True)
        Path(index).unlink(missing_ok=True)  # a re-run re-scans (the segments changed)
        bl30k_member_index(paths, index, log)
        return None
    return shard_bl30k(paths, out, part=part, index=index, log=log, **knobs)


def shard(
    name: str = typer.Argument(..., help="a dataset of params.yaml `datasets`"),
    part: str = typer.Option(None, help="bl30k with shard.parts N: shard part I/N only"),
    merge: bool = typer.Option(False, help="bl30k with shard.parts N: merge the finished parts"),
    index_only: bool = typer.Option(False, help="bl30k with shard.parts N: write the member index only"),
) -> None:
    """Shard dataset NAME (its folder `root`, default data/NAME; bl30k: the folder of segment tars)."""
    from stcn.data.shards.build import shard_dataset
    from stcn.data.shards.store import Store

    p = load()
    ds = dataset(name, p)
    shared = {k: p["shard"][k] for k in ("shard_size_mb", "check", "workers")}
    knobs = given({**shared, **(ds.shard or {})})  # null: the library's default
    out = f"{p['shard']['url'].rstrip('/')}/{name}"
    if ds.layout == "bl30k" and int(knobs.get("parts") or 1) > 1:
        if [bool(part), merge, index_only].count(True) != 1:
            raise UserError(f"{name} is sharded in parts (shard.parts): give one of --index-only, --part I/N, --merge")
        index = bl30k_parts(name, ds, p, knobs, out, part, merge)
        if not merge:
            sub = f"parts/{part.replace('/', '-of-')}" if part else "members.npz"
            if part and out != f"{LOCAL}/{name}":
                Store(f"{LOCAL}/{name}/{sub}").write_index(index)
            log(f"shard_{name}: {sub} done")
            return
    elif part or merge or index_only:
        raise UserError(f"--part/--merge/--index-only need datasets.{name}.shard.parts > 1 (a bl30k dataset)")
    elif ds.layout == "bl30k" and ds.root is None:
        knobs.pop("parts", None)
        from stcn.data.shards.bl30k_stream import segment_fetcher, shard_bl30k_streamed

        source = {**p["download"], **(ds.download or {})}
        names, fetch = segment_fetcher(ds, source.get("source"), source.get("url"), log)
        index = shard_bl30k_streamed(names, fetch, out, ds.folder, log=log, **knobs)
    else:
        knobs.pop("parts", None)
        index = shard_dataset(ds, out, log=log, **knobs)
    if out != f"{LOCAL}/{name}":
        Store(f"{LOCAL}/{name}").write_index(index)
    log(f"shard_{name}: {index['totals']['samples']} samples in {index['totals']['shards']} shards -> {out}")


if __name__ == "__main__":
    command(shard)
