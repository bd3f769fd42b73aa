"""Step-wise inference on real DAVIS frames: memory schedule, multi-object, late objects, bounded memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import DAVIS, TENNIS

from stcn.data.images import read_frame, read_mask
from stcn.errors import UserError
from stcn.inference import InferenceCore, InferenceSettings
from stcn.inference.frames import image_tensor, one_hot, pad_to_16, unpad
from stcn.inference.loading import load_model
from stcn.inference.video import folder_frames, propagate


@pytest.fixture(scope="module")
def model(weights_file):
    torch.manual_seed(0)
    return load_model(weights_file)


def run(model, frames, first_mask, settings, masks=None):
    out = {}
    masks = masks or {frames[0].stem: read_mask(first_mask)}
    propagate(model, folder_frames(frames), masks, settings, lambda s, lab, rgb: out.__setitem__(s, lab))
    return out


def test_padding_roundtrip():
    x = torch.randn(2, 239, 427)
    padded, pad = pad_to_16(x)
    assert padded.shape[-2:] == (240, 432) and pad == (2, 3, 0, 1)
    assert torch.equal(unpad(padded, pad), x)


def test_first_frame_is_the_given_mask_and_output_is_deterministic(model, small_blackswan):
    frames_dir, masks_dir = small_blackswan
    frames = sorted(frames_dir.glob("*.jpg"))
    first = read_mask(masks_dir / "00000.png")
    a = run(model, frames, masks_dir / "00000.png", InferenceSettings())
    b = run(model, frames, masks_dir / "00000.png", InferenceSettings())
    assert list(a) == [f.stem for f in frames]
    assert np.array_equal(a["00000"], first)
    for stem in a:
        assert a[stem].shape == first.shape and a[stem].dtype == np.uint8
        assert set(np.unique(a[stem])) <= {0, 1}
        assert np.array_equal(a[stem], b[stem])
    # the random network still propagates: later frames are neither empty nor all object
    assert 0 < (a["00007"] == 1).mean() < 1


def memory_schedule(model, frames, settings):
    core = InferenceCore(model, settings)
    mask = read_mask(DAVIS / "Annotations/480p/blackswan/00000.png")
    sizes = []
    for t, f in enumerate(frames):
        image = image_tensor(read_frame(f))[:, ::4, ::4]
        given = one_hot(mask, [1])[:, ::4, ::4] if t == 0 else None
        core.step(image, given, [1] if t == 0 else None, is_last=t == len(frames) - 1)
        sizes.append((len(core.memory), core.memory.temp is not None))
    return sizes


def test_memory_frames_follow_mem_every_and_include_last(model):
    frames = sorted((DAVIS / "JPEGImages/480p/blackswan").glob("*.jpg"))[:12]
    plain = memory_schedule(model, frames, InferenceSettings(mem_every=5))
    # frame 0 and then frames 5 and 10 join the memory; the last frame never does
    assert [n for n, _ in plain] == [1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3]
    assert not any(temp for _, temp in plain)
    with_last = memory_schedule(model, frames, InferenceSettings(mem_every=5, include_last=True))
    assert [n for n, _ in with_last] == [n for n, _ in plain]
    assert [temp for _, temp in with_last] == [
        False,
        True,
        True,
        True,
        True,
        False,
        True,
        True,
        True,
        True,
        False,
        False,
    ]
    bounded = memory_schedule(model, frames, InferenceSettings(mem_every=1, max_memory_frames=3))
    assert max(n for n, _ in bounded) == 3


def test_multi_object_with_void(model):
    frames = sorted((TENNIS / "JPEGImages/480p/tennis").glob("*.jpg"))
    first = read_mask(TENNIS / "Annotations/480p/tennis/00000.png")
    assert {1, 2, 255} <= set(np.unique(first))
    out = run(model, frames, TENNIS / "Annotations/480p/tennis/00000.png", InferenceSettings())
    expected = np.where(first == 255, 0, first)  # void is not an object
    assert np.array_equal(out["00000"], expected)
    assert set(np.unique(out["00001"])) <= {0, 1, 2}


def test_void_none_makes_255_an_object(model, small_blackswan):
    """Masks S2M made from strokes (`segment --first-scribble`, batch strokes) may hold object 255: with
    void=None it is propagated like any id, with the default it is void (a mask of only 255: one clear line)."""
    frames, masks = small_blackswan
    frames = sorted(frames.glob("*.jpg"))[:3]
    first = np.where(read_mask(masks / "00000.png") == 1, 255, 0).astype(np.uint8)
    out = {}
    write = lambda s, lab, rgb: out.__setitem__(s, lab)  # noqa: E731
    propagate(model, folder_frames(frames), {"00000": first}, InferenceSettings(), write, void=None)
    assert np.array_equal(out["00000"], first) and (out["00002"] == 255).any()
    assert set(np.unique(out["00002"])) <= {0, 255}
    with pytest.raises(UserError, match="has no object"):
        propagate(model, folder_frames(frames), {"00000": first}, InferenceSettings(), write)


def test_late_object_enters_memory_at_its_first_frame(model, small_blackswan):
    """YouTube-VOS mode: object 7 appears at frame 3; before that it is absent, there it equals the mask."""
    frames_dir, masks_dir = small_blackswan
    frames = sorted(frames_dir.glob("*.jpg"))
    first = read_mask(masks_dir / "00000.png")
    late = np.where(read_mask(masks_dir / "00003.png") == 1, 7, 0).astype(np.uint8)
    late[:, : late.shape[1] // 2] = 0  # only part of the swan, so both objects exist
    required = {"00000", "00003", "00005", "00007"}
    out = {}
    propagate(
        model,
        folder_frames(frames),
        {"00000": first, "00003": late},
        InferenceSettings(),
        lambda s, lab, rgb: out.__setitem__(s, lab),
        required=required,
    )
    assert set(out) == required
    assert 7 not in out["00000"]
    assert np.array_equal(out["00003"] == 7, late == 7)
    assert set(np.unique(out["00007"])) <= {0, 1, 7}


def test_frames_before_the_first_annotation_are_background(model, small_blackswan):
    frames_dir, masks_dir = small_blackswan
    frames = sorted(frames_dir.glob("*.jpg"))[:5]
    out = run(model, frames, None, InferenceSettings(), masks={"00002": read_mask(masks_dir / "00002.png")})
    assert not out["00000"].any() and not out["00001"].any()
    assert np.array_equal(out["00002"], read_mask(masks_dir / "00002.png"))


@pytest.mark.parametrize("precision", ["fast", "bf16"])
def test_half_precision_rungs_run_and_mostly_agree(model, small_blackswan, precision):
    frames_dir, masks_dir = small_blackswan
    frames = sorted(frames_dir.glob("*.jpg"))[:4]
    fp32 = run(model, frames, masks_dir / "00000.png", InferenceSettings())
    half = run(model, frames, masks_dir / "00000.png", InferenceSettings(precision=precision))
    assert np.mean(fp32["00003"] == half["00003"]) > 0.9


def test_fast_keeps_the_memory_read_out_in_fp32(model, small_blackswan):
    frames_dir, masks_dir = small_blackswan
    core = InferenceCore(model, InferenceSettings(precision="fast"))
    first = read_mask(masks_dir / "00000.png")
    for t, path in enumerate(sorted(frames_dir.glob("*.jpg"))[:2]):
        core.step(image_tensor(read_frame(path)), one_hot(first, [1]) if t == 0 else None, [1] if t == 0 else None)
    entry = core.memory.entries[0]
    assert entry.key.dtype == torch.float32  # keys (and so affinity, top-k, softmax) in fp32
    assert entry.values[0].dtype == torch.bfloat16  # values come from the bf16 value encoder
    assert core.memory.read(entry.key.view(64, *[s // 16 for s in _padded(first.shape)]))[0].dtype == torch.float32


def _padded(shape: tuple[int, int]) -> tuple[int, int]:
    return tuple((s + 15) // 16 * 16 for s in shape)


def test_batchnorm_is_folded_and_outputs_match(weights_file):
    from stcn.model import STCN, load_weights
    from stcn.model.fold import count_batchnorm

    plain = load_weights(STCN(), weights_file).eval()
    state = plain.state_dict()
    for name, tensor in state.items():  # non-trivial BatchNorm statistics, so folding has something to do
        if name.endswith("running_var"):
            tensor.uniform_(0.5, 2.0)
        elif name.endswith(("running_mean", ".bias")) and "bn" in name:
            tensor.uniform_(-0.2, 0.2)
    folded = load_model_from_state(state)
    assert count_batchnorm(plain) > 0 and count_batchnorm(folded) == 0
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        a, b = plain.encode_key(x), folded.encode_key(x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(a[2], b[2], rtol=1e-4, atol=1e-4)
        m = torch.rand(1, 1, 64, 96)
        torch.testing.assert_close(
            plain.encode_value(x, a[2], m), folded.encode_value(x, a[2], m), rtol=1e-4, atol=1e-4
        )


def load_model_from_state(state):
    from stcn.inference.loading import prepare_for_inference
    from stcn.model import STCN, load_weights

    return prepare_for_inference(load_weights(STCN(), state))


@pytest.mark.parametrize("channels", [2, 3, 6])
def test_channel_argmax_equals_torch_argmax_with_ties(channels):
    from stcn.inference.frames import channel_argmax

    prob = torch.rand(channels, 37, 53, generator=torch.Generator().manual_seed(channels))
    prob[-1, :5] = prob[0, :5]  # ties go to the lowest channel, as torch.argmax
    prob[1, 5:9] = prob[0, 5:9]
    assert torch.equal(channel_argmax(prob), torch.argmax(prob, dim=0).to(torch.uint8))
