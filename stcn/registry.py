"""The dataset registry: the one place where a dataset's name, layout, DAVIS year, splits and files are declared.

It is the `datasets:` mapping of the project's `conf/config.yaml` (or of any YAML file holding one, such as the
composed `params.yaml`), and beside it the `weights:` mapping: downloadable model weights (files kept as they are,
into models/<name>; entries of layout `weights`, which `datasets:` does not take). `load_registry()` reads them
and returns typed, checked entries; `stcn download`, `stcn evaluate --dataset`, the pipeline and the reports all
take their dataset names and layouts from here.
Which file: an explicit path (`--registry`), else the `STCN_CONFIG` environment variable, else the project's
`conf/config.yaml`. A missing or malformed file, or an unknown name, is a one-line UserError.

The file is input like any other: duplicate keys and YAML aliases/anchors (a "billion laughs" bomb) are refused,
dataset and file names must pass `stcn.names.check_name`, and a file's `place` must be a relative path of names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stcn.errors import UserError
from stcn.layouts import LAYOUTS as LAYOUT_TYPES
from stcn.layouts import Layout, Weights
from stcn.names import check_name, check_relative

ENV = "STCN_CONFIG"
PROJECT_CONFIG = Path(__file__).resolve().parent.parent / "conf" / "config.yaml"
# how a dataset folder is read (stcn.layouts: one class per layout): DAVIS / YouTube-VOS folders, static image +
# mask pairs, BL30K segment tars, and model weights (files kept as they are; not sharded or evaluated)
LAYOUTS = tuple(LAYOUT_TYPES)
DATASET_LAYOUTS = tuple(n for n in LAYOUTS if n != Weights.name)  # what `datasets:` takes
YEARS = (2016, 2017)
ENTRY_KEYS = ("layout", "year", "splits", "description", "files", "root", "download", "shard", "evaluate", "report")
WEIGHTS_KEYS = ("description", "files", "download")
FILE_KEYS = ("name", "gdrive", "http", "urls", "checksum", "place", "marker")


@dataclass(frozen=True)
class File:
    """One downloadable file of a dataset.

    `gdrive` / `http`: its Google Drive id and/or HTTP URL; `urls`: more copies (http(s)://, s3://, file://), tried
    after those, in order, when the file is downloaded from its own sources (no `--source`); `checksum`:
    "sha256:HEX" or "md5:HEX", which every source's copy must match.
    `place`: folder (relative to the dataset folder) that receives the archive's dataset root; None keeps the
    file itself (BL30K segments, model weights) as `<folder>/<name>`.
    `marker`: an entry whose parent is the archive's dataset root (the archive may wrap it in folders).
    """

    name: str
    gdrive: str | None = None
    http: str | None = None
    urls: tuple[str, ...] = ()
    checksum: str | None = None
    place: str | None = "."
    marker: str | None = "JPEGImages"


@dataclass(frozen=True)
class Dataset:
    """One registry entry. `splits`: the splits the dataset holds (its bundled stand-in has the same);
    `root`: a folder you already have (no download); `download` / `shard` / `evaluate` / `report`: the options
    of those steps (the pipeline's; the library ignores them)."""

    name: str
    layout: str
    year: int | None = None
    splits: tuple[str, ...] = ()
    description: str = ""
    files: tuple[File, ...] = ()
    root: str | None = None
    download: dict[str, Any] | None = None
    shard: dict[str, Any] | None = None
    evaluate: dict[str, Any] | None = None
    report: dict[str, Any] | None = None

    @property
    def folder(self) -> Path:
        """Where the dataset lives: its `root`, else `data/<name>` (where `stcn download` puts it)."""
        return Path(self.root) if self.root else Path("data") / self.name

    @property
    def layout_type(self) -> Layout:
        """The object of its layout (`stcn.layouts`): what each step does with this dataset."""
        return LAYOUT_TYPES[self.layout]

    @property
    def davis_year(self) -> str:
        """The DAVIS year as the scorers take it ("2016" or "2017"; 2017 when not declared)."""
        return str(self.year or 2017)


@dataclass(frozen=True)
class Registry:
    """The datasets of one registry file, in declaration order, and its model weights (`weights:`)."""

    datasets: dict[str, Dataset] = field(default_factory=dict)
    source: str = ""
    weights: dict[str, Dataset] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.datasets)

    def dataset(self, name: str) -> Dataset:
        """The entry of `name`, or a UserError listing the known names."""
        try:
            return self.datasets[name]
        except KeyError:
            raise UserError(f"unknown dataset {name!r} (known in {self.source}: {', '.join(self.datasets)})") from None

    def entry(self, name: str) -> Dataset:
        """What `stcn download NAME` fetches: the weights entry `name`, else the dataset (`dataset`'s error)."""
        return self.weights[name] if name in self.weights else self.dataset(name)

    def __iter__(self):
        return iter(self.datasets.values())


def config_path(path: str | Path | None = None) -> Path:
    """The registry file: `path`, else $STCN_CONFIG, else the project's conf/config.yaml."""
    return Path(path or os.environ.get(ENV) or PROJECT_CONFIG)


def load_registry(path: str | Path | None = None) -> Registry:
    """The checked registry of the YAML file at `path` (see `config_path`): its `datasets:` mapping."""

    where = config_path(path)
    try:
        text = where.read_text()
    except OSError as e:
        raise UserError(f"cannot read the dataset registry {where}: {e.strerror or e} (set --registry or "
                        f"{ENV})") from None  # fmt: skip
    data = read_yaml_text(text, f"the dataset registry {where}")
    if not isinstance(data, Mapping) or not isinstance(data.get("datasets"), Mapping):
        raise UserError(f"{where} has no `datasets:` mapping (the dataset registry)")
    return parse_registry(data["datasets"], str(where), data.get("weights"))


def read_yaml_text(text: str, what: str) -> Any:
    """YAML `text` read with `strict_loader` (no duplicate keys, no anchors or aliases: no "billion laughs");
    a one-line UserError naming `what` when it is not valid."""
    import yaml

    try:
        return yaml.load(text, Loader=strict_loader())  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        raise UserError(f"{what} is not valid YAML: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise UserError(f"{what} is not valid YAML: nested too deeply") from None


def read_yaml(path: str | Path, what: str = "") -> Any:
    """The YAML file at `path` read strictly (see `read_yaml_text`); an unreadable file is one line too."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {what or path}: {getattr(e, 'strerror', None) or e}") from None
    return read_yaml_text(text, what or str(path))


def strict_loader():
    """A yaml SafeLoader that refuses duplicate mapping keys and aliases/anchors (one-line errors)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.YAMLError(f"YAML aliases (*{event.anchor}) are not allowed ({_at(event.start_mark)})")
            event = self.peek_event()
            if getattr(event, "anchor", None):
                raise yaml.YAMLError(f"YAML anchors (&{event.anchor}) are not allowed ({_at(event.start_mark)})")
            return super().compose_node(parent, index)

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise yaml.YAMLError(f"duplicate key {key!r} ({_at(key_node.start_mark)})")
                seen.add(key)
            return super().construct_mapping(node, deep)

    return StrictLoader


def _at(mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def parse_registry(
    datasets: Mapping[str, Any], source: str = "the registry", weights: Mapping[str, Any] | None = None
) -> Registry:
    """Typed, checked entries of a `datasets:` mapping and of a `weights:` one (as read from YAML or composed by
    Hydra)."""
    if weights is not None and not isinstance(weights, Mapping):
        raise UserError(f"{source}: weights must be a mapping of model weights, got {weights!r}")
    entries = {str(name): _entry(str(name), entry, source) for name, entry in datasets.items()}
    files = {str(name): _weights(str(name), entry, source) for name, entry in (weights or {}).items()}
    both = sorted(set(entries) & set(files))
    if both:
        raise UserError(f"{source}: {both[0]!r} is declared both in datasets and in weights (one name each)")
    return Registry(entries, source, files)


def _weights(name: str, entry: Any, source: str) -> Dataset:
    """A `weights:` entry: files kept as they are (into models/<name>), as a registry entry of layout `weights`."""
    where = f"{source}: weights.{name}"
    check_name(name, f"{source}: weights name")
    if not isinstance(entry, Mapping) or not isinstance(entry.get("files"), list):
        raise UserError(f"{where} must be a mapping with its `files`, got {entry!r}")
    unknown = sorted(set(entry) - set(WEIGHTS_KEYS))
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(WEIGHTS_KEYS)})")
    return Dataset(name, Weights.name, description=str(entry.get("description") or ""),
                   files=tuple(_file(f"{where}.files", f) for f in entry["files"]),
                   **_options(entry, ("download",), where))  # fmt: skip


def _entry(name: str, entry: Any, source: str) -> Dataset:
    where = f"{source}: datasets.{name}"
    check_name(name, f"{source}: dataset name")
    if not isinstance(entry, Mapping):
        raise UserError(f"{where} must be a mapping with at least `layout`, got {entry!r}")
    unknown = sorted(set(entry) - set(ENTRY_KEYS))
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(ENTRY_KEYS)})")
    layout = entry.get("layout")
    if layout == Weights.name:
        raise UserError(f"{where}.layout: model weights are declared in the `weights:` mapping, not in datasets")
    if layout not in LAYOUTS:
        raise UserError(f"{where}.layout must be one of {', '.join(DATASET_LAYOUTS)}, got {layout!r}")
    year = entry.get("year")
    if year is not None and (not LAYOUT_TYPES[layout].has_year or year not in YEARS):
        raise UserError(f"{where}.year: only a davis layout has a year (2016 or 2017), got {year!r}")
    splits = entry.get("splits") or []
    if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
        raise UserError(f"{where}.splits must be a list of split names, got {splits!r}")
    for split in splits:  # each becomes a file name (ImageSets/<year>/<split>.txt, <split>/JPEGImages)
        check_name(split, f"{where}.splits")
    root = entry.get("root")
    return Dataset(name, layout, year, tuple(splits), str(entry.get("description") or ""),
                   tuple(_file(f"{where}.files", f) for f in entry.get("files") or []),
                   None if root is None else str(root),
                   **_options(entry, ("download", "shard", "evaluate", "report"), where))  # fmt: skip


def _options(entry: Mapping[str, Any], keys: tuple[str, ...], where: str) -> dict[str, dict[str, Any] | None]:
    """An entry's option blocks `keys`, each a mapping ({} when written empty or null) or None when absent."""
    options = {}
    for key in keys:
        value = entry.get(key)
        if key in entry and value is not None and not isinstance(value, Mapping):
            raise UserError(f"{where}.{key} must be a mapping, got {value!r}")
        options[key] = dict(value or {}) if key in entry else None
    return options


def _file(where: str, entry: Any) -> File:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
        raise UserError(f"{where}: each file is a mapping with a `name`, got {entry!r}")
    unknown = sorted(set(entry) - set(FILE_KEYS))
    if unknown:
        raise UserError(f"{where}: file {entry['name']}: unknown key {unknown[0]!r} (known: {', '.join(FILE_KEYS)})")
    check_name(entry["name"], f"{where}: file name")
    if entry.get("place") is not None:
        check_relative(str(entry["place"]), f"{where}: file {entry['name']}: place")
    if entry.get("marker") is not None:
        check_name(str(entry["marker"]), f"{where}: file {entry['name']}: marker")
    urls = entry.get("urls") or []
    if not isinstance(urls, list) or not all(isinstance(u, str) and "://" in u for u in urls):
        raise UserError(f"{where}: file {entry['name']}: urls must be a list of URLs (http(s)://, s3://, file://), "
                        f"got {urls!r}")  # fmt: skip
    rest = {k: None if entry[k] is None else str(entry[k]) for k in entry if k != "urls"}
    return File(**rest, urls=tuple(urls))
