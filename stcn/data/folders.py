"""DAVIS and YouTube-VOS folder layouts: which sequences, frames and annotations a split holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from stcn.errors import UserError

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


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
    """Sequences of a DAVIS root (`JPEGImages/480p`, `Annotations/480p`, `ImageSets/<year>/<split>.txt`)."""
    root = Path(root)
    images = root / "JPEGImages" / "480p"
    annotations = root / "Annotations" / "480p"
    split_file = root / "ImageSets" / str(year) / f"{split}.txt"
    if not images.is_dir() or not annotations.is_dir():
        raise UserError(f"not a DAVIS root (needs JPEGImages/480p and Annotations/480p): {root}")
    if not split_file.is_file():
        raise UserError(f"DAVIS split list not found: {split_file}")
    names = [n.strip() for n in split_file.read_text().splitlines() if n.strip()]
    seqs = []
    for name in names:
        masks = _masks(annotations / name)
        if not masks:
            raise UserError(f"no annotations for DAVIS sequence {name!r} in {annotations / name}")
        seqs.append(Sequence(name, list_frames(images / name), masks))
    return seqs


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
