"""The dataset layouts: one class per way a registry dataset's folder is laid out, and everything that follows from it.

A registry dataset's `layout` (conf/config.yaml `datasets:`) names one of `LAYOUTS` (model weights, the `weights:`
entries, are of layout `weights`); `layout_of(ds)` (or `Dataset.layout_type`) gives its object. A layout says,
as data, what every step does with such a dataset:
- `has_year`: whether the entry may declare a DAVIS year;
- `has_stand_in`: whether `stcn download --source bundled` builds a stand-in (the builder: `stcn.data.fetch.sources`);
- `image_sets_2016(ds)` / `resizes_train(ds)`: the post-download steps (`stcn.data.fetch.post_download`);
- `sharded` / `segment_tars`: whether it is sharded, and whether from BL30K segment tars (in parts, streamed);
- `scorer`: "davis", "youtube" or None (not evaluated); `report_columns`: the column names of its report table;
- `has_download_stage` / `own_download_block` / `download_folder(ds)`: what the pipeline's download stage is.

This module sits in the bottom layer beside `stcn.registry` (which checks names against it), so it imports no
other area: the code a layout's step runs lives in that step's module, chosen there by the layout's class.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Protocol

DAVIS_COLUMNS = ("J&F", "J", "F", "FPS", "FPS (AMP)")
YOUTUBE_COLUMNS = ("G", "J seen", "F seen", "J unseen", "F unseen", "FPS", "FPS (AMP)")


class Dataset(Protocol):
    """What a layout reads of a registry entry (`stcn.registry.Dataset`, which imports this module)."""

    name: str
    year: int | None
    splits: tuple[str, ...]
    layout: str

    @property
    def folder(self) -> Path: ...


class Layout:
    """What a layout means for each step; the defaults are those of a dataset of videos or images that is fetched
    into `data/<name>`, sharded and not scored."""

    name: ClassVar[str] = ""
    has_year: ClassVar[bool] = False
    has_stand_in: ClassVar[bool] = True
    sharded: ClassVar[bool] = True
    segment_tars: ClassVar[bool] = False
    scorer: ClassVar[str | None] = None
    report_columns: ClassVar[tuple[str, ...]] = DAVIS_COLUMNS
    has_download_stage: ClassVar[bool] = True
    own_download_block: ClassVar[bool] = False

    def image_sets_2016(self, ds: Dataset) -> bool:
        """Whether a download of `ds` derives DAVIS 2016's `ImageSets/2016` lists."""
        return False

    def resizes_train(self, ds: Dataset) -> bool:
        """Whether a download of `ds` resizes its train split to `train_480p` (when resizing is asked for)."""
        return False

    def download_folder(self, ds: Dataset) -> Path:
        """Where the pipeline's download stage of `ds` writes: the dataset's folder."""
        return ds.folder

    def __repr__(self) -> str:
        return f"<layout {self.name}>"


class Davis(Layout):
    """DAVIS folders (JPEGImages/480p, Annotations/480p, ImageSets/<year>); 2016 or 2017, scored by the DAVIS scorer."""

    name = "davis"
    has_year = True
    scorer = "davis"

    def image_sets_2016(self, ds: Dataset) -> bool:
        return ds.year == 2016


class YouTube(Layout):
    """YouTube-VOS folders (<split>/JPEGImages, <split>/Annotations); scored by the YouTube-VOS scorer."""

    name = "youtube"
    scorer = "youtube"
    report_columns = YOUTUBE_COLUMNS

    def resizes_train(self, ds: Dataset) -> bool:
        return "train" in ds.splits


class Static(Layout):
    """Static image + mask pairs (pre-training): sharded, not scored."""

    name = "static"


class Bl30k(Layout):
    """BL30K segment tars: sharded in parts from the tars (fetched, or streamed one at a time by the shard stages:
    no download stage of its own)."""

    name = "bl30k"
    segment_tars = True
    has_download_stage = False


class Weights(Layout):
    """Model weights (the registry's `weights:` entries): files kept as they are, into models/<name>, with their own
    `download_<name>` options; not a dataset that is sharded, scored or built from the bundled sample."""

    name = "weights"
    has_stand_in = False
    sharded = False
    own_download_block = True

    def download_folder(self, ds: Dataset) -> Path:
        return Path("models") / ds.name


LAYOUTS: dict[str, Layout] = {lay.name: lay for lay in (Davis(), YouTube(), Static(), Bl30k(), Weights())}


def layout_of(ds: Dataset) -> Layout:
    """The layout object of registry entry `ds` (its name is checked when the registry is read)."""
    return LAYOUTS[ds.layout]


def scored_layouts() -> list[str]:
    """The names of the layouts that are evaluated (have a scorer), in order."""
    return [name for name, lay in LAYOUTS.items() if lay.scorer]
