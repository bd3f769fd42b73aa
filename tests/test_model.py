"""The network loads official-layout checkpoints strictly and its read-out math matches the definition."""

from __future__ import annotations

import pytest
import torch
from conftest import seeded_state_dict

from stcn.errors import UserError
from stcn.model import STCN, load_weights, official_state_dict
from stcn.model.memory import aggregate, l2_affinity, readout, topk_readout, topk_softmax


def test_state_dict_matches_official_key_list(official_entries):
    ours = STCN().state_dict()
    assert list(ours) == [e["name"] for e in official_entries]
    assert [list(v.shape) for v in ours.values()] == [e["shape"] for e in official_entries]


def test_strict_load_of_official_checkpoint(tmp_path, official_entries):
    state = seeded_state_dict(official_entries, seed=3)
    path = tmp_path / "stcn.pth"
    torch.save(state, path)
    model = load_weights(STCN(), path)
    for name, tensor in official_state_dict(model).items():
        assert torch.equal(tensor, state[name]), name


def test_stage0_checkpoint_gets_zero_fifth_channel(tmp_path, official_entries):
    state = seeded_state_dict(official_entries, seed=4, in_channels=4)
    path = tmp_path / "s0.pth"
    torch.save(state, path)
    w = load_weights(STCN(), path).value_encoder.conv1.weight
    assert w.shape == (64, 5, 7, 7)
    assert torch.equal(w[:, :4], state["value_encoder.conv1.weight"])
    assert torch.count_nonzero(w[:, 4]) == 0
    padded = load_weights(STCN(), path, orthogonal_pad=True).value_encoder.conv1.weight
    assert torch.count_nonzero(padded[:, 4]) > 0
    single = load_weights(STCN(single_object=True), path)
    assert single.value_encoder.conv1.weight.shape[1] == 4


def test_training_checkpoint_wrappers_are_accepted(tmp_path, official_entries):
    state = seeded_state_dict(official_entries)
    path = tmp_path / "wrapped.pth"
    torch.save({"network": {f"module.{k}": v for k, v in state.items()}}, path)
    load_weights(STCN(), path)


def test_wrong_shape_names_the_tensor(tmp_path, official_entries):
    state = seeded_state_dict(official_entries)
    state["key_proj.key_proj.weight"] = torch.zeros(32, 1024, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(UserError, match=r"key_proj\.key_proj\.weight has shape \[32, 1024, 3, 3\]"):
        load_weights(STCN(), path)


def test_missing_tensor_and_garbage_file(tmp_path, official_entries):
    state = seeded_state_dict(official_entries)
    del state["decoder.pred.bias"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(UserError, match="missing 'decoder.pred.bias'"):
        load_weights(STCN(), tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        load_weights(STCN(), tmp_path / "junk.pth")


def test_affinity_is_negative_squared_distance_up_to_query_norm():
    gen = torch.Generator().manual_seed(0)
    mk, qk = torch.randn(1, 8, 30, generator=gen), torch.randn(1, 8, 12, generator=gen)
    aff = l2_affinity(mk, qk)
    dist = -((mk[0, :, :, None] - qk[0, :, None, :]) ** 2).sum(0) + (qk[0] ** 2).sum(0)[None]
    torch.testing.assert_close(aff[0], dist / 8**0.5, rtol=1e-5, atol=1e-5)


def test_topk_readout_equals_dense_topk_softmax():
    gen = torch.Generator().manual_seed(1)
    aff = torch.randn(200, 50, generator=gen) * 5
    values = torch.randn(3, 16, 200, generator=gen)
    dense = readout(topk_softmax(aff[None], 20).expand(3, -1, -1), values)
    torch.testing.assert_close(topk_readout(aff, values, 20), dense, rtol=1e-5, atol=1e-5)
    weights = topk_softmax(aff[None], 20)[0]
    assert (weights > 0).sum(0).eq(20).all()
    torch.testing.assert_close(weights.sum(0), torch.ones(50))


def test_sparse_query_major_readout_equals_dense_topk_softmax():
    from stcn.model.memory import query_affinity, sparse_topk_readout

    gen = torch.Generator().manual_seed(2)
    mk, qk = torch.randn(8, 200, generator=gen), torch.randn(8, 50, generator=gen)
    aff = query_affinity(mk, qk)
    torch.testing.assert_close(aff, l2_affinity(mk[None], qk[None])[0].t(), rtol=1e-5, atol=1e-5)
    values = torch.randn(3, 16, 200, generator=gen)
    dense = readout(topk_softmax(aff.t()[None], 20).expand(3, -1, -1), values)
    out = sparse_topk_readout(aff, values, 20)
    assert out.shape == (3, 16, 50) and out.dtype == torch.float32
    torch.testing.assert_close(out, dense, rtol=1e-5, atol=1e-5)
    out_half = sparse_topk_readout(aff.bfloat16(), values.bfloat16(), 20)  # half inputs: read out in fp32
    assert out_half.dtype == torch.float32


def test_aggregate_probabilities():
    p = torch.tensor([[0.9, 0.0, 0.5], [0.0, 0.0, 0.5]])
    out = aggregate(p)
    torch.testing.assert_close(out.sum(0), torch.ones(3))
    assert out.argmax(0).tolist() == [1, 0, 1]  # ties go to the lowest index
    assert out[0, 1] > 0.999999
