"""Step-wise STCN inference: feed frames one at a time, with masks on the frames where objects enter.

    core = InferenceCore(model, InferenceSettings())
    for t, image in enumerate(images):
        prob = core.step(image, masks if t == 0 else None, ids if t == 0 else None,
                         is_last=t == len(images) - 1)

Memory follows the official evaluation: a frame where objects are given is always a memory frame;
after it, every `mem_every`-th frame joins the memory (never the last frame), and with
`include_last` each other frame is kept in a single temporary slot.
"""

from __future__ import annotations

import torch

from stcn.inference.frames import pad_to_16, unpad
from stcn.inference.memory_bank import MemoryBank
from stcn.inference.settings import InferenceSettings
from stcn.inference.slots import MemorySchedule
from stcn.model.memory import aggregate
from stcn.model.network import STCN


class InferenceCore(MemorySchedule):
    """Segments a video frame by frame with a growing space-time memory."""

    def __init__(self, model: STCN, settings: InferenceSettings | None = None):
        super().__init__(settings)
        self.model = model
        self.device = torch.device(self.settings.device)
        self.memory = MemoryBank(self.settings.top_k, self.settings.max_memory_frames)

    @torch.inference_mode()
    def step(
        self,
        image: torch.Tensor,
        masks: torch.Tensor | None = None,
        object_ids: list[int] | None = None,
        is_last: bool = False,
        need_output: bool = True,
    ) -> torch.Tensor | None:
        """Process the next frame.

        image: normalised (3, H, W). masks: (M, H, W) in {0, 1} for `object_ids` given on this frame
        (new objects enter the memory here; known ids are overwritten). Returns the (1 + K, H, W)
        probabilities (background first, objects in `self.object_ids` order), or None when the frame
        was skipped (no objects yet, or not needed for output or memory).
        """
        given = masks is not None and len(object_ids or []) > 0
        if (plan := self._next_frame(given, is_last, need_output)) is None:
            return None
        is_memory, remember = plan
        with self.settings.autocast():
            x, pad = pad_to_16(image.to(self.device))
            x = x.unsqueeze(0).contiguous(memory_format=torch.channels_last)
            key, thin, f16, f8, f4 = self._encode_key(x)
            if self.object_ids and len(self.memory):
                prob = self._segment(key[0], thin, f8, f4)
            else:
                prob = torch.zeros((1, *x.shape[-2:]), device=self.device)
            if given:
                prob = self._merge(prob, pad_to_16(masks.to(self.device).float())[0], object_ids)
            if remember:
                self._memorise(x, key[0], f16, prob, permanent=is_memory, pinned=given)
        return unpad(prob.float(), pad)

    def _encode_key(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """`model.encode_key`; with an fp32 read-out the 64-channel key projection runs in fp32."""
        if not (self.settings.half_convs and self.settings.fp32_readout):
            return self.model.encode_key(x)
        f16, f8, f4 = self.model.key_encoder(x)
        with self.settings.exact():
            key = self.model.key_proj(f16.float())
        return key, self.model.key_comp(f16), f16, f8, f4

    def _segment(self, key: torch.Tensor, thin: torch.Tensor, f8: torch.Tensor, f4: torch.Tensor) -> torch.Tensor:
        with self.settings.exact():
            readouts = self.memory.read(key)
        k = len(self.object_ids)
        object_prob = torch.empty((k, 1, f4.shape[-2] * 4, f4.shape[-1] * 4), device=self.device)
        for group, channels in enumerate(self.groups):
            object_prob[channels] = self.model.decode(readouts[group], thin, f8, f4).float()
        with self.settings.exact():
            return aggregate(object_prob[:, 0])

    def _merge(self, prob: torch.Tensor, masks: torch.Tensor, object_ids: list[int]) -> torch.Tensor:
        """Put the given masks into the frame's probabilities (official YouTube-VOS rule)."""
        if new := self._add_objects(object_ids):
            prob = torch.cat([prob, prob.new_zeros((new, *prob.shape[1:]))], 0)
        objects = prob[1:].clone()
        objects[:, masks.sum(0) > 0.5] = 0
        for mask, obj in zip(masks, object_ids, strict=True):
            objects[self.object_ids.index(obj)] = mask
        return aggregate(objects)

    def _memorise(
        self,
        x: torch.Tensor,
        key: torch.Tensor,
        f16: torch.Tensor,
        prob: torch.Tensor,
        permanent: bool,
        pinned: bool,
    ) -> None:
        value = self.model.encode_value(x, f16, prob[1:].unsqueeze(1).to(x.dtype))
        values = {g: value[channels] for g, channels in enumerate(self.groups)}
        self.memory.add(key, values, temporary=not permanent, pinned=pinned)
        if permanent:
            self.last_memory_t = self.t
