"""Which files make up each dataset, where they come from, and how their URL is chosen.

`DATASETS` is the registry: per dataset a list of `Artifact`s (one downloadable file each) with
its Google Drive id (those of the original STCN download scripts) and/or HTTP URL, an optional
checksum, and where its contents go in the target folder. Edit it (or pass `--url`) to use a mirror.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from stcn.errors import NeedsInternet, UserError

SOURCES = ("gdrive", "http", "file", "s3", "bundled")
DAVIS_HTTP = "https://data.vision.ee.ethz.ch/csergi/share/davis/"


@dataclass(frozen=True)
class Artifact:
    """One downloadable file of a dataset.

    `place`: folder (relative to the dataset target) that receives the archive's dataset root;
    None keeps the file itself (BL30K segments, model weights) as `<target>/<name>`.
    `marker`: an entry whose parent is the archive's dataset root (the archive may wrap it in folders).
    """

    name: str
    gdrive: str | None = None
    http: str | None = None
    checksum: str | None = None  # "sha256:HEX" or "md5:HEX"
    place: str | None = "."
    marker: str | None = "JPEGImages"


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    artifacts: tuple[Artifact, ...]
    bundled: bool = True  # a stand-in can be built from the bundled DAVIS sample


# Google Drive ids of the six BL30K segments, a..f, from the original release's download script
BL30K_GDRIVE = {
    "a": "1z9V5zxLOJLNt1Uj7RFqaP2FZWKzyXvVc",
    "b": "11-IzgNwEAPxgagb67FSrBdzZR7OKAEdJ",
    "c": "1ZfIv6GTo-OGpXpoKen1fUvDQ0A_WoQ-Q",
    "d": "1G4eXgYS2kL7_Cc0x3N1g1x7Zl8D_aU_-",
    "e": "1Y8q0V_oBwJIY27W_6-8CD1dRqV2gNTdE",
    "f": "1nawBAazf_unMv46qGBHhWcQ4JXZ5883r",
}


def _bl30k(letter: str) -> Artifact:
    return Artifact(f"BL30K_{letter}.tar", gdrive=BL30K_GDRIVE[letter], place=None, marker=None)


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset("static", "static image datasets (ECSSD, DUTS, FSS, HRSOD, BIG) for pretraining",
                (Artifact("static_data.zip", gdrive="1wUJq3HcLdN-z1t4CsUhjeZ9BVDb9YKLd", marker=None),)),
        Dataset("davis16", "DAVIS 2016 (480p)",
                (Artifact("DAVIS-data.zip", gdrive="198aRlh5CpAoFz0hfRgYbiNenn_K8DxWD",
                          http="https://graphics.ethz.ch/Downloads/Data/Davis/DAVIS-data.zip"),)),
        Dataset("davis17", "DAVIS 2017 train+val (480p)",
                (Artifact("DAVIS-2017-trainval-480p.zip", gdrive="1kiaxrX_4GuW6NmiVuKGSGVoKGWjOdp6d",
                          http=DAVIS_HTTP + "DAVIS-2017-trainval-480p.zip"),)),
        Dataset("davis17_testdev", "DAVIS 2017 test-dev (480p)",
                (Artifact("DAVIS-2017-test-dev-480p.zip", gdrive="1fmkxU2v9cQwyb62Tj1xFDdh2p4kDsUzD",
                          http=DAVIS_HTTP + "DAVIS-2017-test-dev-480p.zip"),)),
        Dataset("youtube19", "YouTube-VOS 2019 train + valid (+ valid all frames)",
                (Artifact("train.zip", gdrive="13Eqw0gVK-AO5B-cqvJ203mZ2vzWck9s4", place="train"),
                 Artifact("valid.zip", gdrive="1o586Wjya-f2ohxYf9C1RlRH-gkrzGS8t", place="valid"),
                 Artifact("valid_all_frames.zip", gdrive="1rWQzZcMskgpEQOZdJPJ7eTmLCBEIIpEN",
                          place="all_frames/valid_all_frames"))),
        Dataset("youtube18", "YouTube-VOS 2018 valid (+ valid all frames)",
                (Artifact("valid.zip", gdrive="1-QrceIl5sUNTKz7Iq0UsWC6NLZq7girr", place="valid"),
                 Artifact("valid_all_frames.zip", gdrive="1yVoHM6zgdcL348cFpolFcEl4IC1gorbV",
                          place="all_frames/valid_all_frames"))),
        Dataset("bl30k", "BL30K synthetic videos: six ~115 GB tar segments, kept as tars (sharded from them)",
                tuple(_bl30k(c) for c in "abcdef")),
        Dataset("pretrained", "pretrained STCN weights (s012: static+BL30K+main, s03: static+main) and the "
                              "MiVOS-STCN interaction modules (S2M, fusion)",
                (Artifact("stcn.pth", gdrive="1mRrE0uCI2ktdWlUgapJI_KmgeIiF2eOm", place=None, marker=None),
                 Artifact("stcn_s03.pth", gdrive="1JllXPJZola0G-g1aUQfXe9nLMBioj-aH", place=None, marker=None),
                 Artifact("s2m.pth", gdrive="1HKwklVey3P2jmmdmrACFlkXtcvNxbKMM", place=None, marker=None),
                 Artifact("fusion_stcn.pth", gdrive="1MAbWHrOjlze9vPQdW-HxMnvjPpaZlfLv", place=None, marker=None)),
                bundled=False),
    ]
}  # fmt: skip


def dataset(name: str) -> Dataset:
    """The registry entry of `name`, or a UserError listing the known datasets."""
    try:
        return DATASETS[name]
    except KeyError:
        raise UserError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})") from None


def default_source(ds: Dataset) -> str:
    """gdrive when every file has a Drive id, else http."""
    return "gdrive" if all(a.gdrive for a in ds.artifacts) else "http"


def _join(base: str, name: str, many: bool) -> str:
    """`base` itself when it names one file, else `base/name` (a mirror folder or prefix)."""
    last = PurePosixPath(base.rstrip("/")).name
    if base.endswith("/") or many or "." not in last:
        return base.rstrip("/") + "/" + name
    return base


def artifact_url(ds: Dataset, art: Artifact, source: str, url: str | None = None) -> str:
    """The URL to fetch `art` from with `source`; `url` overrides (a file, or a mirror folder/prefix)."""
    many = len(ds.artifacts) > 1
    if source == "gdrive":
        if url:
            if many:
                raise UserError(
                    f"--url with --source gdrive needs a single-file dataset; {ds.name} has {len(ds.artifacts)}"
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


def build_bundled(name: str, target: str | Path, log=lambda _: None) -> Path:
    """Write the bundled stand-in of dataset `name` into `target` in that dataset's own layout."""
    ds, target = dataset(name), Path(target)
    if not ds.bundled:
        raise NeedsInternet(f"skipped: {name} has no bundled source (needs internet: --source gdrive|http|file|s3)")
    target.mkdir(parents=True, exist_ok=True)
    videos = bundled_videos()
    mini = bundled_videos(with_multi_object=False)
    val = (DAVIS_MINI / "ImageSets" / "2017" / "val.txt").read_text().split()
    train = (DAVIS_MINI / "ImageSets" / "2017" / "train.txt").read_text().split()
    if name == "davis16":
        _davis(target, mini, {"2016/train.txt": train, "2016/val.txt": val})
    elif name == "davis17":
        lists = {
            "2016/train.txt": train,
            "2016/val.txt": val,
            "2017/train.txt": train,
            "2017/val.txt": val,  # tennis (2 frames) cannot be scored: J&F drops the first and last frame
        }
        _davis(target, videos, lists)
    elif name == "davis17_testdev":
        _davis(target, [v for v in videos if v[0] in val], {"2017/test-dev.txt": val}, first_only=True)
    elif name in ("youtube19", "youtube18"):
        if name == "youtube19":
            _youtube_split(target, "train", videos, valid=False)
        _youtube_split(target, "valid", [v for v in videos if v[0] in [*val, "tennis"]], valid=True)
    elif name == "static":
        _static(target, videos)
    elif name == "bl30k":
        for letter, members in zip("ab", bundled_bl30k_segments(), strict=True):
            write_tar(target / f"BL30K_{letter}.tar", members)
    (target / "BUNDLED_SAMPLE.md").write_text(CREDIT.format(name=name))
    log(f"{name}: bundled stand-in written to {target}")
    return target
