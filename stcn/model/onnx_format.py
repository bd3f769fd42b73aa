"""The `stcn export` folder format without torch: graph names, inputs/outputs, versions and the manifest check.

`stcn.model.export` writes the folder (needs torch); `stcn.inference.ort_backend` reads it (needs only
ONNX Runtime and numpy), so this module imports neither torch nor onnx.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from stcn.errors import UserError

OPSET = 18  # the ONNX opset of every exported graph (ONNX Runtime >= 1.14 runs it)
ORT_VERSION = "1.32.0"  # the ONNX Runtime version the export is checked against (pinned in the `onnx` extra)
FORMAT = "stcn-onnx/1"
MAX_SIDE = 4096  # largest frame side (pixels) the dynamic shapes admit
MAX_OBJECTS = 255  # largest object count (palette ids)
GRAPHS = {
    "key_encoder": (("frame",), ("key", "thin", "f16", "f8", "f4")),
    "value_encoder": (("frame", "f16", "masks"), ("values",)),
    "decoder": (("readout", "thin", "f8", "f4"), ("prob",)),
}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_checkpoint_path(path: str | Path) -> Path:
    """`path` when it is a file; an ONNX export folder names `--backend onnxruntime`; else a one-line UserError."""
    path = Path(path)
    if path.is_dir():
        if (path / "manifest.json").is_file():
            raise UserError(f"{path} is an ONNX export folder (stcn export), not a checkpoint: add --backend "
                            "onnxruntime to run it, or give the .pth it was exported from")  # fmt: skip
        raise UserError(f"{path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    return path


def read_manifest(folder: Path) -> dict:
    """The manifest of an export folder, checked: right format and every graph file present (else a UserError)."""
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise UserError(f"not an ONNX export folder (no manifest.json): {folder}; make one with `stcn export`")
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"corrupt manifest {path}: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError(f"{path}: not a {FORMAT} manifest")
    graphs = manifest.get("graphs")
    for name in GRAPHS:
        graph = Path(folder) / f"{name}.onnx"
        if not graph.is_file():
            raise UserError(f"ONNX export incomplete: missing {graph}")
        entry = graphs.get(name) if isinstance(graphs, dict) else None
        if not isinstance(entry, dict) or entry.get("file") != graph.name or not isinstance(entry.get("sha256"), str):
            raise UserError(f"{path}: no file and sha256 recorded for graph {name}; export again with `stcn export`")
        if sha256(graph) != entry["sha256"]:  # a graph of another export, or two graphs swapped
            raise UserError(f"{graph} is not the graph {path} records (sha256 differs): replaced, swapped or "
                            "damaged; export again with `stcn export`")  # fmt: skip
    return manifest
