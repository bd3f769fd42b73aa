"""The interactive core (MiVOS-STCN): one user interaction -> masks for the whole video.

    core = InteractiveCore(stcn, s2m, fusion, images, num_objects=2)
    labels = core.interact(frame=12, scribbles=scribble_map)   # (T, H, W) uint8, 0 = background

`scribble_map` is (H, W) int: object id where a stroke of that object lies, -1 elsewhere (0 =
background strokes). A round can also start from a full mask (an imported mask, or strokes turned
into a mask first and edited, as the web page does):

    mask = core.mask_from_scribbles(frame=12, scribbles=scribble_map)   # (H, W) uint8, state unchanged
    core.apply_mask(frame=12, labels=mask)                               # this frame's mask, propagated

Ids above the current object count add objects (their channels start empty on every frame).

The schedule follows MiVOS-STCN's DAVIS processor: interactions are counted
from 0; when the count reaches the head of `schedule` the head is dropped and the new mask is
propagated, otherwise only the interacted frame is replaced. `schedule=None` propagates every time.

Propagation from frame t: frame t joins the "certain" memory (every propagated interaction so far,
kept for later rounds); a forward pass runs to the next interacted frame (exclusive) or the end, a
backward pass to the previous one or the start; each pass's memory is the certain memory plus its
own frames (every `mem_every` frames from t, never the pass's last frame), bounded by
`settings.max_memory_frames` (oldest pass frames evicted first; certain frames are kept). A pass
bounded by an interacted frame c fuses the propagated probabilities with the previous round's,
using the difference at t, its attention through W(key_t, key_i), and nc = |c-i|/|c-t|, nr = |t-i|/|c-t|.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from stcn.inference.frames import image_tensor, pad_to_16, unpad
from stcn.inference.memory_bank import MemoryBank
from stcn.inference.settings import InferenceSettings
from stcn.interactive.fusion import FusionNet
from stcn.interactive.s2m import S2M
from stcn.model.memory import aggregate, l2_affinity
from stcn.model.network import STCN

DAVIS_SCHEDULE = (2, 5, 7)
HARD = 1000.0  # S2M's aggregated logits are scaled by this before the softmax (a hard aggregation)


def scribble_maps(scribbles: np.ndarray, num_objects: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive/negative maps (K, H, W) per object from a scribble map (-1 = none), dilated 3x3."""
    s = torch.from_numpy(np.asarray(scribbles, dtype=np.int64))
    ids = torch.arange(1, num_objects + 1).view(-1, 1, 1)
    positive = (s[None] == ids).float()
    negative = ((s[None] != ids) & (s[None] != -1)).float()
    maps = torch.stack([positive, negative], 1)  # (K, 2, H, W)
    maps = F.max_pool2d(maps, 3, stride=1, padding=1)
    return maps[:, 0], maps[:, 1]


def hard_aggregate(prob: torch.Tensor) -> torch.Tensor:
    """Soft aggregation of K probabilities, logits scaled by 1000 before the softmax: (K+1, H, W)."""
    p = aggregate(prob).clamp(1e-7, 1 - 1e-7)
    return torch.softmax(torch.log(p / (1 - p)) * HARD, dim=0)


def attention_affinity(key_t: torch.Tensor, key_i: torch.Tensor) -> torch.Tensor:
    """W(k_t, k_i): full softmax over frame t's positions of the L2 affinity to frame i: (HW_t, HW_i)."""
    return torch.softmax(l2_affinity(key_t.flatten(1)[None], key_i.flatten(1)[None])[0], dim=0)


class InteractiveCore:
    """Scribbles on one frame -> S2M -> bidirectional STCN propagation -> fusion, round after round."""

    def __init__(
        self,
        stcn: STCN,
        s2m: S2M,
        fusion: FusionNet,
        images: torch.Tensor | Sequence[np.ndarray],
        num_objects: int,
        settings: InferenceSettings | None = None,
        schedule: Sequence[int] | None = DAVIS_SCHEDULE,
        previous: np.ndarray | None = None,
        compact: bool = False,
    ):
        """images: normalised (T, 3, H, W), or T uint8 RGB frames (H, W, 3) normalised when used (3 bytes a
        pixel held instead of 12). previous: optional (T, H, W) labels of an earlier round. compact: hold
        every frame's probabilities as uint8 (p * 255 rounded, 1 byte a pixel and channel instead of 4)."""
        self.stcn, self.s2m, self.fusion = stcn, s2m, fusion
        self.settings = settings or InferenceSettings()
        self.device = torch.device(self.settings.device)
        self.images = images
        if isinstance(images, torch.Tensor):  # normalised floats, padded once
            self.images, self.pad = pad_to_16(images)
            size = tuple(images.shape[-2:])
        else:
            size = tuple(np.asarray(images[0]).shape[:2])
            self.pad = pad_to_16(torch.empty((0, *size)))[1]
        self.t_len, self.k = len(images), num_objects  # k = 0 is allowed: objects come with the first round
        self.h, self.w = size  # frame size without padding
        left, right, top, bottom = self.pad
        h, w = self.h + top + bottom, self.w + left + right
        self.dtype = torch.uint8 if compact else torch.float32
        self.prob = torch.zeros((num_objects + 1, self.t_len, h, w), dtype=self.dtype)
        self.prob[0] = 255 if compact else 1
        if previous is not None:  # one-hot, a channel at a time (no (K+1) x T x H x W int64 one-hot at once)
            labels = pad_to_16(torch.from_numpy(np.asarray(previous, dtype=np.uint8)))[0]
            for c in range(num_objects + 1):
                self.prob[c] = (labels == c).to(self.dtype) * (255 if compact else 1)
        self.schedule = list(schedule) if schedule is not None else None
        self.count = 0
        self.interacted: list[int] = []  # propagated interactions' frames, in order
        self.certain: list[tuple[torch.Tensor, torch.Tensor]] = []  # (key, values) of those frames
        self.max_memory_seen = 0  # largest number of memory frames read in any pass
        self.last_propagated = False  # whether the latest interaction propagated (else: next one on this frame)
        self.progress: Callable[[int, int], None] | None = None  # called (done, total) per propagated frame
        self._done = self._total = 0

    # --- public API -------------------------------------------------------------------------------
    @torch.inference_mode()
    def interact(self, frame: int, scribbles: np.ndarray, propagate: bool | None = None) -> np.ndarray:
        """Apply one interaction on `frame`; returns the (T, H, W) uint8 labels of the whole video."""
        if propagate is None:
            propagate = self.schedule is None or (bool(self.schedule) and self.count == self.schedule[0])
            if propagate and self.schedule:
                self.schedule.pop(0)
        self.count += 1
        self.last_propagated = propagate
        positive, negative = (pad_to_16(m)[0] for m in scribble_maps(scribbles, self.k))
        new = self._scribble_to_mask(frame, positive, negative)
        if propagate:
            self._propagate(frame, new)
        else:
            self._set(frame, new)
        return self.labels()

    @torch.inference_mode()
    def mask_from_scribbles(self, frame: int, scribbles: np.ndarray, current: np.ndarray | None = None) -> np.ndarray:
        """S2M on `frame` without changing any state: (H, W) uint8 labels.

        `current`: the frame's labels to refine (H, W; default: this frame's current mask). Ids in the
        scribbles or `current` above the object count are new objects (their current mask: `current`'s).
        """
        scribbles = np.asarray(scribbles)
        k = max(self.k, int(scribbles.max(initial=0)), int(np.max(current, initial=0)) if current is not None else 0)
        if current is None:
            current_t = torch.argmax(self.prob[:, frame], 0).long()
        else:
            current_t = pad_to_16(torch.from_numpy(np.asarray(current, dtype=np.int64)))[0]
        positive, negative = (pad_to_16(m)[0] for m in scribble_maps(scribbles, k))
        new = self._scribble_to_mask(frame, positive, negative, current_t, k)
        return unpad(torch.argmax(new, 0), self.pad).to(torch.uint8).numpy()

    @torch.inference_mode()
    def apply_mask(self, frame: int, labels: np.ndarray, propagate: bool = True) -> np.ndarray:
        """A full mask (H, W), ids 0..K, becomes `frame`'s mask; propagated unless `propagate` is False.

        Propagation is the same as a scribble round's: frame t joins the certain memory, passes run to the
        neighbouring interacted frames (fused with the previous round there) or the video ends. Ids above
        the object count add objects. Returns the (T, H, W) uint8 labels of the whole video.
        """
        labels = np.asarray(labels)
        if labels.shape != self._size():
            raise ValueError(f"mask of shape {labels.shape} for frames of size {self._size()}")
        if int(labels.max(initial=0)) > self.k:
            self.add_objects(int(labels.max()) - self.k)
        padded = pad_to_16(torch.from_numpy(labels.astype(np.int64)))[0]
        new = F.one_hot(padded, self.k + 1).permute(2, 0, 1).float()
        self.count += 1
        self.last_propagated = propagate
        if propagate:
            self._propagate(frame, new)
        else:
            self._set(frame, new)
        return self.labels()

    def add_objects(self, n: int) -> None:
        """Add `n` objects (empty on every frame); the certain memory is re-encoded with their channels."""
        if n <= 0:
            return
        empty = torch.zeros((n, *self.prob.shape[1:]), dtype=self.prob.dtype)
        self.prob = torch.cat([self.prob, empty])
        self.k += n
        frames, self.interacted, self.certain = self.interacted, [], []
        self.load_interacted(frames)

    def labels(self) -> np.ndarray:
        """Argmax labels (T, H, W) of every frame, padding removed."""
        out = np.empty((self.t_len, self.h, self.w), np.uint8)  # frame by frame: no T x H x W int64 argmax
        for t in range(self.t_len):
            out[t] = self.frame_labels(t)
        return out

    def frame_labels(self, t: int) -> np.ndarray:
        """Argmax labels (H, W) of frame t, padding removed."""
        return unpad(torch.argmax(self.prob[:, t], dim=0), self.pad).to(torch.uint8).numpy()

    def _size(self) -> tuple[int, int]:
        return self.h, self.w

    def image(self, t: int) -> torch.Tensor:
        """Frame t normalised and padded: (3, H, W) float on the CPU."""
        if isinstance(self.images, torch.Tensor):
            return self.images[t]
        return pad_to_16(image_tensor(self.images[t]))[0]

    def frame_prob(self, t: int) -> torch.Tensor:
        """Frame t's probabilities (K+1, H, W) as floats (padded)."""
        p = self.prob[:, t]
        return p.float().div_(255) if self.dtype == torch.uint8 else p

    def _set(self, t: int, prob: torch.Tensor) -> None:
        """Store frame t's probabilities (K+1, H, W), quantised to uint8 when compact."""
        prob = prob.cpu()
        self.prob[:, t] = prob.mul(255).round_().to(torch.uint8) if self.dtype == torch.uint8 else prob

    def nbytes(self) -> int:
        """Bytes the core holds per video (frames as given + probabilities), the memory bank excluded."""
        frames = self.images.nbytes if isinstance(self.images, torch.Tensor) else sum(f.nbytes for f in self.images)
        return frames + self.prob.nbytes

    def load_interacted(self, frames: Sequence[int]) -> None:
        """Rebuild the certain memory from the current masks at `frames` (a CLI round after a saved one)."""
        with torch.inference_mode():
            for t in frames:
                key, _, f16, _, _ = self._encode(t)
                self._remember(t, key, f16, self.frame_prob(t))

    # --- steps -----------------------------------------------------------------------------------
    def _scribble_to_mask(
        self,
        t: int,
        positive: torch.Tensor,
        negative: torch.Tensor,
        current: torch.Tensor | None = None,
        k: int | None = None,
    ) -> torch.Tensor:
        """S2M probabilities (k+1, H, W) at frame t; `current`: padded labels (default: frame t's argmax)."""
        k = self.k if k is None else k
        image = self.image(t).to(self.device)
        current = torch.argmax(self.prob[:, t], 0).long() if current is None else current
        current = F.one_hot(current, k + 1).permute(2, 0, 1)[1:].float()
        current, positive, negative = (m.to(self.device) for m in (current, positive, negative))
        p = self.s2m.object_probability(image, current, positive, negative)
        return hard_aggregate(p.float()).cpu()

    def _encode(self, t: int) -> tuple[torch.Tensor, ...]:
        x = self.image(t)[None].to(self.device).contiguous(memory_format=torch.channels_last)
        key, thin, f16, f8, f4 = self.stcn.encode_key(x)
        return key[0], thin, f16, f8, f4

    def _value(self, t: int, f16: torch.Tensor, prob: torch.Tensor) -> torch.Tensor:
        x = self.image(t)[None].to(self.device)
        return self.stcn.encode_value(x, f16, prob[1:].unsqueeze(1).to(self.device))

    def _remember(self, t: int, key: torch.Tensor, f16: torch.Tensor, prob: torch.Tensor) -> None:
        self.certain.append((key, self._value(t, f16, prob)))
        self.interacted.append(t)

    def frames_to_propagate(self, t: int) -> int:
        """How many frames a round on frame t propagates to: up to the neighbouring interacted frames or the ends."""
        later = [c for c in self.interacted if c > t]
        earlier = [c for c in self.interacted if c < t]
        return ((min(later) if later else self.t_len) - t - 1) + (t - (max(earlier) if earlier else -1) - 1)

    def _propagate(self, t: int, new: torch.Tensor) -> None:
        diff = new[1:] - self.frame_prob(t)[1:]
        diff_maps = torch.stack([diff.clamp(0, 1), (-diff).clamp(0, 1)], 1)  # (K, 2, H, W)
        self._set(t, new)
        key_t, _, f16, _, _ = self._encode(t)
        self._remember(t, key_t, f16, new)
        later = [c for c in self.interacted if c > t]
        earlier = [c for c in self.interacted if c < t]
        self._done = 0
        self._total = self.frames_to_propagate(t)
        if self.progress is not None:
            self.progress(0, self._total)  # the size of the work is known from the start (no "0 / 0" meanwhile)
        self._pass(t, min(later) if later else None, self.t_len, 1, key_t, diff_maps)
        self._pass(t, max(earlier) if earlier else None, -1, -1, key_t, diff_maps)

    def _pass(
        self, t: int, bound: int | None, end: int, step: int, key_t: torch.Tensor, diff_maps: torch.Tensor
    ) -> None:
        """Propagate from t towards `bound` (an interacted frame, exclusive) or the video end."""
        stop = bound if bound is not None else end
        frames = list(range(t + step, stop, step))
        if not frames:
            return
        memory = MemoryBank(self.settings.top_k, self.settings.max_memory_frames)
        for key, value in self.certain:
            memory.add(key, {0: value}, pinned=True)
        small_diff = F.interpolate(diff_maps.to(self.device), size=key_t.shape[-2:], mode="area")
        last_added = t
        for i in frames:
            key, thin, f16, f8, f4 = self._encode(i)
            self.max_memory_seen = max(self.max_memory_seen, len(memory))
            readout = memory.read(key)[0]
            prob = aggregate(self.stcn.decode(readout, thin, f8, f4).float()[:, 0])
            if abs(i - last_added) >= self.settings.mem_every and i != frames[-1]:
                memory.add(key, {0: self._value(i, f16, prob)})
                last_added = i
            if bound is not None:
                prob = self._fuse(i, t, bound, prob, key_t, key, small_diff)
            self._set(i, prob)
            self._done += 1
            if self.progress is not None:
                self.progress(self._done, self._total)  # may raise to cancel (the caller restores its state)

    def _fuse(
        self,
        i: int,
        t: int,
        c: int,
        prob: torch.Tensor,
        key_t: torch.Tensor,
        key_i: torch.Tensor,
        small_diff: torch.Tensor,
    ) -> torch.Tensor:
        """Blend frame i's propagated probabilities with the previous round's (difference-aware fusion)."""
        nc, nr = abs(c - i) / abs(c - t), abs(t - i) / abs(c - t)
        h, w = prob.shape[-2:]
        affinity = attention_affinity(key_t, key_i)  # (HW_t, HW_i)
        attn = (small_diff.flatten(2) @ affinity).view(self.k, 2, *key_i.shape[-2:])
        attn = F.interpolate(attn, size=(h, w), mode="bilinear", align_corners=False)
        previous = self.frame_prob(i)[1:].to(self.device)
        fused = self.fusion.fuse(self.image(i).to(self.device), previous, prob[1:], attn, nc, nr)
        return aggregate(fused.float())
