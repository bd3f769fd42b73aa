"""One user, every entry point (issue 31): the weights' own resolution everywhere (an export folder carries it),
precision auto picks the rung the CPU runs natively, input errors before any model loads, frame 0 = the given mask.

The in-process runs record what reaches the model (the settings) with a spy that stops the run there, so each
entry point is checked for what it decides, not for how long it takes; the model loaders are replaced by a marker
that fails the test where an input error must come first.
"""

from __future__ import annotations

import json
import pickle
import shutil
import socket
from pathlib import Path

import clihelp
import numpy as np
import pytest
from conftest import DAVIS
from PIL import Image

from stcn.data.images import read_mask, write_mask
from stcn.errors import UserError
from stcn.inference.settings import InferenceSettings, choose_precision, native_half, precision_said
from stcn.model.trained import write_trained_at

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Reached(Exception):
    """Raised by a spy where the model would start working: the run got that far with these settings."""

    def __init__(self, settings: InferenceSettings):
        super().__init__("reached the model")
        self.settings = settings


def invoke(*args) -> tuple[object, str]:
    """`stcn ARGS` in this process: (the exception it ended with or None, its stdout + stderr)."""
    result = clihelp.invoke(*args, catch_exceptions=True)
    return result.exception, result.output


@pytest.fixture
def trained(weights_file, tmp_path) -> Path:
    """Seeded weights with a weights.json sidecar: trained on 64 px crops -> run at 80."""
    weights = tmp_path / "w" / "weights.pth"
    weights.parent.mkdir()
    shutil.copy(weights_file, weights)
    write_trained_at(weights, stage=3, crop=64)
    return weights


@pytest.fixture
def spy(monkeypatch):
    """The settings each entry point hands to the model, recorded where propagation / the session would start."""

    def stop(*args, **kwargs):
        settings = next(a for a in (*args, *kwargs.values()) if isinstance(a, InferenceSettings))
        raise Reached(settings)

    import stcn.eval.benchmark
    import stcn.eval.evaluate  # noqa: F401  (these bind the real names at import: import them before the patch,
    import stcn.inference.video
    import stcn.interactive.core
    import stcn.interactive.evaluate  # noqa: F401  so no later test of this process inherits the spy)
    import stcn.interactive.session

    monkeypatch.setattr(stcn.inference.video, "propagate", stop)
    monkeypatch.setattr(stcn.eval.benchmark, "evaluate", stop)
    monkeypatch.setattr(stcn.interactive.core, "InteractiveCore", stop)
    monkeypatch.setattr(stcn.interactive.session, "Session", stop)


def reached(error) -> InferenceSettings:
    assert isinstance(error, Reached), repr(error)
    return error.settings


def note_of(output: str, source: str) -> str:
    notes = [line for line in output.splitlines() if line.startswith("note:") and "crops" in line]
    assert len(notes) == 1 and "--resolution 80" in notes[0] and source in notes[0], output
    return notes[0]


def test_every_entry_point_runs_at_the_weights_resolution_and_says_so(trained, small_blackswan, tmp_path, spy):
    frames, masks = small_blackswan
    # stcn segment, one video
    error, out = invoke("segment", "--weights", trained, "--frames", frames, "--first-mask", masks / "00000.png",
                        "--out", tmp_path / "o1")  # fmt: skip
    assert reached(error).resolution == 80 and note_of(out, "weights.json")
    # batch mode
    (tmp_path / "videos").mkdir()
    shutil.copytree(frames, tmp_path / "videos" / "swan")
    (tmp_path / "masks").mkdir()
    shutil.copy(masks / "00000.png", tmp_path / "masks" / "swan.png")
    error, out = invoke("segment", "--weights", trained, "--frames", tmp_path / "videos", "--first-mask",
                        tmp_path / "masks", "--out", tmp_path / "o2")  # fmt: skip
    assert reached(error).resolution == 80 and note_of(out, "weights.json")
    # stcn evaluate
    error, out = invoke("evaluate", "--weights", trained, "--root", DAVIS, "--out", tmp_path / "o3")
    assert reached(error).resolution == 80 and note_of(out, "weights.json")
    # stcn interact
    strokes = np.zeros(read_mask(masks / "00000.png").shape, np.uint8)
    strokes[100:110, 150:250] = 1
    Image.fromarray(strokes).save(tmp_path / "s.png")
    error, out = invoke("interact", "--weights", trained, "--frames", frames, "--scribbles", tmp_path / "s.png",
                        "--frame", "0", "--out", tmp_path / "o4")  # fmt: skip
    assert reached(error).resolution == 80 and note_of(out, "weights.json")
    # stcn app (port 0: a free one)
    error, out = invoke("app", "--weights", trained, "--port", "0", "--root", tmp_path, "--out", tmp_path / "o5")
    assert reached(error).resolution == 80 and note_of(out, "weights.json")
    # the user's --resolution wins, without a note
    error, out = invoke("segment", "--weights", trained, "--frames", frames, "--first-mask", masks / "00000.png",
                        "--out", tmp_path / "o1", "--resolution", "64")  # fmt: skip
    assert reached(error).resolution == 64 and "crops" not in out


def test_weights_without_a_sidecar_say_what_runs(weights_file, small_blackswan, tmp_path, spy):
    frames, masks = small_blackswan
    error, out = invoke("segment", "--weights", weights_file, "--frames", frames, "--first-mask",
                        masks / "00000.png", "--out", tmp_path / "o")  # fmt: skip
    assert reached(error).resolution is None and "note:" not in out  # official weights: frames as given, as ever
    error, out = invoke("app", "--weights", weights_file, "--port", "0", "--root", tmp_path, "--out", tmp_path / "a")
    assert reached(error).resolution == 480 and "running at --resolution 480" in out  # the page's default


def test_an_export_folder_carries_the_resolution_into_its_manifest(trained, small_blackswan, tmp_path, spy):
    pytest.importorskip("onnxruntime")
    error, out = invoke("export", "--weights", trained, "--out", tmp_path / "onnx")
    assert error is None, out
    manifest = json.loads((tmp_path / "onnx" / "manifest.json").read_text())
    assert manifest["trained_at"] == {"stage": 3, "crop": 64, "resolution": 80}
    frames, masks = small_blackswan
    error, out = invoke("segment", "--weights", tmp_path / "onnx", "--backend", "onnxruntime", "--frames", frames,
                        "--first-mask", masks / "00000.png", "--out", tmp_path / "o")  # fmt: skip
    settings = reached(error)
    assert settings.resolution == 80 and note_of(out, "manifest.json") and settings.precision == "fp32"
    assert precision_said("auto", settings, "onnxruntime") == "precision fp32 (auto: ONNX Runtime runs fp32)"
    # the folder given without --backend onnxruntime names the fix (not "checkpoint not found")
    error, out = invoke("segment", "--weights", tmp_path / "onnx", "--frames", frames, "--first-mask",
                        masks / "00000.png", "--out", tmp_path / "o")  # fmt: skip
    assert isinstance(error, UserError) and "add --backend onnxruntime" in str(error) and "not found" not in str(error)


@pytest.mark.parametrize(("forced", "rung"), [("0", "fp32"), ("1", "fast")])
def test_precision_auto_is_the_rung_the_cpu_runs_natively(forced, rung, trained, small_blackswan, tmp_path, spy,
                                                          monkeypatch):  # fmt: skip
    monkeypatch.setenv("STCN_NATIVE_HALF", forced)  # "no AMX / AVX512-BF16" (0) or "has it" (1)
    assert native_half("cpu") is (forced == "1") and native_half("cuda") is True
    frames, masks = small_blackswan
    error, out = invoke("segment", "--weights", trained, "--frames", frames, "--first-mask", masks / "00000.png",
                        "--out", tmp_path / "o", "--device", "cpu")  # fmt: skip
    settings = reached(error)
    assert settings.precision == rung
    said = f"precision {rung} (auto: this CPU {'has' if rung == 'fast' else 'has no'} AMX / AVX512-BF16"
    assert precision_said("auto", settings).startswith(said)  # what the closing line says (below: a real run)
    error, out = invoke("segment", "--weights", trained, "--frames", frames, "--first-mask", masks / "00000.png",
                        "--out", tmp_path / "o", "--device", "cpu", "--precision", "fast")  # fmt: skip
    assert reached(error).precision == "fast"
    assert ("emulated" in out) is (forced == "0")  # fast asked for where it is emulated: warned


def test_this_machines_own_detection_reads_the_cpu_flags(monkeypatch, capsys):
    monkeypatch.delenv("STCN_NATIVE_HALF", raising=False)
    flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    native = "amx_bf16" in flags or "avx512_bf16" in flags
    assert native_half("cpu") is native
    assert choose_precision("auto", "cpu", say=True) == ("fast" if native else "fp32")
    assert "precision auto ->" in capsys.readouterr().err


@pytest.fixture
def no_model(monkeypatch):
    """Every model loader fails the test: an input error must be reported before any of them runs."""

    def marker(*args, **kwargs):
        raise AssertionError("a model was loaded before the input error was reported")

    import stcn.inference.loading
    import stcn.inference.ort_backend
    import stcn.interactive.weights
    import stcn.model.checkpoint

    monkeypatch.setattr(stcn.inference.ort_backend, "load_backend", marker)
    monkeypatch.setattr(stcn.inference.loading, "load_model", marker)
    monkeypatch.setattr(stcn.model.checkpoint, "read_state_dict", marker)
    monkeypatch.setattr(stcn.interactive.weights, "load_s2m", marker)


def test_input_errors_come_before_any_model_loads(trained, small_blackswan, tmp_path, no_model):
    frames, masks = small_blackswan
    seg = ["segment", "--weights", trained, "--frames", frames]
    a_file = tmp_path / "a-file"  # an output that is a file, apart from every input
    a_file.write_text("not a folder")
    cases = [
        ([*seg, "--first-mask", tmp_path / "missing.png", "--out", tmp_path / "o"], "missing.png"),
        ([*seg, "--first-mask", masks / "00000.png", "--out", a_file], "exists and is a file"),
        (
            [
                "segment",
                "--weights",
                trained,
                "--frames",
                tmp_path / "nope",
                "--first-mask",
                masks / "00000.png",
                "--out",
                tmp_path / "o",
            ],
            "frames not found",
        ),  # fmt: skip
        ([*seg, "--first-mask", tmp_path / "no-masks-dir", "--out", tmp_path / "o"], "no-masks-dir"),
        (["evaluate", "--weights", trained, "--root", tmp_path / "nowhere", "--out", tmp_path / "o"], "nowhere"),
        (
            [
                "interact",
                "--weights",
                trained,
                "--frames",
                frames,
                "--scribbles",
                tmp_path / "none.png",
                "--out",
                tmp_path / "o",
            ],
            "none.png",
        ),  # fmt: skip
        (["app", "--weights", trained, "--root", frames, "--out", a_file], "exists and is a file"),
        (
            [
                "segment",
                "--weights",
                tmp_path / "absent.pth",
                "--frames",
                frames,
                "--first-mask",
                masks / "00000.png",
                "--out",
                tmp_path / "o",
            ],
            "checkpoint not found",
        ),  # fmt: skip
    ]
    small = np.zeros((10, 10), np.uint8)
    small[2:5, 2:5] = 1
    write_mask(tmp_path / "small.png", small)
    cases.append(([*seg, "--first-mask", tmp_path / "small.png", "--out", tmp_path / "o"], "is 10x10 but the first"))
    for args, fragment in cases:
        error, out = invoke(*args)
        assert isinstance(error, UserError) and fragment in str(error), (args, repr(error), out)


def test_a_port_in_use_is_reported_before_the_models_load(trained, tmp_path, no_model):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        error, out = invoke("app", "--weights", trained, "--port", port, "--root", tmp_path, "--out", tmp_path / "o")
    assert isinstance(error, UserError) and f"cannot listen on 127.0.0.1:{port}" in str(error), (repr(error), out)


def test_a_non_checkpoint_weights_file_does_not_suggest_weights_only_false(tmp_path, small_blackswan):
    frames, masks = small_blackswan
    text = tmp_path / "notes.pth"
    text.write_text("hello, these are not weights\n")
    pickled = tmp_path / "pickled.pth"
    with open(pickled, "wb") as f:
        pickle.dump({"model": Path("x")}, f)  # a pickle of an object: torch.load(weights_only=True) refuses it
    for weights in (text, pickled):
        r = clihelp.stcn("segment", "--weights", weights, "--frames", frames, "--first-mask", masks / "00000.png",
                         "--out", tmp_path / "o")  # fmt: skip
        assert clihelp.one_error(r).startswith(f"error: cannot read checkpoint {weights}:"), r.stderr
        assert "weights_only" not in r.stderr


def test_frame_0_is_the_given_mask_at_any_resolution(weights_file, small_blackswan, tmp_path):
    frames, masks = small_blackswan
    given = read_mask(masks / "00000.png")
    given_void = given.copy()
    given_void[:5, :5] = 255  # void: neither object nor background -> 0 in the output
    write_mask(tmp_path / "first.png", given_void)
    for resolution in ("64", "100"):  # processing sizes far from the input's 240 rows
        error, out = invoke("segment", "--weights", weights_file, "--frames", frames, "--first-mask",
                            tmp_path / "first.png", "--out", tmp_path / resolution, "--resolution", resolution,
                            "--precision", "fp32")  # fmt: skip
        assert error is None, out
        expected = np.where(given_void == 255, 0, given_void)
        assert np.array_equal(read_mask(tmp_path / resolution / "00000.png"), expected)


def test_a_one_frame_video_says_there_is_nothing_to_propagate(weights_file, small_blackswan, tmp_path, monkeypatch):
    monkeypatch.setenv("STCN_NATIVE_HALF", "0")  # a CPU without AMX / AVX512-BF16, as this one
    frames, masks = small_blackswan
    (tmp_path / "one").mkdir()
    shutil.copy(sorted(frames.glob("*.jpg"))[0], tmp_path / "one")
    error, out = invoke("segment", "--weights", weights_file, "--frames", tmp_path / "one", "--first-mask",
                        masks / "00000.png", "--out", tmp_path / "o", "--resolution", "64")  # fmt: skip
    assert error is None, out
    assert "has one frame: nothing to propagate" in out and len(list((tmp_path / "o").glob("*.png"))) == 1
    assert "FPS, precision fp32 (auto: this CPU has no AMX / AVX512-BF16: half precision would be emulated" in out
    assert np.array_equal(read_mask(tmp_path / "o" / "00000.png"), read_mask(masks / "00000.png"))


def test_interact_prints_progress_like_segment(weights_file, small_blackswan, tmp_path, monkeypatch):
    monkeypatch.setenv("STCN_PROGRESS_PERIOD", "0")  # a line per propagated frame (as in a log)
    frames, masks = small_blackswan
    strokes = np.zeros(read_mask(masks / "00000.png").shape, np.uint8)
    strokes[100:110, 150:250] = 1
    Image.fromarray(strokes).save(tmp_path / "s.png")
    error, out = invoke("interact", "--weights", weights_file, "--frames", frames, "--scribbles", tmp_path / "s.png",
                        "--frame", "0", "--out", tmp_path / "o", "--resolution", "64")  # fmt: skip
    assert error is None, out
    lines = [line for line in out.splitlines() if line.startswith(f"interact {frames.name}:")]
    assert lines and lines[-1].startswith(f"interact {frames.name}: 7/7 frames (100%)") and "done" in lines[-1], out
