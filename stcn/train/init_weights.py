"""Where a stage's weights start: the previous stage's weights file, ImageNet backbones, or random init."""

from __future__ import annotations

import socket
from collections import OrderedDict
from pathlib import Path

import torch
import torchvision
from torch import nn

from stcn.errors import UserError
from stcn.model.checkpoint import CONV1, load_weights
from stcn.model.network import STCN

# the original's `resnet50(pretrained=True)` / `resnet18(pretrained=True)`; file names carry a sha256 prefix
IMAGENET_URLS = {
    "resnet50": torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url,
    "resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url,
}
DOWNLOAD_TIMEOUT_S = 30


def _imagenet_state(arch: str, folder: str | Path | None) -> dict[str, torch.Tensor]:
    """ImageNet weights from `folder` (torchvision file name), else the torch hub cache / a
    download whose sha256 must match the prefix in the file name."""
    url = IMAGENET_URLS[arch]
    name = Path(url).name
    if folder is not None:
        path = Path(folder) / name
        if not path.is_file():
            raise UserError(f"ImageNet weights {name} not found in {folder} (torchvision's file name is expected)")
        return torch.load(path, map_location="cpu", weights_only=True)
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return torch.hub.load_state_dict_from_url(
            url, model_dir=str(cache), progress=False, map_location="cpu", check_hash=True, weights_only=True
        )
    except Exception as e:  # offline: URLError / timeouts; a wrong hash or a corrupt cache: RuntimeError
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(
            f"ImageNet weights {name} are not in {cache} and cannot be downloaded ({reason}); "
            "copy them there, pass --imagenet-dir DIR, or use --init random"
        ) from None
    finally:
        socket.setdefaulttimeout(old)


def load_imagenet(model: STCN, folder: str | Path | None = None) -> STCN:
    """ResNet-50 into the key encoder, ResNet-18 into the value encoder (as the original release).

    The value encoder's extra mask channel(s) of conv1 are orthogonal-initialised; its conv biases
    and the fuser keep their fresh init.
    """
    r50 = _imagenet_state("resnet50", folder)
    r18 = _imagenet_state("resnet18", folder)
    key_state = OrderedDict()
    for name in model.key_encoder.state_dict():
        src = "layer1" + name[len("res2") :] if name.startswith("res2") else name
        if src in r50:
            key_state[name] = r50[src]
    model.key_encoder.load_state_dict(key_state, strict=False)

    value_state = OrderedDict()
    for name, tensor in model.value_encoder.state_dict().items():
        if name not in r18 or "num_batches_tracked" in name:
            continue
        src = r18[name]
        if name == CONV1.removeprefix("value_encoder.") and src.shape != tensor.shape:
            extra = torch.zeros(tensor.shape[0], tensor.shape[1] - src.shape[1], *tensor.shape[2:])
            nn.init.orthogonal_(extra)
            src = torch.cat([src, extra], 1)
        value_state[name] = src
    model.value_encoder.load_state_dict(value_state, strict=False)
    return model


def build_model(stage_single_object: bool, init: str, imagenet_dir: str | Path | None = None) -> STCN:
    """A fresh STCN for a stage, initialised from 'random', 'imagenet' or a weights file path.

    A stage-0 (single-object) file loaded into a multi-object model gets its 5th value-encoder
    input channel orthogonal-initialised.
    """
    model = STCN(single_object=stage_single_object)
    if init == "random":
        return model
    if init == "imagenet":
        return load_imagenet(model, imagenet_dir)
    if not Path(init).is_file():
        raise UserError(f"--init must be 'random', 'imagenet' or a weights file; not found: {init}")
    return load_weights(model, init, orthogonal_pad=True)
