"""OmegaConf resolvers used by conf/ (Hydra). DVC's Hydra composition (`dvc exp run -S ...`) imports every module
of the `hydra_plugins` namespace under its `hydra.plugins_path` (default: the repository root), so this file
registers them there; `pipelines/compose.py` imports it before composing.

`${stcn.parts:N}`: the part indices [0, 1, ..., N-1] of a dataset sharded in N parts, the list that dvc.yaml's
`foreach` of the per-part stages iterates (so `-S datasets.bl30k.shard.parts=8` needs no other edit).
"""

from __future__ import annotations

from omegaconf import ListConfig, OmegaConf


def part_indices(parts: object, _parent_: object = None) -> ListConfig:
    """[0, ..., parts-1] for a whole number of parts 1..MAX_PARTS (stcn.data.shards.parallel.check_parts); else a
    one-line error naming the value. A ListConfig, not a list: `OmegaConf.resolve` (DVC's composition resolves in
    place) only stores a container that way."""
    from stcn.data.shards.parallel import check_parts

    where = _parent_._get_full_key(None) if _parent_ is not None else ""  # e.g. datasets.bl30k.shard
    return OmegaConf.create(list(range(check_parts(parts, f"{where}.parts" if where else "shard.parts"))))


OmegaConf.register_new_resolver("stcn.parts", part_indices, replace=True)
