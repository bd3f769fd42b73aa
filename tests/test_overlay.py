"""Overlay previews are H.264 (browsers play it) where PyAV's libx264 is installed, else mp4v with one warning."""

from __future__ import annotations

import cv2
import numpy as np

from stcn.inference import overlay
from stcn.inference.overlay import OverlayWriter


def fourcc(path) -> str:
    code = int(cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FOURCC)) & 0xFFFFFFFF
    return code.to_bytes(4, "little").decode("latin-1")


def sample_entry(path) -> bytes:
    """The codec of the MP4's first `stsd` sample entry (the 4 bytes after its size), read from the boxes."""
    data = path.read_bytes()
    at = data.index(b"stsd")
    return data[at + 16 : at + 20]  # stsd: version/flags 4, entry count 4, then entry size 4 and its type


def frames(n=6, h=47, w=63):
    """Frames of odd size with a moving square labelled 1."""
    rng = np.random.default_rng(0)
    for i in range(n):
        rgb = rng.integers(0, 255, (h, w, 3), np.uint8)
        labels = np.zeros((h, w), np.uint8)
        labels[10 : 20 + i, 5 + i : 30] = 1
        yield rgb, labels


def write(path) -> list[np.ndarray]:
    writer = OverlayWriter(path, fps=10)
    for rgb, labels in frames():
        writer.add(rgb, labels)
    writer.close()
    return list(frames())


def test_overlay_is_h264_and_decodes(tmp_path, capsys):
    assert overlay.h264_available(), "PyAV with libx264 is a dependency"
    path = tmp_path / "preview.mp4"
    written = write(path)
    assert fourcc(path) in ("avc1", "h264") and sample_entry(path) == b"avc1"  # OpenCV names the codec
    assert not list(tmp_path.glob(".*partial*"))
    cap = cv2.VideoCapture(str(path))
    decoded = []
    while (ok := cap.read())[0]:
        decoded.append(ok[1])
    assert len(decoded) == len(written)
    first = cv2.cvtColor(decoded[0], cv2.COLOR_BGR2RGB)[:47, :63].astype(float)
    labels = written[0][1]
    assert tuple(overlay.COLOURS[1]) == (128, 0, 0)
    # lossy, but the overlaid object is there: blending in (128, 0, 0) halves its green channel
    assert first[labels == 0, 1].mean() - first[labels > 0, 1].mean() > 40
    assert capsys.readouterr().err == ""


def test_overlay_falls_back_to_mp4v_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(overlay, "h264_available", lambda: False)
    monkeypatch.setattr(overlay, "_warned", False)
    path = tmp_path / "preview.mp4"
    write(path)
    write(tmp_path / "second.mp4")  # batch mode: one preview per video, one warning
    assert fourcc(path) in ("mp4v", "FMP4") and sample_entry(path) == b"mp4v"
    assert capsys.readouterr().err.splitlines() == [overlay.FALLBACK_WARNING]
