"""`stcn download` and `stcn shard ...` commands."""

from __future__ import annotations

import functools
import inspect
import sys
import typing
from dataclasses import dataclass
from pathlib import Path

import typer

from stcn.cli.options import QUIET
from stcn.data.shards.format import DEFAULT_SHARD_SIZE_MB


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


REGISTRY = typer.Option(
    None,
    "--registry",
    help="YAML file with the `datasets:` (and `weights:`) registry (default: $STCN_CONFIG, else conf/config.yaml)",
)


def download(
    dataset: str = typer.Argument(
        ...,
        help="a dataset of the registry: static, davis16, davis17, davis17_testdev, youtube18, youtube19, "
        "bl30k, or one you declared; or model weights of its `weights:` (pretrained)",
    ),
    source: str = typer.Option(
        None,
        help="gdrive | http | file | s3 | bundled (default: each file's registry sources in order: Drive id, "
        "http, urls)",
    ),
    to: Path = typer.Option(None, help="target folder (default: data/<dataset>)"),
    url: str = typer.Option(None, help="override: a file URL/path, or a mirror folder/prefix holding the files"),
    sha256: str = typer.Option(None, help="expected sha256 (or md5:HEX) of a single-file dataset"),
    resize: bool = typer.Option(True, help="YouTube-VOS with a train split: also write train_480p (shorter side 480)"),
    keep_archives: bool = typer.Option(False, help="keep zip files after extraction"),
    registry: Path = REGISTRY,
    quiet: bool = QUIET,
) -> None:
    """Download (resumable, checksummed) and unpack a dataset of the registry into its own folder layout."""
    from stcn.data.fetch.download import EXIT_NEEDS_INTERNET, NeedsInternet, download_dataset
    from stcn.registry import load_registry

    ds = load_registry(registry).entry(dataset)
    try:
        target = download_dataset(ds, source=source, to=to, url=url, sha256=sha256, resize=resize,
                                  keep_archives=keep_archives, log=_log)  # fmt: skip
    except NeedsInternet as e:
        print(str(e) if str(e).startswith("skipped") else f"skipped: {e}", file=sys.stderr)
        sys.exit(EXIT_NEEDS_INTERNET)
    _log(f"{dataset}: ready in {target}")


shard_app = typer.Typer(no_args_is_help=True, help="Write WebDataset shards (local folder or s3://bucket/prefix).")


@shard_app.callback()
def _clear_stale_spools() -> None:
    """Every `stcn shard ...` first removes the `stcn-shard-*` spools in TMPDIR whose writer process is gone
    (a killed run whose DVC stage is then skipped as cached never runs its own clean-up)."""
    import tempfile

    from stcn.data.shards.parallel import clear_spools

    for path in clear_spools(tempfile.gettempdir(), every=False):
        _CLEARED.append(path)
        _log(f"removed the spool of a killed shard run: {path}")


_CLEARED: list[Path] = []  # what this process's `stcn shard` removed before its command


@shard_app.command("clean")
def shard_clean_cmd() -> None:
    """Only remove the spools of killed shard runs in TMPDIR (what every shard command does first): after a
    cached `dvc repro`, which never runs a stage's command, the way to clear what a killed run left."""
    import tempfile

    if not _CLEARED:
        _log(f"no spool of a killed shard run in {tempfile.gettempdir()}")


OUT = typer.Option(..., "--out", help="output folder or s3://bucket/prefix")


@dataclass(frozen=True)
class ShardOptions:
    """What every `stcn shard <source>` command takes: where the shards go, their size, how samples are read."""

    out: str
    shard_size_mb: float = DEFAULT_SHARD_SIZE_MB
    check: str = "header"
    workers: int | None = None
    part: str | None = None

    def run(self) -> dict:
        """The writer's keywords (check, workers, part) of the shard builders."""
        return {"check": self.check, "workers": self.workers, "part": self.part}


# each shared option declared once: name -> (annotation, typer option); in this order in every command's help
SHARED = {
    "out": (str, OUT),
    "shard_size_mb": (float, typer.Option(DEFAULT_SHARD_SIZE_MB, "--shard-size-mb", help="target shard size in MiB")),
    "check": (
        str,
        typer.Option("header", "--check", help="header: read image headers only (fast); full: decode every image"),
    ),
    "workers": (
        int,
        typer.Option(
            None, "--workers", min=1, help="processes reading and checking samples (default: CPU count, spool <= 1 GiB)"
        ),
    ),
    "part": (
        str,
        typer.Option(
            None, "--part", help="I/N: write only part I of N into OUT/parts/I-of-N (then `stcn shard merge`)"
        ),
    ),
}


def shard_options(part: bool = True):
    """Decorate a `stcn shard` command: its `shard: ShardOptions` parameter becomes the shared options (without
    --part unless `part`), in its place; the command receives them as one ShardOptions."""
    names = [name for name in SHARED if part or name != "part"]

    def wrap(fn):
        signature = inspect.signature(fn)
        params = []
        for param in signature.parameters.values():
            if param.name != "shard":
                params.append(param.replace(annotation=typing.get_type_hints(fn)[param.name]))
                continue
            kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
            params += [inspect.Parameter(n, kind, default=SHARED[n][1], annotation=SHARED[n][0]) for n in names]

        @functools.wraps(fn)
        def command(**kwargs):
            shard = ShardOptions(**{n: kwargs.pop(n) for n in names})
            return fn(shard=shard, **kwargs)

        command.__signature__ = signature.replace(parameters=params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        del command.__wrapped__  # typer reads the signature above, not fn's
        return command

    return wrap


def _done(index: dict, split: str, out: str) -> None:
    t = index["splits"][split]["totals"]
    _log(f"{split}: {t['samples']} samples in {t['shards']} shards ({t['bytes'] / 2**20:.1f} MiB) -> {out}")


@shard_app.command("davis")
@shard_options()
def shard_davis_cmd(
    root: Path = typer.Option(..., help="DAVIS root (JPEGImages/480p, Annotations/480p, ImageSets)"),
    split: str = typer.Option("train", help="train | val | test-dev ..."),
    year: int = typer.Option(2017, help="2016 | 2017"),
    shard: ShardOptions = None,
    quiet: bool = QUIET,
) -> None:
    """One sample per DAVIS sequence."""
    from stcn.data.shards.build import shard_davis

    index = shard_davis(root, shard.out, year=year, split=split, shard_size_mb=shard.shard_size_mb, log=_log,
                        **shard.run())  # fmt: skip
    _done(index, split, shard.out)


@shard_app.command("youtube")
@shard_options()
def shard_youtube_cmd(
    root: Path = typer.Option(..., help="YouTube-VOS root (<split>/JPEGImages, <split>/Annotations)"),
    split: str = typer.Option("train", help="train (reads train_480p if present) | valid"),
    shard: ShardOptions = None,
    subset: Path = typer.Option(None, help="file of video names to keep (the release: youtube_train_subset.txt)"),
    quiet: bool = QUIET,
) -> None:
    """One sample per YouTube-VOS video."""
    from stcn.data.shards.build import shard_youtube

    index = shard_youtube(root, shard.out, split=split, shard_size_mb=shard.shard_size_mb, log=_log, subset=subset,
                          **shard.run())  # fmt: skip
    _done(index, split, shard.out)


@shard_app.command("static")
@shard_options()
def shard_static_cmd(
    root: Path = typer.Option(..., help="static datasets folder (name.jpg + name.png pairs, recursively)"),
    split: str = typer.Option("train", help="name used for the shard files"),
    shard: ShardOptions = None,
    quiet: bool = QUIET,
) -> None:
    """One sample per image + mask pair."""
    from stcn.data.shards.build import shard_static

    index = shard_static(root, shard.out, split=split, shard_size_mb=shard.shard_size_mb, log=_log, **shard.run())
    _done(index, split, shard.out)


@shard_app.command("generic")
@shard_options()
def shard_generic_cmd(
    root: Path = typer.Option(..., help="your dataset: DAVIS layout (with or without ImageSets) or YouTube-VOS layout"),
    layout: str = typer.Option(None, help="davis | youtube (default: detected from the folder)"),
    split: str = typer.Option("train", help="ImageSets list / YouTube-VOS split folder; the shards' split name"),
    name: str = typer.Option("generic", help="dataset name recorded in the shards"),
    shard: ShardOptions = None,
    quiet: bool = QUIET,
) -> None:
    """One sample per video of your own dataset (train on it with `stcn train --data OUT*WEIGHT`)."""
    from stcn.data.shards.build import shard_generic

    index = shard_generic(root, shard.out, layout=layout, split=split, name=name,
                          shard_size_mb=shard.shard_size_mb, log=_log, **shard.run())  # fmt: skip
    _done(index, split, shard.out)


@shard_app.command("dataset")
@shard_options()
def shard_dataset_cmd(
    dataset: str = typer.Argument(..., help="a dataset of the registry (its layout picks the reader)"),
    root: Path = typer.Option(None, help="the dataset folder (default: its registry `root`, else data/<dataset>)"),
    split: str = typer.Option(None, help="the split to shard (default: its registry `shard.split`, else train)"),
    shard: ShardOptions = None,
    registry: Path = REGISTRY,
    quiet: bool = QUIET,
) -> None:
    """Shard a dataset declared in the registry, read by its layout (davis, youtube, static, bl30k tars)."""
    from stcn.data.shards.build import shard_dataset
    from stcn.registry import load_registry

    ds = load_registry(registry).dataset(dataset)
    options = {k: v for k, v in (ds.shard or {}).items() if k in ("split", "subset")}  # what the entry fixes
    options["split"] = split or options.get("split") or "train"
    index = shard_dataset(ds, shard.out, root=root, shard_size_mb=shard.shard_size_mb, log=_log, **options,
                          **shard.run())  # fmt: skip
    _done(index, options["split"], shard.out)


@shard_app.command("bl30k")
@shard_options()
def shard_bl30k_cmd(
    segments: list[str] = typer.Option(..., "--segments", help="BL30K segment tars (repeat, or list after it)"),
    extra: list[str] = typer.Argument(None, help="more segment tars"),
    split: str = typer.Option("train", help="name used for the shard files"),
    shard: ShardOptions = None,
    index: str = typer.Option(
        None, help="member index file (path or s3://): read when it exists, else written after the scan"
    ),
    quiet: bool = QUIET,
) -> None:
    """One sample per BL30K video, read straight from the segment tars (no extraction)."""
    from stcn.data.shards.build import shard_bl30k

    tars = [*segments, *(extra or [])]
    written = shard_bl30k(tars, shard.out, split=split, shard_size_mb=shard.shard_size_mb, log=_log, index=index,
                          **shard.run())  # fmt: skip
    _done(written, split, shard.out)


@shard_app.command("bl30k-stream")
@shard_options(part=False)
def shard_bl30k_stream_cmd(
    source: str = typer.Option(
        None, help="gdrive | http | file | s3 | bundled (default: each segment's registry sources in order)"
    ),
    url: str = typer.Option(None, help="a mirror folder/prefix holding BL30K_a.tar ... (http, file, s3)"),
    work: Path = typer.Option(Path("data/bl30k"), help="scratch folder: one segment (+ a spill) at a time"),
    split: str = typer.Option("train", help="name used for the shard files"),
    shard: ShardOptions = None,
    dataset: str = typer.Option("bl30k", help="the registry entry listing the segment files"),
    registry: Path = REGISTRY,
    quiet: bool = QUIET,
) -> None:
    """Download one BL30K segment at a time, shard the videos it completes, delete it (bounded disk)."""
    from stcn.data.shards.bl30k_stream import segment_fetcher, shard_bl30k_streamed
    from stcn.registry import load_registry

    names, fetch = segment_fetcher(load_registry(registry).dataset(dataset), source, url, _log)
    index = shard_bl30k_streamed(names, fetch, shard.out, work, split=split, shard_size_mb=shard.shard_size_mb,
                                 check=shard.check, workers=shard.workers, log=_log)  # fmt: skip
    _done(index, split, shard.out)


@shard_app.command("merge")
def shard_merge_cmd(
    out: str = OUT,
    parts: int = typer.Option(..., "--parts", min=1, help="N of the `--part I/N` runs"),
    split: str = typer.Option("train", help="the split the parts wrote"),
) -> None:
    """Write OUT/index.json from the finished parts OUT/parts/I-of-N (in part order)."""
    from stcn.data.shards.parallel import merge_parts

    _done(merge_parts(out, split, parts), split, out)


def register(app: typer.Typer) -> None:
    """Attach `download` and the `shard` group to the main CLI."""
    app.command("download")(download)
    app.add_typer(shard_app, name="shard")
