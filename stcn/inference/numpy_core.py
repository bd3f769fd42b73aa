"""Torch-free host code for the ONNX Runtime backend: frames, memory read-out and aggregation in numpy.

    model = OnnxSTCN(export_folder)                      # stcn.inference.ort_backend
    core = NumpyCore(model, InferenceSettings())
    prob = core.step(image_array(rgb), one_hot_array(mask, ids) if t == 0 else None, ids if t == 0 else None)
    labels = labels_from_array(prob, rgb.shape[:2])

The same steps as `InferenceCore` (official memory schedule, object groups, temporary slot, bounded memory,
L2 affinity, top-k softmax read-out, soft aggregation) in fp32 numpy, so that `stcn segment --backend
onnxruntime` runs where PyTorch is not installed. OpenCV does the resizing (bicubic frames, nearest masks,
bilinear probabilities; half-pixel centres and no antialiasing, as the PyTorch path).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from stcn.inference.settings import InferenceSettings
from stcn.inference.slots import FrameSlots, MemorySchedule, padding_16, unpad

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def resized_size(h: int, w: int, resolution: int) -> tuple[int, int]:
    """(height, width) with the shorter side `resolution` and the longer one truncated, as torchvision's resize."""
    if h <= w:
        return resolution, int(resolution * w / h)
    return int(resolution * h / w), resolution


def image_array(rgb: np.ndarray, resolution: int | None = None) -> np.ndarray:
    """uint8 (H, W, 3) -> normalised float32 (3, H, W); optionally bicubic-resized to shorter side `resolution`."""
    x = (rgb.astype(np.float32) / 255 - MEAN) / STD
    if resolution is not None:
        h, w = resized_size(*rgb.shape[:2], resolution)
        x = cv2.resize(x, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def one_hot_array(labels: np.ndarray, ids: list[int], resolution: int | None = None) -> np.ndarray:
    """Label map (H, W) -> float32 masks (K, H, W), one per id; optionally nearest-resized."""
    if resolution is not None:
        h, w = resized_size(*labels.shape, resolution)
        labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
    return np.stack([labels == i for i in ids]).astype(np.float32)


def pad_to_16(x: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Zero-pad the last two dims symmetrically to multiples of 16; returns (left, right, top, bottom)."""
    pad = padding_16(*x.shape[-2:])
    widths = [(0, 0)] * (x.ndim - 2) + [(pad[2], pad[3]), (pad[0], pad[1])]
    return np.pad(x, widths), pad


def labels_from_array(prob: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(K+1, h, w) probabilities -> uint8 argmax labels (H, W) (ties to the lowest) after bilinear resize."""
    if tuple(prob.shape[-2:]) != tuple(size):
        planes = [cv2.resize(p, (size[1], size[0]), interpolation=cv2.INTER_LINEAR) for p in prob]
        prob = np.stack(planes)
    return np.argmax(prob, axis=0).astype(np.uint8)


def aggregate(prob: np.ndarray) -> np.ndarray:
    """Soft aggregation of K object probabilities (K, ...) into K+1 channels (background first), fp32."""
    new_prob = np.concatenate([np.prod(1 - prob, axis=0, keepdims=True), prob], 0).clip(1e-7, 1 - 1e-7)
    logits = np.log(new_prob / (1 - new_prob))
    logits -= logits.max(axis=0, keepdims=True)
    e = np.exp(logits)
    return (e / e.sum(axis=0, keepdims=True)).astype(np.float32)


@dataclass
class _Entry:
    key: np.ndarray  # (CK, HW)
    values: dict[int, np.ndarray]  # group -> (K_g, HW, CV): rows per memory pixel, for the gathers
    pinned: bool


class NumpyMemory(FrameSlots):
    """`MemoryBank` in numpy: keys shared by all object groups, values per group, one temporary slot."""

    def add(self, key: np.ndarray, values: dict[int, np.ndarray], temporary: bool = False, pinned: bool = False):
        """Add a frame's key (CK, h, w) and per-group values (K_g, CV, h, w); clears the temporary slot."""
        rows = {g: np.ascontiguousarray(v.reshape(*v.shape[:2], -1).transpose(0, 2, 1)) for g, v in values.items()}
        self._admit(_Entry(key.reshape(key.shape[0], -1), rows, pinned), temporary)

    def read(self, query_key: np.ndarray) -> dict[int, np.ndarray]:
        """Read-out (K_g, CV, h, w) for every group from a query key (CK, h, w): L2 affinity, top-k softmax."""
        c, h, w = query_key.shape
        entries = self.entries + ([self.temp] if self.temp is not None else [])
        keys = np.concatenate([e.key for e in entries], 1)  # (CK, N)
        q = query_key.reshape(c, -1)
        affinity = (2 * (q.T @ keys) - (keys * keys).sum(0)[None]) / np.float32(math.sqrt(c))  # (HW, N)
        hw = entries[0].key.shape[1]
        out = {}
        for group in entries[-1].values:
            first = next(i for i, e in enumerate(entries) if group in e.values)
            values = np.concatenate([e.values[group] for e in entries[first:]], 1)  # (K_g, N_g, CV)
            aff = affinity[:, first * hw :]
            k = min(self.top_k, aff.shape[1])
            index = np.argpartition(aff, aff.shape[1] - k, axis=1)[:, -k:]  # (HW, k), any order
            top = np.take_along_axis(aff, index, 1)
            weights = np.exp(top - top.max(1, keepdims=True))
            weights /= weights.sum(1, keepdims=True)
            read = np.zeros((values.shape[0], h * w, values.shape[2]), np.float32)
            for j in range(k):
                read += values[:, index[:, j]] * weights[None, :, j, None]
            out[group] = read.transpose(0, 2, 1).reshape(values.shape[0], -1, h, w)
        return out


class NumpyCore(MemorySchedule):
    """`InferenceCore` for a numpy model (`OnnxSTCN`): segments a video frame by frame with a growing memory."""

    def __init__(self, model, settings: InferenceSettings | None = None):
        super().__init__(settings)
        self.model = model
        self.memory = NumpyMemory(self.settings.top_k, self.settings.max_memory_frames)

    def step(
        self,
        image: np.ndarray,
        masks: np.ndarray | None = None,
        object_ids: list[int] | None = None,
        is_last: bool = False,
        need_output: bool = True,
    ) -> np.ndarray | None:
        """As `InferenceCore.step`: image (3, H, W), masks (M, H, W) for `object_ids`; (1 + K, H, W) or None."""
        given = masks is not None and len(object_ids or []) > 0
        if (plan := self._next_frame(given, is_last, need_output)) is None:
            return None
        is_memory, remember = plan
        x, pad = pad_to_16(image)
        x = x[None]
        key, thin, f16, f8, f4 = self.model.encode_key(x)
        if self.object_ids and len(self.memory):
            prob = self._segment(key[0], thin, f8, f4)
        else:
            prob = np.zeros((1, *x.shape[-2:]), np.float32)
        if given:
            prob = self._merge(prob, pad_to_16(masks.astype(np.float32))[0], object_ids)
        if remember:
            value = self.model.encode_value(x, f16, prob[1:, None])
            values = {g: value[channels] for g, channels in enumerate(self.groups)}
            self.memory.add(key[0], values, temporary=not is_memory, pinned=given)
            if is_memory:
                self.last_memory_t = self.t
        return unpad(prob, pad)

    def _segment(self, key: np.ndarray, thin: np.ndarray, f8: np.ndarray, f4: np.ndarray) -> np.ndarray:
        readouts = self.memory.read(key)
        object_prob = np.empty((len(self.object_ids), f4.shape[-2] * 4, f4.shape[-1] * 4), np.float32)
        for group, channels in enumerate(self.groups):
            object_prob[channels] = self.model.decode(readouts[group], thin, f8, f4)[:, 0]
        return aggregate(object_prob)

    def _merge(self, prob: np.ndarray, masks: np.ndarray, object_ids: list[int]) -> np.ndarray:
        """Put the given masks into the frame's probabilities (official YouTube-VOS rule)."""
        if new := self._add_objects(object_ids):
            prob = np.concatenate([prob, np.zeros((new, *prob.shape[1:]), np.float32)], 0)
        objects = prob[1:].copy()
        objects[:, masks.sum(0) > 0.5] = 0
        for mask, obj in zip(masks, object_ids, strict=True):
            objects[self.object_ids.index(obj)] = mask
        return aggregate(objects)
