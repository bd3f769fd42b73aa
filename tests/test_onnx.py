"""`stcn export --format onnx` and `--backend onnxruntime`: masks equal to PyTorch fp32 on the parity case,
dynamic size and object count through the CLI, and the one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from clihelp import one_error, stcn
from conftest import DAVIS, KEY_LIST, PARITY, mini_davis, png_frames
from PIL import Image

from stcn.data.fetch.sources import DAVIS_MINI
from stcn.data.images import read_frame, read_mask
from stcn.inference import InferenceCore, InferenceSettings
from stcn.inference.frames import image_tensor, labels_from_prob, one_hot
from stcn.inference.loading import load_model

pytest.importorskip("onnxruntime", reason="the `onnx` extra (pip install 'stcn[onnx]') is not installed")

BLACKSWAN = DAVIS / "JPEGImages/480p/blackswan"
FIRST = DAVIS / "Annotations/480p/blackswan/00000.png"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def parity_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("parity") / "w.pth"
    subprocess.run([sys.executable, PARITY / "make_weights.py", KEY_LIST, path],
                   capture_output=True, check=True)  # fmt: skip
    return path


@pytest.fixture(scope="module")
def exported(parity_weights, tmp_path_factory):
    """The parity weights exported by the CLI."""
    out = tmp_path_factory.mktemp("onnx") / "export"
    r = stcn("export", "--format", "onnx", "--weights", parity_weights, "--out", out)
    assert r.returncode == 0, r.stderr
    return out


def run_core(model, frames: list, first: np.ndarray, ids: list[int]) -> list[np.ndarray]:
    core = InferenceCore(model, InferenceSettings(top_k=20, mem_every=5))
    labels = []
    for t, frame in enumerate(frames):
        prob = core.step(image_tensor(read_frame(frame)), one_hot(first, ids) if t == 0 else None,
                         ids if t == 0 else None, is_last=t == len(frames) - 1)  # fmt: skip
        labels.append(labels_from_prob(prob, first.shape))
    return labels


def test_export_writes_three_graphs_and_a_manifest(exported, parity_weights):
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["opset"] == 18 and manifest["batchnorm_folded"] is True
    assert set(manifest["graphs"]) == {"key_encoder", "value_encoder", "decoder"}
    for graph in manifest["graphs"].values():
        assert (exported / graph["file"]).stat().st_size > 1_000_000
    import onnx

    decoder = onnx.load(str(exported / "decoder.onnx"))
    assert not any(node.op_type == "BatchNormalization" for node in decoder.graph.node)
    key = onnx.load(str(exported / "key_encoder.onnx"), load_external_data=False)
    assert not any(node.op_type == "BatchNormalization" for node in key.graph.node)
    dims = key.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param != "" for d in dims] == [False, False, True, True]  # height and width are dynamic


def run_numpy_core(model, frames: list, first: np.ndarray, ids: list[int]) -> list[np.ndarray]:
    """As `run_core`, with the torch-free host code `stcn segment --backend onnxruntime` runs."""
    from stcn.inference.numpy_core import NumpyCore, image_array, labels_from_array, one_hot_array

    core = NumpyCore(model, InferenceSettings(top_k=20, mem_every=5))
    labels = []
    for t, frame in enumerate(frames):
        prob = core.step(image_array(read_frame(frame)), one_hot_array(first, ids) if t == 0 else None,
                         ids if t == 0 else None, is_last=t == len(frames) - 1)  # fmt: skip
        labels.append(labels_from_array(prob, first.shape))
    return labels


def test_round_trip_on_the_parity_case_matches_pytorch_per_frame(exported, parity_weights):
    """Case A of the parity reference (20 blackswan frames at 480p): ONNX Runtime masks = PyTorch fp32 masks,
    with the read-out in torch (`InferenceCore`) and in numpy (`NumpyCore`, the command line's)."""
    from stcn.inference.ort_backend import OnnxSTCN

    frames = sorted(BLACKSWAN.glob("*.jpg"))[:20]
    first = read_mask(FIRST)
    torch_labels = run_core(load_model(parity_weights), frames, first, [1])
    onnx = OnnxSTCN(exported, threads=1)
    for ort_labels in (run_core(onnx, frames, first, [1]), run_numpy_core(onnx, frames, first, [1])):
        agreement = [float((a == b).mean()) for a, b in zip(torch_labels, ort_labels, strict=True)]
        assert min(agreement) >= 0.999, agreement
    assert (torch_labels[-1] == 1).mean() > 0.01  # the swan is still segmented at the end


def test_onnxruntime_segment_runs_without_torch(exported, tmp_path):
    """`stcn segment --backend onnxruntime` with PyTorch unimportable (sys.modules['torch'] = None): the masks
    of a real video, with --resolution (OpenCV resizing), and the same as with torch importable."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for jpg in sorted(BLACKSWAN.glob("*.jpg"))[:4]:
        (frames / jpg.name).write_bytes(jpg.read_bytes())
    args = ["segment", "--weights", str(exported), "--backend", "onnxruntime", "--frames", str(frames),
            "--first-mask", str(FIRST), "--resolution", "160"]  # fmt: skip
    code = ("import sys; sys.modules['torch'] = None; sys.argv[0] = 'stcn'; "
            "from stcn.cli.app import main; main()")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code, *args, "--out", str(tmp_path / "no-torch")],
                       capture_output=True, text=True, env={**os.environ, "STCN_QUIET": "1"})  # fmt: skip
    assert r.returncode == 0, r.stderr
    with_torch = stcn(*args, "--out", tmp_path / "torch")
    assert with_torch.returncode == 0, with_torch.stderr
    pngs = sorted((tmp_path / "no-torch").glob("*.png"))
    assert [p.name for p in pngs] == ["00000.png", "00001.png", "00002.png", "00003.png"]
    for png in pngs:
        assert np.array_equal(read_mask(png), read_mask(tmp_path / "torch" / png.name))
    assert (read_mask(pngs[-1]) == 1).mean() > 0.01
    blocked = subprocess.run([sys.executable, "-c", "import sys; sys.modules['torch'] = None; import torch"],
                             capture_output=True, text=True)  # fmt: skip
    assert blocked.returncode != 0 and "torch" in blocked.stderr  # the block is real


def test_cli_backend_two_objects_at_another_size(exported, parity_weights, tmp_path):
    """`stcn segment --backend onnxruntime` with two objects and --resolution: same masks as `--backend torch`."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for jpg in sorted(BLACKSWAN.glob("*.jpg"))[:6]:
        (frames / jpg.name).write_bytes(jpg.read_bytes())
    mask = read_mask(FIRST)
    cols = np.flatnonzero((mask == 1).any(0))
    mask[:, (cols[0] + cols[-1]) // 2 :] *= 2  # the swan's right half becomes object 2
    Image.fromarray(mask).save(tmp_path / "first.png")
    outs = {}
    for backend, weights in (("torch", parity_weights), ("onnxruntime", exported)):
        outs[backend] = tmp_path / backend
        r = stcn("segment", "--weights", weights, "--backend", backend, "--frames", frames, "--first-mask",
                 tmp_path / "first.png", "--out", outs[backend], "--resolution", "200")  # fmt: skip
        assert r.returncode == 0, r.stderr
    for png in sorted(outs["torch"].glob("*.png")):
        a, b = read_mask(png), read_mask(outs["onnxruntime"] / png.name)
        assert a.shape == (480, 854)
        assert (a == b).mean() >= 0.999, png.name
    assert set(np.unique(read_mask(outs["onnxruntime"] / "00005.png"))) <= {0, 1, 2}


def test_batch_mode_and_evaluate_run_the_onnx_backend(exported, parity_weights, tmp_path):
    """Batch mode and `stcn evaluate` take --backend onnxruntime: the same masks as PyTorch, and scores."""
    root = mini_davis(tmp_path / "davis", {"blackswan": "val", "libby": "val"}, n=4, scale=0.25)
    masks = tmp_path / "masks"
    masks.mkdir()
    for seq in ("blackswan", "libby"):
        (masks / f"{seq}.png").write_bytes((root / "Annotations/480p" / seq / "00000.png").read_bytes())
    outs = {}
    for backend, weights in (("torch", parity_weights), ("onnxruntime", exported)):
        outs[backend] = tmp_path / f"batch-{backend}"
        r = stcn("segment", "--weights", weights, "--backend", backend, "--frames", root / "JPEGImages/480p",
                 "--first-mask", masks, "--out", outs[backend])  # fmt: skip
        assert r.returncode == 0, r.stderr
    for png in sorted(outs["torch"].glob("*/*.png")):
        assert (read_mask(png) == read_mask(outs["onnxruntime"] / png.parent.name / png.name)).mean() >= 0.999
    assert len(list(outs["onnxruntime"].glob("*/*.png"))) == 8
    r = stcn("evaluate", "--weights", exported, "--backend", "onnxruntime", "--dataset", "davis17", "--root", root,
             "--out", tmp_path / "eval")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "eval" / "global_results-val.csv").is_file()
    assert read_mask(tmp_path / "eval/libby/00003.png").shape == read_mask(outs["torch"] / "libby/00003.png").shape


def test_unknown_backend_is_one_line(parity_weights, tmp_path):
    r = stcn("segment", "--weights", parity_weights, "--backend", "tensorrt", "--frames", BLACKSWAN,
             "--first-mask", FIRST, "--out", tmp_path / "out")  # fmt: skip
    one_error(r, "unknown backend 'tensorrt'", "onnxruntime", alone=True)
    assert not (tmp_path / "out").exists()


def test_missing_onnxruntime_is_one_line(exported, tmp_path):
    """Without the onnxruntime package (import blocked), the backend says how to install it."""
    code = ("import sys; sys.modules['onnxruntime'] = None; sys.argv[0] = 'stcn'; "
            "from stcn.cli.app import main; main()")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code, "segment", "--weights", str(exported), "--backend", "onnxruntime",
                        "--frames", str(BLACKSWAN), "--first-mask", str(FIRST), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True)  # fmt: skip
    one_error(r, "onnxruntime", "pip install", alone=True)


def test_checkpoint_instead_of_export_folder_is_one_line(parity_weights, tmp_path):
    r = stcn("segment", "--weights", parity_weights, "--backend", "onnxruntime", "--frames", BLACKSWAN,
             "--first-mask", FIRST, "--out", tmp_path / "out")  # fmt: skip
    one_error(r, "stcn export", str(parity_weights), alone=True)


def test_truncated_graph_is_one_line(exported, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in exported.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    data = (broken / "decoder.onnx").read_bytes()
    (broken / "decoder.onnx").write_bytes(data[: len(data) // 3])
    r = stcn("segment", "--weights", broken, "--backend", "onnxruntime", "--frames", BLACKSWAN,
             "--first-mask", FIRST, "--out", tmp_path / "out")  # fmt: skip
    one_error(r, "decoder.onnx", alone=True)


def test_unknown_export_format_is_one_line(parity_weights, tmp_path):
    r = stcn("export", "--format", "tflite", "--weights", parity_weights, "--out", tmp_path / "x")
    one_error(r, "unknown export format 'tflite'", alone=True)
    assert not (tmp_path / "x").exists()


def test_onnx_graphs_swapped_or_of_another_model_are_one_line(tmp_path: Path, weights_file: Path) -> None:
    """Issue 30 item 14: swapped graphs, or another model's graph, were `zip() argument 2 is shorter` tracebacks
    (the manifest's sha256 was never checked); now one line naming the graph."""
    pytest.importorskip("onnxruntime")
    from PIL import Image

    from stcn.model.onnx_format import sha256

    export = tmp_path / "export"
    res = stcn("export", "--weights", weights_file, "--out", export)
    assert res.returncode == 0, res.stderr[-2000:]
    frames = png_frames(tmp_path / "frames", 2)
    mask = tmp_path / "first.png"
    Image.open(DAVIS_MINI / "Annotations/480p/blackswan/00000.png").resize((214, 120), Image.NEAREST).save(mask)

    def segment() -> subprocess.CompletedProcess:
        return stcn("segment", "--weights", export, "--backend", "onnxruntime", "--frames", frames, "--first-mask",
                    mask, "--out", tmp_path / "out")  # fmt: skip

    key, decoder = export / "key_encoder.onnx", export / "decoder.onnx"
    key_bytes, decoder_bytes = key.read_bytes(), decoder.read_bytes()
    key.write_bytes(decoder_bytes), decoder.write_bytes(key_bytes)  # swapped
    one_error(segment(), f"{key} is not the graph {export / 'manifest.json'} records (sha256 differs)")
    manifest = json.loads((export / "manifest.json").read_text())  # and a manifest that agrees with the swap
    for graph in (key, decoder):
        manifest["graphs"][graph.stem]["sha256"] = sha256(graph)
    (export / "manifest.json").write_text(json.dumps(manifest))
    one_error(segment(), f"{key} is not an STCN key_encoder", "['readout', 'thin', 'f8', 'f4']")
    assert not (tmp_path / "out").exists()
