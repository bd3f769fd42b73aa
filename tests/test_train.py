"""Training recipe, forward pass, loss, initialisation and checkpoint helpers (fast, CPU)."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import pytest
import torch
import torchvision
from localhttp import serving_folder

from stcn.errors import UserError
from stcn.model import STCN, load_weights
from stcn.train import init_weights
from stcn.train.checkpointing import atomic_save
from stcn.train.config import TrainConfig
from stcn.train.data_plan import plan_segments, segment_at
from stcn.train.forward import TrainingForward, aggregate_logits
from stcn.train.loss import bootstrapped_ce, compute_losses
from stcn.train.recipe import STAGES, bootstrap_fraction, get_stage, max_skip_at, scaled_lr_steps

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_recipe_table():
    assert [(s.lr, s.batch_size, s.iterations, s.lr_steps) for s in STAGES.values()] == [
        (1e-5, 8, 300_000, (150_000,)),
        (1e-5, 4, 500_000, (400_000,)),
        (1e-5, 4, 300_000, (250_000,)),
        (1e-5, 4, 150_000, (125_000,)),
    ]
    assert STAGES[0].single_object and not any(STAGES[i].single_object for i in (1, 2, 3))
    assert scaled_lr_steps(STAGES[2], 3000) == [2500]
    with pytest.raises(UserError, match="unknown training stage 4"):
        get_stage(4)


def test_bootstrap_schedule():
    assert bootstrap_fraction(0) == bootstrap_fraction(19_999) == 1.0
    assert bootstrap_fraction(20_000) == pytest.approx(1.0)
    assert bootstrap_fraction(45_000) == pytest.approx(0.15 + 0.85 * 0.5)
    assert bootstrap_fraction(70_000) == pytest.approx(0.15)
    assert bootstrap_fraction(300_000) == 0.15


def test_max_skip_curriculum():
    s1, s2 = STAGES[1], STAGES[2]
    at = [0, 49_999, 50_000, 100_000, 150_000, 200_000, 399_999, 400_000, 499_999]
    assert [max_skip_at(s1, i, 500_000) for i in at] == [5, 5, 10, 15, 20, 25, 25, 5, 5]
    assert [max_skip_at(s2, i, 300_000) for i in (29_999, 30_000, 269_999, 270_000)] == [5, 10, 25, 5]
    assert max_skip_at(STAGES[0], 10, 100) == 0


def test_segments_cut_at_checkpoints_and_skip_changes():
    segs = plan_segments(STAGES[2], 1000, 300)
    assert [(s.start, s.end, s.max_skip) for s in segs] == [
        (0, 100, 5), (100, 200, 10), (200, 300, 15), (300, 400, 20), (400, 600, 25), (600, 900, 25),
        (900, 1000, 5),
    ]  # fmt: skip
    assert segment_at(segs, 450) == 4
    assert [(s.start, s.end) for s in plan_segments(STAGES[0], 10, 4)] == [(0, 4), (4, 8), (8, 10)]


def test_aggregate_logits_softmax_matches_soft_aggregation():
    p = torch.tensor([[[[0.9]], [[0.2]]]])  # (B=1, K=2, 1, 1)
    probs = torch.softmax(aggregate_logits(p), 1)[0, :, 0, 0]
    odds = torch.tensor([0.1 * 0.8, 0.9, 0.2])
    odds = odds / (1 - odds)
    assert torch.allclose(probs, odds / odds.sum())


def test_bootstrapped_ce_keeps_hardest_pixels():
    logits = torch.zeros(1, 2, 1, 4)
    logits[0, 1, 0] = torch.tensor([4.0, 2.0, 0.0, -4.0])
    target = torch.ones(1, 1, 4, dtype=torch.long)
    per_pixel = torch.nn.functional.cross_entropy(logits, target, reduction="none").flatten()
    assert bootstrapped_ce(logits, target, 1.0) == pytest.approx(float(per_pixel.mean()))
    assert bootstrapped_ce(logits, target, 0.5) == pytest.approx(float(per_pixel[2:].mean()))


def _batch(b: int, size: int, second: list[bool]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    gt = (torch.rand(b, 3, 1, size, size, generator=g) > 0.6).float()
    sec = (torch.rand(b, 3, 1, size, size, generator=g) > 0.8).float() * (1 - gt)
    sel = torch.tensor([[1.0, float(s)] for s in second])
    sec = sec * sel[:, 1, None, None, None, None]
    cls = gt[:, :, 0].long() + 2 * sec[:, :, 0].long()
    return {"rgb": torch.randn(b, 3, 3, size, size, generator=g), "gt": gt, "sec_gt": sec, "selector": sel,
            "cls_gt": cls}  # fmt: skip


@pytest.mark.parametrize("single", [True, False])
def test_training_forward_shapes_and_loss(single):
    torch.manual_seed(0)
    fwd = TrainingForward(STCN(single_object=single)).eval()
    batch = _batch(2, 32, [False, not single])
    sec, sel = (None, None) if single else (batch["sec_gt"], batch["selector"])
    out = fwd(batch["rgb"], batch["gt"], sec, sel)
    k = 1 if single else 2
    assert out["logits_1"].shape == out["logits_2"].shape == (2, 1 + k, 32, 32)
    mask = out["mask_2"].detach()
    assert mask.shape == (2, k, 32, 32) and 0 <= float(mask.min()) <= float(mask.max()) <= 1
    if not single:  # no second object -> its slot is zeroed by the selector
        assert float(out["mask_1"][0, 1].detach().max()) < 1e-5
    losses = compute_losses(out, batch if not single else {**batch, "selector": None}, 0)
    losses["total_loss"].backward()
    assert losses["total_loss"].item() == pytest.approx((losses["loss_1"] + losses["loss_2"]).item())
    assert fwd.net.key_encoder.conv1.weight.grad is not None and fwd.net.value_encoder.conv1.weight.grad is not None


def test_loss_uses_two_classes_without_second_object():
    batch = _batch(1, 8, [False])
    logits = torch.randn(1, 3, 8, 8)
    out = {"logits_1": logits, "logits_2": logits, "mask_1": torch.zeros(1, 2, 8, 8), "mask_2": torch.zeros(1, 2, 8, 8)}
    got = compute_losses(out, batch, 0)["loss_1"]
    assert got == pytest.approx(float(torch.nn.functional.cross_entropy(logits[:, :2], batch["cls_gt"][:, 1])))


def test_frozen_batchnorm_keeps_running_stats():
    net = STCN()
    fwd = TrainingForward(net).eval()
    before = net.key_encoder.bn1.running_mean.clone()
    batch = _batch(1, 32, [True])
    out = fwd(batch["rgb"], batch["gt"], batch["sec_gt"], batch["selector"])
    compute_losses(out, batch, 0)["total_loss"].backward()
    assert torch.equal(before, net.key_encoder.bn1.running_mean)
    assert net.key_encoder.bn1.weight.grad is not None  # affine parameters still train


def test_stage0_weights_get_orthogonal_fifth_channel(tmp_path):
    torch.manual_seed(0)
    single = STCN(single_object=True)
    path = tmp_path / "s0.pth"
    torch.save(single.state_dict(), path)
    multi = init_weights.build_model(False, str(path))
    w = multi.value_encoder.conv1.weight
    assert w.shape == (64, 5, 7, 7)
    assert torch.equal(w[:, :4], single.value_encoder.conv1.weight)
    extra = w[:, 4].reshape(64, -1)
    assert is_orthogonal(extra)


def is_orthogonal(m: torch.Tensor) -> bool:
    """Orthonormal rows (wide matrix) or columns (tall matrix), as `nn.init.orthogonal_` makes."""
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    return torch.allclose(gram, torch.eye(gram.shape[0]), atol=1e-4)


def _fake_imagenet(folder: Path) -> tuple[dict, dict]:
    """Seeded torchvision ResNet-50/18 weights saved under torchvision's file names."""
    torch.manual_seed(1)
    r50, r18 = torchvision.models.resnet50().state_dict(), torchvision.models.resnet18().state_dict()
    folder.mkdir()
    torch.save(r50, folder / Path(init_weights.IMAGENET_URLS["resnet50"]).name)
    torch.save(r18, folder / Path(init_weights.IMAGENET_URLS["resnet18"]).name)
    return r50, r18


@pytest.mark.parametrize("single", [True, False])
def test_imagenet_init_from_folder(tmp_path, single):
    r50, r18 = _fake_imagenet(tmp_path / "imagenet")
    model = init_weights.build_model(single, "imagenet", tmp_path / "imagenet")
    assert torch.equal(model.key_encoder.conv1.weight, r50["conv1.weight"])
    assert torch.equal(model.key_encoder.res2[0].conv2.weight, r50["layer1.0.conv2.weight"])
    assert torch.equal(model.key_encoder.layer3[5].bn3.running_var, r50["layer3.5.bn3.running_var"])
    assert torch.equal(model.value_encoder.layer3[1].conv2.weight, r18["layer3.1.conv2.weight"])
    conv1 = model.value_encoder.conv1.weight
    assert torch.equal(conv1[:, :3], r18["conv1.weight"])
    extra = conv1[:, 3:].reshape(64, -1)
    assert extra.shape[1] == (1 if single else 2) * 49
    assert is_orthogonal(extra)


@pytest.fixture
def weights_server(tmp_path):
    """A real HTTP server over tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    with serving_folder(root) as base:
        yield root, base


def _serve_imagenet(root: Path, base: str, monkeypatch) -> tuple[dict, dict]:
    """Fake ImageNet files named like torchvision's (arch-<sha256 prefix>.pth) on the server."""
    r50, r18 = _fake_imagenet(root / "src")
    for arch in ("resnet50", "resnet18"):
        data = (root / "src" / Path(init_weights.IMAGENET_URLS[arch]).name).read_bytes()
        name = f"{arch}-{hashlib.sha256(data).hexdigest()[:8]}.pth"
        (root / name).write_bytes(data)
        monkeypatch.setitem(init_weights.IMAGENET_URLS, arch, f"{base}/{name}")
    return r50, r18


def test_imagenet_init_downloads_checks_the_hash_and_caches(tmp_path, monkeypatch, weights_server):
    root, base = weights_server
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    r50, r18 = _serve_imagenet(root, base, monkeypatch)
    model = init_weights.build_model(True, "imagenet")
    assert torch.equal(model.key_encoder.layer2[0].conv1.weight, r50["layer2.0.conv1.weight"])
    assert torch.equal(model.value_encoder.conv1.weight[:, :3], r18["conv1.weight"])
    assert len(list((tmp_path / "torch/hub/checkpoints").glob("resnet*.pth"))) == 2
    for served in root.glob("resnet*.pth"):
        served.unlink()  # the second build reads the hub cache, not the server
    init_weights.build_model(True, "imagenet")

    name = Path(init_weights.IMAGENET_URLS["resnet50"]).name
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "fresh"))
    (root / name).write_bytes(b"not the weights whose sha256 the name carries")
    with pytest.raises(UserError, match=f"{name} .*cannot be downloaded.*hash"):
        init_weights.build_model(True, "imagenet")


def test_imagenet_offline_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with socket.socket() as s:  # a port nobody listens on: connection refused, as offline
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setitem(init_weights.IMAGENET_URLS, "resnet50", f"http://127.0.0.1:{port}/resnet50-0676ba61.pth")
    with pytest.raises(UserError) as e:
        init_weights.build_model(True, "imagenet")
    msg = str(e.value)
    assert "\n" not in msg and "cannot be downloaded" in msg and "--init random" in msg and "resnet50" in msg
    with pytest.raises(UserError, match="not found in"):
        init_weights.build_model(True, "imagenet", tmp_path / "empty")


def test_init_file_errors(tmp_path):
    with pytest.raises(UserError, match="not found: nope.pth"):
        init_weights.build_model(False, "nope.pth")
    path = tmp_path / "multi.pth"
    torch.save(STCN().state_dict(), path)
    with pytest.raises(UserError, match="value_encoder.conv1.weight"):  # 5-channel weights into stage 0
        init_weights.build_model(True, str(path))
    load_weights(STCN(), path)


def test_atomic_save_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "c.pth"
    atomic_save({"a": 1}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_save({"b": Boom()}, path)
    assert torch.load(path, weights_only=False) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["c.pth"]


@pytest.mark.parametrize(
    ("change", "message"),
    [({"crop": 100}, "multiple of 16"), ({"crop": 16}, "at least 32"), ({"log_every": 0}, "setting log_every"),
     ({"iterations": 0}, "setting iterations"), ({"stage": 5}, "unknown training stage"),
     ({"data": []}, "no training data"), ({"num_workers": -1}, "setting num_workers"), ({"lr": 0.0}, "setting lr")],
)  # fmt: skip
def test_train_config_is_checked_on_construction(change, message):
    """Every caller (CLI, DVC stage, benchmarks) gets the same checks: they live in TrainConfig."""
    with pytest.raises(UserError, match=message):
        TrainConfig(**{"stage": 3, "data": ["shards/davis17"], "out": "o", **change})


def test_train_config_defaults_are_the_cli_defaults():
    from clihelp import invoke

    cfg = TrainConfig(stage=3, data=["x"], out="o")
    assert cfg.num_workers == min(4, os.cpu_count() or 1) and cfg.log_every == 10 and not cfg.resume
    help_text = invoke("train", "--help", terminal_width=200).output
    assert "[default: 10]" in help_text and "[default: 384]" in help_text


def test_one_stage_to_data_kind_map_the_recipe():
    """The stream receives a data kind (the recipe maps stage numbers to kinds; no second map)."""
    from stcn.data.stream.loader import KINDS, data_kind

    assert [s.data for s in STAGES.values()] == ["static", "bl30k", "video", "video"]
    assert all(data_kind(s.data) == s.data for s in STAGES.values()) and set(KINDS) == {"static", "bl30k", "video"}
    for bad in ("frames", 2):  # a stage number is the trainer's to map, not the loader's
        with pytest.raises(UserError, match="unknown data kind"):
            data_kind(bad)
