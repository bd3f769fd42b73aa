"""The inference memory: keys shared by all objects, values per object group, one temporary slot.

Objects that enter at the same frame form a group; a group reads only the memory frames added since
it entered (as the official YouTube-VOS evaluation keeps one bank per object). The affinity is
computed once over all memory frames; each group takes its top-k over its own frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from stcn.inference.slots import FrameSlots
from stcn.model.memory import query_affinity, sparse_topk_readout


@dataclass
class _Entry:
    key: torch.Tensor  # (CK, HW)
    values: dict[int, torch.Tensor]  # group -> (K_g, CV, HW)
    pinned: bool  # a group's first frame: never evicted


class MemoryBank(FrameSlots):
    """Memory frames for all object groups, with optional eviction to bound memory use."""

    def add(
        self,
        key: torch.Tensor,
        values: dict[int, torch.Tensor],
        temporary: bool = False,
        pinned: bool = False,
    ) -> None:
        """Add a frame's key (CK, h, w) and per-group values (K_g, CV, h, w); clears the temporary slot."""
        self._admit(_Entry(key.flatten(1), {g: v.flatten(2) for g, v in values.items()}, pinned), temporary)

    def read(self, query_key: torch.Tensor) -> dict[int, torch.Tensor]:
        """Read-out (K_g, CV, h, w) for every group from a query key (CK, h, w)."""
        h, w = query_key.shape[-2:]
        entries = self.entries + ([self.temp] if self.temp is not None else [])
        keys = torch.cat([e.key for e in entries], 1)
        affinity = query_affinity(keys, query_key.flatten(1))  # (HW, N)
        hw = entries[0].key.shape[1]
        out = {}
        for group in entries[-1].values:
            first = next(i for i, e in enumerate(entries) if group in e.values)
            values = torch.cat([e.values[group] for e in entries[first:]], 2)  # (K_g, CV, N_g)
            read = sparse_topk_readout(affinity[:, first * hw :], values, self.top_k)
            out[group] = read.view(values.shape[0], -1, h, w)
        return out
