"""The ONNX Runtime backend: the exported graphs behind the interface the inference cores use of `STCN`.

    model = load_backend(weights, "onnxruntime", device, precision)  # weights: a `stcn export` folder
    core = NumpyCore(model, settings)       # what `stcn segment/evaluate --backend onnxruntime` run: no torch
    core = InferenceCore(model, settings)   # also works: torch tensors in, torch tensors out

`OnnxSTCN.encode_key / encode_value / decode` take numpy arrays and return numpy arrays (or torch tensors
for torch tensors); the memory read-out between them is host code: `stcn.inference.numpy_core` (numpy) on
the command line, so this module and that path need neither torch nor onnx, only ONNX Runtime and numpy.
It runs fp32 only (the `fast` / `bf16` rungs are PyTorch autocast).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from stcn.errors import UserError
from stcn.model.onnx_format import GRAPHS, check_checkpoint_path, read_manifest

BACKENDS = ("torch", "onnxruntime")
OPTIMISATION = ("disable", "basic", "extended", "all")


def import_onnxruntime():
    """The onnxruntime module, or a one-line UserError saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError("--backend onnxruntime needs ONNX Runtime: pip install 'stcn[onnx]'") from None
    return onnxruntime


def check_backend(backend: str) -> str:
    """`backend` when known, else a one-line UserError listing the choices."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return backend


def backend_device(backend: str, device: str | None) -> str | None:
    """The device option for `backend` (checked): ONNX Runtime runs on its CPU provider unless told otherwise,
    also where CUDA is available; PyTorch keeps `device` (None: cuda when available)."""
    check_backend(backend)
    return "cpu" if backend == "onnxruntime" and device is None else device


def session_options(threads: int | None = None, optimisation: str | None = None):
    """ONNX Runtime session options: intra-op threads (`STCN_ORT_THREADS`, default: ONNX Runtime's own choice)
    and graph optimisation level (`STCN_ORT_OPT`: disable | basic | extended | all, default all)."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    threads = threads if threads is not None else int(os.environ.get("STCN_ORT_THREADS", "0") or 0)
    if threads > 0:
        options.intra_op_num_threads = threads
    level = optimisation or os.environ.get("STCN_ORT_OPT", "all")
    if level not in OPTIMISATION:
        raise UserError(f"unknown ONNX Runtime optimisation level {level!r}; choose one of {', '.join(OPTIMISATION)}")
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    return options


def _numpy(x) -> np.ndarray:
    """A C-contiguous fp32 array of a numpy array or a CPU tensor (channels-last tensors are copied into NCHW)."""
    if not isinstance(x, np.ndarray):
        x = x.detach().float().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


class OnnxSTCN:
    """The three exported graphs of a `stcn export` folder, with `STCN`'s inference methods."""

    host = "numpy"  # `propagate` runs it with the torch-free `NumpyCore`

    def __init__(self, folder: str | Path, threads: int | None = None, optimisation: str | None = None,
                 providers: list[str] | None = None):  # fmt: skip
        ort = import_onnxruntime()
        folder = Path(folder)
        self.manifest = read_manifest(folder)
        options = session_options(threads, optimisation)
        providers = providers or ["CPUExecutionProvider"]
        self.sessions = {}
        for name in GRAPHS:
            try:
                self.sessions[name] = ort.InferenceSession(str(folder / f"{name}.onnx"), options, providers=providers)
            except Exception as e:  # ONNX Runtime raises its own exception types for a corrupt graph
                raise UserError(f"cannot load ONNX graph {folder / f'{name}.onnx'}: {str(e).splitlines()[0]}") from None
            inputs = tuple(arg.name for arg in self.sessions[name].get_inputs())
            outputs = tuple(arg.name for arg in self.sessions[name].get_outputs())
            if (inputs, outputs) != GRAPHS[name]:  # another model's graph (or another graph) under this name
                want = f"{list(GRAPHS[name][0])} -> {list(GRAPHS[name][1])}"
                raise UserError(f"{folder / f'{name}.onnx'} is not an STCN {name}: it maps {list(inputs)} -> "
                                f"{list(outputs)}, not {want}")  # fmt: skip

    def _run(self, name: str, *inputs) -> list:
        """Run one graph; numpy arrays in -> numpy arrays out, torch tensors in -> torch tensors out."""
        session = self.sessions[name]
        feed = {arg.name: _numpy(x) for arg, x in zip(session.get_inputs(), inputs, strict=True)}
        outputs = session.run(None, feed)
        if isinstance(inputs[0], np.ndarray):
            return outputs
        import torch

        return [torch.from_numpy(y) for y in outputs]

    def encode_key(self, frame):
        """frame (1, 3, H, W) -> key (1, 64, h, w), thin (1, 512, h, w), f16, f8, f4."""
        return tuple(self._run("key_encoder", frame))

    def encode_value(self, frame, f16, masks):
        """Memory values (K, 512, h, w) of K object masks (K, 1, H, W)."""
        return self._run("value_encoder", frame, f16, masks)[0]

    def decode(self, readout, thin, f8, f4):
        """Object probabilities (K, 1, H, W) from K read-outs (K, 512, h, w)."""
        return self._run("decoder", readout, thin, f8, f4)[0]


def check_weights(weights: str | Path, backend: str) -> None:
    """What can be checked of `weights` before any model loads (no torch imported): a checkpoint file for torch (an
    export folder names `--backend onnxruntime`), ONNX Runtime installed and a complete export folder for it."""
    check_backend(backend)
    if backend == "torch":
        check_checkpoint_path(weights)
        return
    import_onnxruntime()
    if not Path(weights).is_dir():
        raise UserError(f"--backend onnxruntime needs a `stcn export` folder as --weights, got {weights}")
    read_manifest(Path(weights))


def load_backend(weights: str | Path, backend: str, device: str = "cpu", precision: str = "fp32"):
    """The model `InferenceCore` runs: PyTorch from a checkpoint, or ONNX Runtime from a `stcn export` folder."""
    check_backend(backend)
    if backend == "torch":
        from stcn.inference.loading import load_model

        return load_model(weights, device)
    import_onnxruntime()
    if precision != "fp32":
        raise UserError(f"--backend onnxruntime runs fp32 only, not --precision {precision}")
    if str(device).split(":")[0] != "cpu":
        raise UserError(f"--backend onnxruntime runs on the CPU, not --device {device}")
    if not Path(weights).is_dir():
        raise UserError(f"--backend onnxruntime needs a `stcn export` folder as --weights, got {weights}")
    return OnnxSTCN(weights)
