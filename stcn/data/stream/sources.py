"""The shard sources of a training stream: paths, URLs, brace patterns or dataset folders (`index.json`), several
joined by `::` or in a list, each weighted by a `*N` suffix."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import braceexpand

from stcn.data.shards.store import shard_urls
from stcn.errors import UserError

Sources = str | Path | Sequence[str | Path]


def split_weight(spec: str) -> tuple[str, float]:
    """`PATTERN*5` -> (`PATTERN`, 5.0); no suffix -> weight 1."""
    m = re.fullmatch(r"(.+)\*([0-9]*\.?[0-9]+)", spec.strip())
    pattern, weight = (m.group(1), float(m.group(2))) if m else (spec.strip(), 1.0)
    if weight <= 0:
        raise UserError(f"source weight must be positive: {spec!r}")
    return pattern, weight


def source_groups(urls: Sources, split: str = "train") -> list[tuple[list[str], float]]:
    """(shard URLs, weight) per source, from patterns, dataset folders and `*weight` suffixes."""
    specs = str(urls).split("::") if isinstance(urls, str | Path) else [str(u) for u in urls]
    groups = []
    for spec in specs:
        pattern, weight = split_weight(spec)
        if pattern.endswith(".tar") or "{" in pattern:
            found = list(braceexpand.braceexpand(pattern))
        else:  # a dataset folder / prefix with index.json
            found = shard_urls(pattern, split)
        groups.append((found, weight))
    if not any(found for found, _ in groups):
        raise UserError(f"no shards in {urls!r}")
    return groups


def expand_sources(urls: Sources, split: str = "train") -> tuple[list[str], list[float]]:
    """Shard URLs and their source weights (see `source_groups`), flattened."""
    groups = source_groups(urls, split)
    return [u for found, _ in groups for u in found], [w for found, w in groups for _ in found]
