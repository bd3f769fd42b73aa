"""DAVIS and YouTube-VOS folder layouts: which sequences, frames and annotations a split holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from stcn.errors import UserError
from stcn.names import check_name, inside

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}  # a video given as one file (decoded with OpenCV)


@dataclass
class Sequence:
    """One video: its frames in order, the annotated frames, and which frames need output."""

    name: str
    frames: list[Path]
    annotations: dict[str, Path] = field(default_factory=dict)  # frame stem -> mask png
    required: set[str] | None = None  # frame stems that need an output mask (None: all)

    @property
    def stems(self) -> list[str]:
        return [p.stem for p in self.frames]


def list_frames(folder: Path) -> list[Path]:
    """Frame images of a folder in name order; a missing or empty folder is a user error."""
    if not folder.is_dir():
        raise UserError(f"frame folder not found: {folder}")
    frames = sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not frames:
        raise UserError(f"no frames (*.jpg, *.png) in {folder}")
    return frames


def _masks(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.glob("*.png"))} if folder.is_dir() else {}


def davis_sequences(root: str | Path, year: str | int, split: str) -> list[Sequence]:
    """Sequences of a DAVIS root (`JPEGImages/480p`, `Annotations/480p`, `ImageSets/<year>/<split>.txt`).

    Your own data in DAVIS layout may drop the `480p` level and the `ImageSets` folder: without
    `ImageSets` every sequence of `JPEGImages` is used, whatever the split. Each line of a split list must be a
    name of `stcn.names` (no `/`, no `..`): it becomes a folder under the root and under the output.
    """
    root = Path(root)
    level = "480p" if (root / "JPEGImages" / "480p").is_dir() else ""
    images = root / "JPEGImages" / level
    annotations = root / "Annotations" / level
    split_file = root / "ImageSets" / str(year) / f"{split}.txt"
    if not images.is_dir() or not annotations.is_dir():
        raise UserError(f"not a DAVIS root (needs JPEGImages[/480p] and Annotations[/480p]): {root}")
    if (root / "ImageSets").is_dir():
        if not split_file.is_file():
            raise UserError(f"DAVIS split list not found: {split_file}")
        names = [n.strip() for n in split_file.read_text().splitlines() if n.strip()]
        for name in names:  # each line becomes a folder under the root (and under an output folder)
            check_name(name, f"sequence name in {split_file}")
            inside(images, name, f"sequence in {split_file}")
    else:
        names = sorted(p.name for p in images.iterdir() if p.is_dir())
        if not names:
            raise UserError(f"no sequence folders in {images}")
    seqs = []
    for name in names:
        masks = _masks(annotations / name)
        if not masks:
            raise UserError(f"no annotations for DAVIS sequence {name!r} in {annotations / name}")
        seqs.append(Sequence(name, list_frames(images / name), masks))
    return seqs


def detect_layout(root: str | Path) -> str:
    """`davis` (JPEGImages at the top) or `youtube` (<split>/JPEGImages) for a dataset folder."""
    root = Path(root)
    if (root / "JPEGImages").is_dir():
        return "davis"
    if root.is_dir() and any((p / "JPEGImages").is_dir() for p in root.iterdir()):
        return "youtube"
    raise UserError(f"neither DAVIS (JPEGImages/) nor YouTube-VOS (<split>/JPEGImages/) layout: {root}")


def first_frames(seq: Sequence, count: int | None) -> Sequence:
    """`seq` cut to its first `count` frames (None: unchanged)."""
    if count is None or count >= len(seq.frames):
        return seq
    stems = set(seq.stems[:count])
    required = None if seq.required is None else seq.required & stems
    masks = {s: p for s, p in seq.annotations.items() if s in stems}
    return Sequence(seq.name, seq.frames[:count], masks, required)


def youtube_sequences(root: str | Path, split: str) -> list[Sequence]:
    """Sequences of a YouTube-VOS root (`<split>/JPEGImages`, `<split>/Annotations`).

    When `all_frames/<split>_all_frames/JPEGImages` exists, inference runs on all frames and
    output is required only on the frames of the (every-5th-frame) `<split>/JPEGImages` subset.
    """
    root = Path(root)
    subset = root / split / "JPEGImages"
    annotations = root / split / "Annotations"
    if not subset.is_dir() or not annotations.is_dir():
        raise UserError(f"not a YouTube-VOS root (needs {split}/JPEGImages and {split}/Annotations): {root}")
    all_frames = root / "all_frames" / f"{split}_all_frames" / "JPEGImages"
    seqs = []
    for vid in sorted(p.name for p in subset.iterdir() if p.is_dir()):
        required = {p.stem for p in list_frames(subset / vid)}
        source = all_frames / vid if all_frames.is_dir() else subset / vid
        masks = _masks(annotations / vid)
        if not masks:
            raise UserError(f"no annotations for YouTube-VOS video {vid!r} in {annotations / vid}")
        seqs.append(Sequence(vid, list_frames(source), masks, required))
    return seqs
