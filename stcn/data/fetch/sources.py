"""Where a dataset's files come from (how each URL is chosen), and its bundled stand-in.

Which files make up a dataset is declared in the registry (conf/config.yaml `datasets.<name>.files`, read
through `stcn.registry`): per file its Google Drive id (those of the original STCN download scripts) and/or
HTTP URL, an optional checksum, and where its contents go. Edit it (or pass `--url`) to use a mirror.
The bundled stand-in of a dataset is built by its layout, from its year and splits.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from stcn.errors import NeedsInternet, UserError
from stcn.layouts import Bl30k, Davis, Layout, Static, YouTube
from stcn.registry import Dataset, File

SOURCES = ("gdrive", "http", "file", "s3", "bundled")


def own_sources(art: File) -> list[str]:
    """Every source `art` declares, in the order tried: its Drive id, its HTTP URL, then its `urls`."""
    return [*([f"gdrive://{art.gdrive}"] if art.gdrive else []), *([art.http] if art.http else []), *art.urls]


def default_source(ds: Dataset) -> str:
    """gdrive when every file has a Drive id, else http."""
    return "gdrive" if all(f.gdrive for f in ds.files) else "http"


def _join(base: str, name: str, many: bool) -> str:
    """`base` itself when it names one file, else `base/name` (a mirror folder or prefix)."""
    last = PurePosixPath(base.rstrip("/")).name
    if base.endswith("/") or many or "." not in last:
        return base.rstrip("/") + "/" + name
    return base


def file_url(ds: Dataset, art: File, source: str, url: str | None = None) -> str:
    """The URL to fetch `art` from with `source`; `url` overrides (a file, or a mirror folder/prefix)."""
    many = len(ds.files) > 1
    if source == "gdrive":
        if url:
            if many:
                raise UserError(
                    f"--url with --source gdrive needs a single-file dataset; {ds.name} has {len(ds.files)}"
                )
            m = re.search(r"(?:id=|/d/)([\w-]+)", url)
            return "gdrive://" + (m.group(1) if m else url)
        if not art.gdrive:
            raise UserError(f"no Google Drive id known for {ds.name}/{art.name}; use --source http/file/s3 --url ...")
        return "gdrive://" + art.gdrive
    if source == "http":
        if url:
            if not url.startswith(("http://", "https://")):
                raise UserError(f"--source http needs an http(s):// URL, got {url!r}")
            return _join(url, art.name, many)
        if not art.http:
            raise UserError(f"no HTTP URL known for {ds.name}/{art.name}; pass --url (a file URL or a mirror folder)")
        return art.http
    if source == "s3":
        if not url or not url.startswith("s3://"):
            raise UserError(f"--source s3 needs --url s3://bucket/prefix (got {url!r})")
        return _join(url, art.name, many)
    if source == "file":
        if not url:
            raise UserError("--source file needs --url PATH (a local file, a mirror folder, or file://...)")
        local = url.removeprefix("file://")
        return str(Path(local) / art.name) if Path(local).is_dir() else _join(local, art.name, many)
    raise UserError(f"unknown source {source!r} (one of: {', '.join(SOURCES)})")


# --- bundled stand-ins (real DAVIS frames, rearranged into each dataset's layout) ----------------
BUNDLED = Path(__file__).resolve().parents[1] / "bundled"
DAVIS_MINI = BUNDLED / "davis-mini"
MULTI_OBJECT = BUNDLED / "davis17-multiobject-sample"
CREDIT = (
    "Stand-in built by `stcn download --source bundled` from real DAVIS frames and masks\n"
    "(DAVIS: Densely Annotated VIdeo Segmentation, Perazzi et al. 2016 / Pont-Tuset et al. 2017,\n"
    "CC BY-NC 4.0), rearranged into the layout of dataset {name!r}. It is not {name} data.\n"
)
Video = tuple[str, list[tuple[str, Path, Path | None]]]  # (name, [(stem, jpg, png or None)])


def bundled_videos(with_multi_object: bool = True) -> list[Video]:
    """The bundled DAVIS sequences (name order), each frame with its mask."""
    roots = [DAVIS_MINI, *([MULTI_OBJECT] if with_multi_object else [])]
    out = []
    for root in roots:
        for seq in sorted((root / "JPEGImages" / "480p").iterdir()):
            ann = root / "Annotations" / "480p" / seq.name
            frames = [(p.stem, p, ann / f"{p.stem}.png") for p in sorted(seq.glob("*.jpg"))]
            out.append((seq.name, [(s, j, m if m.is_file() else None) for s, j, m in frames]))
    return sorted(out)


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _davis(target: Path, videos: list[Video], lists: dict[str, list[str]], first_only: bool = False) -> None:
    for name, frames in videos:
        for i, (stem, jpg, png) in enumerate(frames):
            _copy(jpg, target / "JPEGImages" / "480p" / name / f"{stem}.jpg")
            if png and (i == 0 or not first_only):
                _copy(png, target / "Annotations" / "480p" / name / f"{stem}.png")
    for rel, names in lists.items():
        (target / "ImageSets" / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / "ImageSets" / rel).write_text("".join(f"{n}\n" for n in names))


def _youtube_split(target: Path, split: str, videos: list[Video], valid: bool) -> None:
    """Every 5th frame in `<split>/JPEGImages`; masks on all of them (train) or on the first (valid)."""
    for name, frames in videos:
        for i, (stem, jpg, png) in enumerate(frames):
            if valid:
                _copy(jpg, target / "all_frames" / f"{split}_all_frames" / "JPEGImages" / name / f"{stem}.jpg")
            if i % 5 == 0:
                _copy(jpg, target / split / "JPEGImages" / name / f"{stem}.jpg")
                if png and (i == 0 or not valid):
                    _copy(png, target / split / "Annotations" / name / f"{stem}.png")


STATIC_SETS = ("fss", "DUTS-TR", "DUTS-TE", "ecssd", "BIG_small", "HRSOD_small")  # static_data.zip's folders


def _static(target: Path, videos: list[Video]) -> None:
    """Every 10th frame as an image + binary (0/255) mask pair, dealt in turn to the six datasets of
    the real archive in its layout: `fss/<class>/<n>.jpg|png` (class = video), `<set>/<name>.jpg|png`."""
    import numpy as np
    from PIL import Image

    picked = [(n, s, j, p) for n, fr in videos for i, (s, j, p) in enumerate(fr) if i % 10 == 0 and p is not None]
    for k, (name, stem, jpg, png) in enumerate(picked):
        subset = STATIC_SETS[k % len(STATIC_SETS)]
        base = target / "fss" / name / str(int(stem) + 1) if subset == "fss" else target / subset / f"{name}_{stem}"
        _copy(jpg, base.with_suffix(".jpg"))
        with Image.open(png) as im:
            labels = np.asarray(im)
        binary = np.where((labels > 0) & (labels < 255), 255, 0).astype(np.uint8)
        Image.fromarray(binary, "L").save(base.with_suffix(".png"))


def bl30k_members(videos: list[Video], head: str = "BL30K/") -> list[tuple[str, Path]]:
    """BL30K tar members in `tar cf` order: all JPEGImages of all videos, then all Annotations."""
    jpgs = [(f"{head}JPEGImages/{n}/{s}.jpg", j) for n, fr in videos for s, j, _ in fr]
    pngs = [(f"{head}Annotations/{n}/{s}.png", p) for n, fr in videos for s, _, p in fr if p]
    return jpgs + pngs


def write_tar(path: str | Path, members: list[tuple[str, Path | bytes]]) -> Path:
    """A deterministic tar (mtime 0, root, 0644) of `(name, file or bytes)`, written atomically."""
    import io
    import tarfile

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, src in members:
            data = src if isinstance(src, bytes) else Path(src).read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 0, 0o644, "", ""
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(path)
    return path


def bundled_bl30k_segments() -> list[list[tuple[str, Path]]]:
    """Members of the two bundled BL30K stand-in segments: a holds every frame and the first half of
    the masks, so those videos' masks continue in segment b."""
    members = bl30k_members(bundled_videos())
    half = len(members) - sum(1 for n, _ in members if "/Annotations/" in n) // 2
    return [members[:half], members[half:]]


def has_stand_in(ds: Dataset) -> bool:
    """Whether `stcn download --source bundled` can build a stand-in of `ds` (its layout's `has_stand_in`)."""
    return ds.layout_type.has_stand_in


def build_bundled(ds: Dataset, target: str | Path, log=lambda _: None) -> Path:
    """Write the bundled stand-in of dataset `ds` into `target` in its layout, with its year and splits."""
    target = Path(target)
    if not has_stand_in(ds):
        raise NeedsInternet(f"skipped: {ds.name} has no bundled source (needs internet: --source gdrive|http|file|s3)")
    target.mkdir(parents=True, exist_ok=True)
    STAND_INS[type(ds.layout_type)](target, ds)
    (target / "BUNDLED_SAMPLE.md").write_text(CREDIT.format(name=ds.name))
    log(f"{ds.name}: bundled stand-in written to {target}")
    return target


def _bundled_lists() -> dict[str, list[str]]:
    """The bundled sample's DAVIS 2017 train and val sequence names."""
    return {s: (DAVIS_MINI / "ImageSets" / "2017" / f"{s}.txt").read_text().split() for s in ("train", "val")}


def _davis_stand_in(target: Path, year: int, splits: tuple[str, ...]) -> None:
    """DAVIS: 2016 the single-object sequences, 2017 all; `ImageSets/<year>/<split>.txt` per split. A split
    without public masks (test-dev) holds the val sequences with their first masks only; a 2017 train/val
    stand-in also holds the 2016 lists, as the release does."""
    names = _bundled_lists()
    videos = bundled_videos(with_multi_object=year != 2016)
    hidden = [s for s in splits if s not in names]
    lists = {f"{year}/{s}.txt": names.get(s, names["val"]) for s in splits}
    if year == 2017 and not hidden:
        lists = {**{f"2016/{s}.txt": names[s] for s in splits}, **lists}
    if hidden:
        videos = [v for v in videos if v[0] in names["val"]]
    # tennis (2 frames) is in no val list: J&F drops the first and last frame, so it cannot be scored
    _davis(target, videos, lists, first_only=bool(hidden))


def _youtube_stand_in(target: Path, splits: tuple[str, ...]) -> None:
    """YouTube-VOS: train holds every bundled video, valid the val sequences and tennis."""
    videos = bundled_videos()
    if "train" in splits:
        _youtube_split(target, "train", videos, valid=False)
    if "valid" in splits:
        keep = [*_bundled_lists()["val"], "tennis"]
        _youtube_split(target, "valid", [v for v in videos if v[0] in keep], valid=True)


def _bl30k_stand_in(target: Path, ds: Dataset) -> None:
    """BL30K: the two bundled segment tars, BL30K_a.tar and BL30K_b.tar."""
    for letter, members in zip("ab", bundled_bl30k_segments(), strict=True):
        write_tar(target / f"BL30K_{letter}.tar", members)


# each layout's stand-in builder (target folder, registry entry), by layout class (stcn.layouts: `has_stand_in`)
STAND_INS: dict[type[Layout], Callable[[Path, Dataset], None]] = {
    Davis: lambda target, ds: _davis_stand_in(target, ds.year or 2017, ds.splits),
    YouTube: lambda target, ds: _youtube_stand_in(target, ds.splits),
    Static: lambda target, ds: _static(target, bundled_videos()),
    Bl30k: _bl30k_stand_in,
}
