"""`stcn export --format onnx`: the three networks of STCN as ONNX graphs plus a manifest.

    OUT/key_encoder.onnx    frame (1, 3, H, W)                       -> key, thin, f16, f8, f4
    OUT/value_encoder.onnx  frame, f16 (1, 1024, H/16, W/16), masks (K, 1, H, W) -> values (K, 512, H/16, W/16)
    OUT/decoder.onnx        readout (K, 512, h, w), thin, f8, f4     -> probabilities (K, 1, H, W)
    OUT/manifest.json       format, opset, the ONNX Runtime version it was checked with, inputs/outputs, weights,
                            trained_at (the weights.json sidecar: the resolution every entry point runs it at)

H and W (multiples of 16, as the inference pads frames) and the object count K are dynamic. The memory
read-out (affinity, top-k, softmax, aggregation) stays in the runtime's host code (`stcn.inference.numpy_core`),
as does everything between the graphs. BatchNorm is folded into the convolutions before export
(`stcn.model.fold`), exactly as for PyTorch inference.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from stcn.model.network import STCN
from stcn.model.onnx_format import FORMAT, GRAPHS, MAX_OBJECTS, MAX_SIDE, OPSET, ORT_VERSION, read_manifest, sha256
from stcn.model.trained import trained_at

__all__ = ["FORMAT", "GRAPHS", "OPSET", "ORT_VERSION", "export_onnx", "read_manifest", "sha256"]


class _KeyEncoder(nn.Module):
    def __init__(self, model: STCN):
        super().__init__()
        self.model = model

    def forward(self, frame: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model.encode_key(frame)


class _ValueEncoder(nn.Module):
    """`STCN.encode_value` without its K == 1 branch: for one object, sum - mask is exactly zero."""

    def __init__(self, model: STCN):
        super().__init__()
        self.model = model

    def forward(self, frame: torch.Tensor, f16: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        k = masks.shape[0]
        others = masks.sum(0, keepdim=True) - masks
        both = torch.cat([masks, others], 1)
        return self.model.value_encoder(frame.expand(k, -1, -1, -1), f16.expand(k, -1, -1, -1), both)


class _Decoder(nn.Module):
    def __init__(self, model: STCN):
        super().__init__()
        self.model = model

    def forward(self, readout: torch.Tensor, thin: torch.Tensor, f8: torch.Tensor, f4: torch.Tensor) -> torch.Tensor:
        return self.model.decode(readout, thin, f8, f4)


def _examples(h: int = 4, w: int = 6, k: int = 2) -> dict[str, tuple[torch.Tensor, ...]]:
    """Small example inputs of each graph (h, w: the stride-16 size; k objects)."""
    H, W = 16 * h, 16 * w  # noqa: N806
    frame = torch.randn(1, 3, H, W)
    f16, f8, f4 = torch.randn(1, 1024, h, w), torch.randn(1, 512, 2 * h, 2 * w), torch.randn(1, 256, 4 * h, 4 * w)
    masks = (torch.rand(k, 1, H, W) > 0.5).float()
    return {
        "key_encoder": (frame,),
        "value_encoder": (frame, f16, masks),
        "decoder": (torch.randn(k, 512, h, w), torch.randn(1, 512, h, w), f8, f4),
    }


def _dynamic_shapes() -> dict[str, tuple]:
    """Dynamic axes per graph input: stride-16 height/width (the other strides derived) and the object count."""
    from torch.export import Dim

    h, w = Dim("h16", min=1, max=MAX_SIDE // 16), Dim("w16", min=1, max=MAX_SIDE // 16)
    k = Dim("objects", min=1, max=MAX_OBJECTS)

    def full() -> dict:
        return {2: 16 * h, 3: 16 * w}

    def at(stride: int) -> dict:
        return {2: (16 // stride) * h, 3: (16 // stride) * w} if stride < 16 else {2: h, 3: w}

    return {
        "key_encoder": (full(),),
        "value_encoder": (full(), at(16), {0: k, **full()}),
        "decoder": ({0: k, **at(16)}, at(16), at(8), at(4)),
    }


def export_onnx(model: STCN, out: Path, weights: Path | None = None) -> dict:
    """Write the three graphs and manifest.json of an inference-ready `model` (eval, BatchNorm folded) into `out`.

    `out` is written as is (callers make it atomic); returns the manifest.
    """
    model = model.float().to("cpu", memory_format=torch.contiguous_format).eval()
    wrappers = {"key_encoder": _KeyEncoder, "value_encoder": _ValueEncoder, "decoder": _Decoder}
    examples, shapes = _examples(), _dynamic_shapes()
    graphs = {}
    for name, (inputs, outputs) in GRAPHS.items():
        path = out / f"{name}.onnx"
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's notices; a real failure raises
            program = torch.onnx.export(
                wrappers[name](model).eval(),
                examples[name],
                dynamo=True,
                opset_version=OPSET,
                input_names=list(inputs),
                output_names=list(outputs),
                dynamic_shapes=shapes[name],
                external_data=False,
                verbose=False,
            )
            program.save(str(path), external_data=False)
        graphs[name] = {"file": path.name, "inputs": list(inputs), "outputs": list(outputs), "sha256": sha256(path)}
    manifest = {
        "format": FORMAT,
        "opset": OPSET,
        "onnxruntime": ORT_VERSION,
        "torch": torch.__version__,
        "batchnorm_folded": True,
        "weights": {"file": weights.name, "sha256": sha256(weights)} if weights is not None else None,
        "trained_at": trained_at(weights) if weights is not None else None,  # the weights.json sidecar's resolution
        "graphs": graphs,
        "readout": "host code (stcn.inference.numpy_core): L2 affinity, top-k softmax, soft aggregation",
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
