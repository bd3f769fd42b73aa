"""`stcn download`: one dataset of the registry fetched (or built, for the bundled stand-ins) into its folder, in its
own layout: each file from its sources (`transport.py`: one file, resumable, checksummed, atomic), archives installed
(`install.py`), then the layout's own steps (`post_download.py`: ImageSets, resizing).

`fetch`, `fetch_first`, `resize_youtube_split`, `NeedsInternet` and `EXIT_NEEDS_INTERNET` stay importable here."""

from __future__ import annotations

from pathlib import Path

from stcn.data.fetch.install import _install_archive, claim_target
from stcn.data.fetch.post_download import davis16_image_sets, resize_youtube_split  # noqa: F401  (re-exported)
from stcn.data.fetch.transport import EXIT_NEEDS_INTERNET, Log, fetch, fetch_first  # noqa: F401  (re-exported)
from stcn.errors import NeedsInternet, UserError  # noqa: F401  (NeedsInternet re-exported)
from stcn.names import check_name, check_relative, inside
from stcn.registry import Dataset, load_registry


def download_dataset(
    name: str | Dataset,
    *,
    source: str | None = None,
    to: str | Path | None = None,
    url: str | None = None,
    sha256: str | None = None,
    resize: bool = True,
    keep_archives: bool = False,
    log: Log = lambda _: None,
    registry: str | Path | None = None,
) -> Path:
    """Fetch (or build, for `bundled`) dataset `name` into `to` (default `data/<name>`) in its own layout.

    `name`: a registry entry, or its name in the registry file `registry` (see `stcn.registry.load_registry`): a
    dataset, or model weights of its `weights:` (kept as files).
    `source` None (and no `url`): each file from its own sources in the registry, tried in order (Drive id, HTTP
    URL, `urls`), each copy verified against the file's checksum.
    Archives are verified, extracted safely, and removed unless `keep_archives`; BL30K segments and
    weights are kept as files. A YouTube-VOS train split is also resized into `train_480p` (`resize`).
    """
    from stcn.data.fetch.sources import SOURCES, build_bundled, default_source, file_url, has_stand_in, own_sources

    ds = name if isinstance(name, Dataset) else load_registry(registry).entry(name)
    own = source is None and not url  # every file from its own sources, in order
    source = source or default_source(ds)
    if source not in SOURCES:
        raise UserError(f"unknown source {source!r} (one of: {', '.join(SOURCES)})")
    target = Path(to) if to else Path("data") / check_name(ds.name, "dataset name")
    for art in ds.files:  # names from the registry stay inside the target (checked there too)
        inside(target, Path(check_name(art.name, f"{ds.name}: file name")), f"{ds.name}: file {art.name}")
        if art.place is not None:
            inside(target, check_relative(art.place, f"{ds.name}: file {art.name}: place"), f"{ds.name}: place")
    if sha256 and len(ds.files) > 1:
        raise UserError(f"--sha256 needs a single-file dataset; {ds.name} has {len(ds.files)} files")
    if source != "bundled" and not ds.files:
        raise UserError(f"{ds.name} declares no files to download (registry `files`); only --source bundled")
    if source != "bundled" or has_stand_in(ds):
        claim_target(target, ds.name)
    if source == "bundled":
        build_bundled(ds, target, log)
    else:
        for art in ds.files:
            where = own_sources(art) if own else [file_url(ds, art, source, url)]
            checksum = f"sha256:{sha256}" if sha256 and ":" not in sha256 else sha256 or art.checksum
            if art.place is None:
                fetch_first(where, target / art.name, checksum=checksum, log=log)
            else:
                _install_archive(where, art, target, checksum, keep_archives, log)
        if ds.layout_type.image_sets_2016(ds):
            davis16_image_sets(target)
    if ds.layout_type.resizes_train(ds) and resize:
        resize_youtube_split(target / "train", target / "train_480p", log=log)
    return target
