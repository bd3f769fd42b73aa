"""DVC stage `shard_<name>`: `stcn shard` of a registry dataset into `<shard.url>/<name>`.

The dataset's `layout` picks the reader (davis, youtube, static, bl30k); `datasets.<name>.shard` holds its
options over the shared `shard` block. BL30K without a `root` of its own is downloaded one segment at a time
into data/bl30k (scratch, not an output), sharded and deleted (`stcn shard bl30k-stream`): peak local disk is
one segment plus the shards (only the index when `shard.url` is s3://). `shard.url` is `shards` (local,
DVC-tracked) or an s3:// prefix; for the latter the index is also written to `shards/<name>/index.json`, the
stage's DVC output (it lists every shard's sha256).

In the pipeline BL30K (`datasets.bl30k.shard.parts: N`, 1 too) is sharded by N + 2 stages that N machines can
share: `shard_bl30k_index` (`--index-only`: the member index of every segment, scanned once,
`shards/bl30k/members.npz`), `shard_bl30k_part@I` (`--part I/N`: the videos of part I, balanced by bytes, read by
byte ranges; `shards/bl30k/parts/I-of-N`) and `shard_bl30k` (`--merge`: `shards/bl30k/index.json` over the parts).
The segments are read where they are when `download` names a mirror (`source: s3|http|file` with a `url`; the index
stage's data/bl30k then only holds SOURCE.txt, the segment URLs). Otherwise, with N > 1, the index stage fetches
them once into data/bl30k (its output); with N = 1 nothing is fetched before the one part: `--part 0/1` streams
the segments one at a time (`stcn shard bl30k-stream`, work folder data/bl30k.stream, peak disk one segment) and
the merge lists its segments' shards.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import typer
from stage import command, dataset, given, load, log

from stcn.errors import UserError

LOCAL = "shards"


def source_of(ds, p: dict) -> dict:
    """The `download` options of dataset `ds`: its own block's set values over the shared block."""
    return {**p["download"], **given(ds.download or {})}


def segments(ds, p: dict, fetch_missing: bool) -> list[str]:
    """BL30K segment locations: the mirror's URLs when `download` names one, else files in data/<name>
    (fetched there when `fetch_missing`)."""
    from stcn.data.fetch.sources import file_url
    from stcn.data.shards.bl30k_stream import segment_fetcher

    source = source_of(ds, p)
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


def mirrored(ds, p: dict) -> bool:
    """Whether BL30K's segments are read in place: your own `root`, or a mirror URL in `download`."""
    source = source_of(ds, p)
    return ds.root is not None or bool(source.get("source") in ("s3", "http", "file") and source.get("url"))


def bl30k_parts(name: str, ds, p: dict, knobs: dict, out: str, part: str | None, merge: bool) -> dict | None:
    """One of the per-part BL30K stages (see the module docstring); None for --index-only."""
    from stcn.data.shards.build import bl30k_member_index, shard_bl30k
    from stcn.data.shards.parallel import check_parts, merge_dirs, merge_parts, part_dir

    parts = check_parts(knobs.pop("parts"), f"params.yaml: datasets.{name}.shard.parts")
    if part is not None and part.partition("/")[2] != str(parts):
        raise UserError(f"--part {part}: datasets.{name}.shard.parts is {parts} (dvc.yaml interpolates it)")
    index = f"{LOCAL}/{name}/members.npz"
    streamed = parts == 1 and not mirrored(ds, p)  # one machine, segments fetched one at a time
    if merge and streamed:  # the one part holds one sub-folder of shards per segment
        split, sub = knobs.get("split", "train"), part_dir((0, 1))
        names = segments_of(ds, p)
        subs = [f"{sub}/segments/{Path(n).stem}" for n in names]
        return merge_dirs(out, split, subs, {"parts": 1, "segments": names})
    if merge:
        return merge_parts(out, knobs.get("split", "train"), parts)
    if part is None:
        drop_other_parts(name, parts)
    if streamed and part is None:
        import numpy as np

        Path(index).parent.mkdir(parents=True, exist_ok=True)
        np.savez(index, streamed=np.array(True))  # no member to scan before the streamed part: a marker
        note(ds, "parts: 1 without a mirror: shard_bl30k_part@0 fetches, shards and deletes one segment at a time")
        return None
    if streamed:
        from stcn.data.shards.bl30k_stream import segment_fetcher, shard_bl30k_streamed

        source = source_of(ds, p)
        names, fetch = segment_fetcher(ds, source.get("source"), source.get("url"), log)
        work = ds.folder.with_name(ds.folder.name + ".stream")
        if out == f"{LOCAL}/{name}" and not Path(out, part_dir((0, 1))).is_dir():
            shutil.rmtree(work, ignore_errors=True)  # DVC removed the part's shards: their resume state goes too
        result = shard_bl30k_streamed(names, fetch, f"{out}/{part_dir((0, 1))}", work, log=log, **knobs)
        shutil.rmtree(work, ignore_errors=True)  # finished: the resume state is no longer needed
        return result
    if part is None:
        for old in ("STATUS", "SOURCE.txt"):  # the note of another N or source
            (ds.folder / old).unlink(missing_ok=True)
    paths = segments(ds, p, fetch_missing=part is None)
    if part is None:
        Path(index).parent.mkdir(parents=True, exist_ok=True)
        Path(index).unlink(missing_ok=True)  # a re-run re-scans (the segments changed)
        bl30k_member_index(paths, index, log)
        if mirrored(ds, p) and ds.root is None:
            note(ds, "the segments are read in place:\n" + "".join(f"{u}\n" for u in paths), "SOURCE.txt")
        return None
    return shard_bl30k(paths, out, part=part, index=index, log=log, **knobs)


def drop_other_parts(name: str, parts: int) -> None:
    """Remove the local part outputs of another number of parts (`shards/<name>/parts/I-of-M`, M != `parts`):
    no stage writes them any more, and the merge stage depends on the whole parts folder."""
    for old in sorted(Path(LOCAL, name, "parts").glob("*-of-*")):
        if old.is_dir() and not old.name.endswith(f"-of-{parts}"):
            shutil.rmtree(old)
            log(f"removed {old} (parts: {parts})")


def segments_of(ds, p: dict) -> list[str]:
    """The segment names the streamed part shards (the bundled stand-in has fewer than the registry lists)."""
    from stcn.data.shards.bl30k_stream import segment_fetcher

    source = source_of(ds, p)
    return segment_fetcher(ds, source.get("source"), source.get("url"), log)[0]


def note(ds, text: str, name: str = "STATUS") -> None:
    """data/<name>/<name>: what the index stage's folder output holds instead of the segments."""
    ds.folder.mkdir(parents=True, exist_ok=True)
    (ds.folder / name).write_text(text.rstrip("\n") + "\n")


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
    knobs.pop("part_list", None)  # dvc.yaml's foreach list (0..parts-1)
    if ds.layout_type.segment_tars and (part or merge or index_only):
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
        raise UserError(f"--part/--merge/--index-only are for a bl30k dataset; {name} has layout {ds.layout}")
    elif ds.layout_type.segment_tars and ds.root is None:
        knobs.pop("parts", None)
        from stcn.data.shards.bl30k_stream import segment_fetcher, shard_bl30k_streamed

        source = source_of(ds, p)
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
