"""Space-time memory read-out: L2 affinity, top-k softmax and soft multi-object aggregation."""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F


def l2_affinity(mem_key: torch.Tensor, query_key: torch.Tensor) -> torch.Tensor:
    """(2 k_m^T k_q - |k_m|^2) / sqrt(C): negative squared L2 without the query term.

    mem_key (B, C, N), query_key (B, C, HW) -> (B, N, HW).
    """
    c = mem_key.shape[1]
    a_sq = mem_key.pow(2).sum(1).unsqueeze(2)
    ab = mem_key.transpose(1, 2) @ query_key
    return (2 * ab - a_sq) / math.sqrt(c)


def topk_softmax(affinity: torch.Tensor, k: int) -> torch.Tensor:
    """Softmax over the k largest memory entries of each query pixel (dim 1), zero elsewhere."""
    k = min(k, affinity.shape[1])
    values, indices = torch.topk(affinity, k=k, dim=1)
    return torch.zeros_like(affinity).scatter_(1, indices, torch.softmax(values, dim=1))


def topk_readout(affinity: torch.Tensor, mem_value: torch.Tensor, k: int) -> torch.Tensor:
    """`readout(topk_softmax(affinity), mem_value)` without the dense (N, HW) weight matrix.

    affinity (N, HW), mem_value (K, CV, N) -> (K, CV, HW): gathers only the k selected memory
    entries per query pixel, so the cost does not grow with the memory size.
    """
    k = min(k, affinity.shape[0])
    values, indices = torch.topk(affinity, k=k, dim=0)  # (k, HW)
    weights = torch.softmax(values, dim=0)  # in the affinity's precision (fp32 unless bf16/fp16 throughout)
    out = mem_value[:, :, indices[0]].to(weights.dtype) * weights[0]
    for j in range(1, k):
        out += mem_value[:, :, indices[j]].to(weights.dtype) * weights[j]
    return out


def query_affinity(mem_key: torch.Tensor, query_key: torch.Tensor) -> torch.Tensor:
    """`l2_affinity` transposed, one row per query pixel: mem_key (C, N), query_key (C, HW) -> (HW, N).

    Row-major per query pixel, the top-k over the memory runs along contiguous rows.
    """
    c = mem_key.shape[0]
    a_sq = mem_key.pow(2).sum(0).unsqueeze(0)
    ab = query_key.t() @ mem_key
    return (2 * ab - a_sq) / math.sqrt(c)


def sparse_topk_readout(affinity: torch.Tensor, mem_value: torch.Tensor, k: int) -> torch.Tensor:
    """`readout(topk_softmax(...), mem_value)` as one sparse (k entries per query pixel) matrix product, in fp32.

    affinity (HW, N) from `query_affinity`, mem_value (K, CV, N) -> (K, CV, HW), laid out channels-last
    (the (HW, CV) product transposed), which is what the decoder's convolutions want.
    """
    hw, n = affinity.shape
    k = min(k, n)
    values, indices = torch.topk(affinity.float(), k=k, dim=1)  # (HW, k)
    weights = torch.softmax(values, dim=1)
    rows = torch.arange(0, hw * k + 1, k, device=affinity.device)
    with warnings.catch_warnings(), torch.autocast(affinity.device.type, enabled=False):
        warnings.simplefilter("ignore", UserWarning)  # sparse CSR tensors are a "beta" feature: silence its notice
        sparse = torch.sparse_csr_tensor(rows, indices.reshape(-1), weights.reshape(-1), (hw, n))
        out = torch.stack([sparse @ v.t().float() for v in mem_value])  # (K, HW, CV)
    return out.transpose(1, 2)


def full_softmax(affinity: torch.Tensor) -> torch.Tensor:
    """The training-time affinity: softmax over all memory entries (max-subtracted, stable)."""
    return torch.softmax(affinity, dim=1)


def readout(affinity: torch.Tensor, mem_value: torch.Tensor) -> torch.Tensor:
    """Memory values (B, CV, N) weighted by the affinity (B, N, HW) -> (B, CV, HW)."""
    return torch.bmm(mem_value, affinity)


def aggregate(prob: torch.Tensor) -> torch.Tensor:
    """Soft aggregation of K object probabilities (K, ...) into K+1 channels (background first).

    p_bg = prod(1 - p_i); clamp to (1e-7, 1 - 1e-7); logits log(p / (1 - p)); softmax over channels.
    """
    new_prob = torch.cat([torch.prod(1 - prob, dim=0, keepdim=True), prob], 0).clamp(1e-7, 1 - 1e-7)
    logits = torch.log(new_prob / (1 - new_prob))
    return F.softmax(logits, dim=0)
