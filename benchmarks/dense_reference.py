"""The original STCN evaluation path, re-implemented densely as the in-project speed reference.

It follows the original release's `eval_davis.py` / `inference_core.py` / `network.py` step for step:
the whole video is normalised and padded into one tensor up front, a full-length probability tensor
(K+1, T, 1, H, W) is kept, every frame's key is matched against all memory keys with a dense L2
affinity (N_memory x HW), top-k softmax is written back into that dense matrix (`zero_().scatter_`)
and the read-out is a bmm with it; the K objects are decoded in one batch; the value encoder's
"others" channel is built per object; probabilities are un-padded, resized and arg-maxed at the end.
The weights are the same STCN module's with its BatchNorm layers kept (not folded) in NCHW layout, as
the original runs it; the decoder and the value encoder's fusion run through the original's own
forward code below (out-of-place ReLUs and residual adds), so that changes to our blocks never speed
up the reference. Only the timing matters here: its masks equal ours (tests/test_parity.py checks
ours against the original release's output).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from stcn.inference.frames import image_tensor, pad_to_16, unpad
from stcn.model.blocks import ResBlock
from stcn.model.encoders import ValueEncoder
from stcn.model.memory import aggregate
from stcn.model.network import STCN, Decoder


def dense_affinity(mem_key: torch.Tensor, query_key: torch.Tensor, top_k: int) -> torch.Tensor:
    """Original `get_affinity` + `do_softmax(top_k)`: (1, CK, N), (1, CK, HW) -> dense (1, N, HW)."""
    c = mem_key.shape[1]
    a_sq = mem_key.pow(2).sum(1).unsqueeze(2)
    ab = mem_key.transpose(1, 2) @ query_key
    affinity = (2 * ab - a_sq) / math.sqrt(c)
    values, indices = torch.topk(affinity, k=min(top_k, affinity.shape[1]), dim=1)
    x_exp = torch.exp(values - values[:, 0:1])
    x_exp /= torch.sum(x_exp, dim=1, keepdim=True)
    return affinity.zero_().scatter_(1, indices, x_exp)


def resblock_original(block: ResBlock, x: torch.Tensor) -> torch.Tensor:
    """Original `modules.ResBlock.forward`."""
    r = block.conv1(F.relu(x))
    r = block.conv2(F.relu(r))
    if block.downsample is not None:
        x = block.downsample(x)
    return x + r


def decode_original(dec: Decoder, f16: torch.Tensor, f8: torch.Tensor, f4: torch.Tensor) -> torch.Tensor:
    """Original `network.Decoder.forward` with `modules.UpsampleBlock.forward` inlined."""
    x = resblock_original(dec.compress, f16)
    for block, skip in ((dec.up_16_8, f8), (dec.up_8_4, f4)):
        x = block.skip_conv(skip) + F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = resblock_original(block.out_conv, x)
    x = dec.pred(F.relu(x))
    return F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)


def value_encoder_original(
    enc: ValueEncoder, image: torch.Tensor, f16: torch.Tensor, masks: torch.Tensor
) -> torch.Tensor:
    """Original `modules.ValueEncoder.forward` and `FeatureFusionBlock.forward` (ResNet-18 blocks as ours)."""
    x = torch.cat([image, masks], 1)
    x = enc.maxpool(enc.relu(enc.bn1(enc.conv1(x))))
    x = enc.layer3(enc.layer2(enc.layer1(x)))
    x = resblock_original(enc.fuser.block1, torch.cat([x, f16], 1))
    r = enc.fuser.attention(x)
    return resblock_original(enc.fuser.block2, x + r)


def encode_value_original(model: STCN, frame: torch.Tensor, f16: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Original `encode_value`: per object, 'others' = sum of the other objects' masks (a Python loop)."""
    k = masks.shape[0]
    if k > 1:
        others = torch.cat(
            [torch.sum(masks[[j for j in range(k) if j != i]], dim=0, keepdim=True) for i in range(k)], 0
        )
    else:
        others = torch.zeros_like(masks)
    return value_encoder_original(
        model.value_encoder, frame.expand(k, -1, -1, -1), f16.expand(k, -1, -1, -1), torch.cat([masks, others], 1)
    )


@torch.inference_mode()
def segment_dense(
    model: STCN,
    frames: list[np.ndarray],
    first: np.ndarray,
    ids: list[int],
    top_k: int = 20,
    mem_every: int = 5,
) -> np.ndarray:
    """Label maps (T, H, W) uint8 of a video whose objects `ids` are given on frame 0 (original algorithm)."""
    images = torch.stack([image_tensor(f) for f in frames]).unsqueeze(0)  # (1, T, 3, H, W)
    images, pad = pad_to_16(images)
    t_len, (h, w) = images.shape[1], images.shape[-2:]
    k = len(ids)
    prob = torch.zeros((k + 1, t_len, 1, h, w))
    prob[0] = 1e-7
    masks = torch.from_numpy(np.stack([first == i for i in ids]).astype(np.float32))[:, None]
    masks, _ = pad_to_16(masks)
    with_bg = aggregate(masks[:, 0])  # original `aggregate_wbg` on the given masks
    prob[:, 0] = with_bg[:, None]
    key, _, f16, _, _ = model.encode_key(images[:, 0])
    mem_k = key.flatten(2)  # (1, CK, HW)
    mem_v = encode_value_original(model, images[:, 0], f16, prob[1:, 0]).flatten(2)  # (K, CV, HW)
    last_mem = 0
    for t in range(1, t_len):
        key, thin, f16, f8, f4 = model.encode_key(images[:, t])
        affinity = dense_affinity(mem_k, key.flatten(2), top_k)  # (1, N, HW)
        readout = torch.bmm(mem_v, affinity.expand(k, -1, -1)).view(k, -1, *key.shape[-2:])
        x = torch.cat([readout, thin.expand(k, -1, -1, -1)], 1)
        out = torch.sigmoid(decode_original(model.decoder, x, f8.expand(k, -1, -1, -1), f4.expand(k, -1, -1, -1)))
        prob[:, t] = aggregate(out[:, 0])[:, None]
        if t != t_len - 1 and t - last_mem >= mem_every:
            value = encode_value_original(model, images[:, t], f16, prob[1:, t]).flatten(2)
            mem_k = torch.cat([mem_k, key.flatten(2)], 2)
            mem_v = torch.cat([mem_v, value], 2)
            last_mem = t
    size = first.shape
    labels = np.zeros((t_len, *size), np.uint8)
    lut = np.array([0, *ids], np.uint8)
    for t in range(t_len):
        p = F.interpolate(unpad(prob[:, t], pad), size, mode="bilinear", align_corners=False)
        labels[t] = lut[torch.argmax(p[:, 0], dim=0).numpy()]
    return labels
