"""Adversarial inputs (issue 12): hostile checkpoints, lying servers, user data, archives, bad masks, full disks."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import random
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from fullfs import read_only_dir, tiny_fs  # noqa: F401  (pytest fixtures)
from PIL import Image
from test_download import FRAME, Served, _davis_zip, http_server  # noqa: F401  (pytest fixture)

from stcn.data.fetch.archives import safe_extract
from stcn.data.fetch.download import download_dataset, fetch
from stcn.data.fetch.sources import DAVIS_MINI, bl30k_members, bundled_videos, write_tar
from stcn.data.images import PALETTE, read_mask
from stcn.data.shards.inputs import davis_pending
from stcn.data.shards.writer import write_shards
from stcn.data.stream.loader import make_loader
from stcn.errors import UserError
from stcn.eval.davis_score import score_davis
from stcn.inference.video import video_frames
from stcn.train.checkpointing import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from stcn.train.trainer import TrainConfig, train

REPO = Path(__file__).resolve().parent.parent


class _Exploit:
    """Unpickling this calls Path.touch on a marker: what a crafted checkpoint could do with os.system."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


# ---- item 1: a checkpoint never runs code --------------------------------------------------------------------


def test_crafted_checkpoint_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pth"
    torch.save({"network": {}, "optimizer": {}, "iteration": 1, "payload": _Exploit(marker)}, path)
    with pytest.raises(UserError, match="refusing to load .*checkpoint.pth"):
        load_checkpoint(path)
    assert not marker.exists()


def test_checkpoint_round_trips_optimizer_scheduler_and_rng_with_weights_only(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [2], 0.1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in the numpy state
    path = tmp_path / "checkpoint.pth"
    save = dict(model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, data_position={"segment": 0})
    save_checkpoint(path, iteration=1, config={"lr": 1e-3, "data": ["a"]}, **save)
    expected = (random.random(), np.random.standard_normal(), torch.rand(1).item())
    state = load_checkpoint(path)  # weights_only=True
    set_rng_state(state["rng"])
    assert (random.random(), np.random.standard_normal(), torch.rand(1).item()) == expected
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    assert scheduler.last_epoch == 1 and state["iteration"] == 1
    assert isinstance(rng_state()["numpy"]["keys"], torch.Tensor)


# ---- item 2: a download is complete only when its length or checksum says so, and archives open ----------------


def _bl30k_tar(path: Path) -> Path:
    return write_tar(path, bl30k_members(bundled_videos(with_multi_object=False))[:40])


def test_truncated_body_without_length_is_not_accepted_then_resumes(http_server: Served, tmp_path: Path):  # noqa: F811
    data = _bl30k_tar(http_server.root / "BL30K_a.tar").read_bytes()
    http_server.mode = "no-length"  # first response: no Content-Length, connection closed at half the file
    dest = tmp_path / "BL30K_a.tar"
    with pytest.raises(UserError, match="incomplete download of BL30K_a.tar.*re-run to resume"):
        fetch(f"{http_server.url}/BL30K_a.tar", dest, retries=0)
    assert not dest.exists() and not (tmp_path / "BL30K_a.tar.sha256").exists()
    assert (tmp_path / "BL30K_a.tar.part").stat().st_size == len(data) // 2
    fetch(f"{http_server.url}/BL30K_a.tar", dest)  # resumes: the 206 states the total
    assert dest.read_bytes() == data and http_server.requests[-1] == f"bytes={len(data) // 2}-"


def test_truncated_torch_weights_without_length_are_not_accepted(http_server: Served, tmp_path: Path):  # noqa: F811
    torch.save({"w": torch.arange(50_000.0)}, http_server.root / "stcn.pth")
    http_server.mode = "no-length"
    with pytest.raises(UserError, match="incomplete download of stcn.pth .*truncated or corrupt zip"):
        fetch(f"{http_server.url}/stcn.pth", tmp_path / "stcn.pth", retries=0)
    dest = fetch(f"{http_server.url}/stcn.pth", tmp_path / "stcn.pth")
    assert torch.equal(torch.load(dest, weights_only=True)["w"], torch.arange(50_000.0))


def test_cli_download_of_truncated_tar_is_an_error_not_ready(http_server: Served, tmp_path: Path):  # noqa: F811
    _bl30k_tar(http_server.root / "BL30K_a.tar")
    http_server.mode = "no-length"
    cmd = [sys.executable, "-m", "stcn.cli", "download", "bl30k", "--source", "http", "--url", http_server.url + "/"]
    res = subprocess.run([*cmd, "--to", str(tmp_path / "bl30k")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "incomplete download of BL30K_a.tar" in res.stderr and "ready" not in res.stdout + res.stderr
    assert "Traceback" not in res.stderr


def test_unknown_file_without_length_needs_a_checksum(http_server: Served, tmp_path: Path):  # noqa: F811
    data = FRAME.read_bytes()
    (http_server.root / "f.jpg").write_bytes(data)
    http_server.mode, http_server.dropped = "no-length", True  # whole body, but no length stated
    with pytest.raises(UserError, match="cannot tell whether f.jpg .* is complete"):
        fetch(f"{http_server.url}/f.jpg", tmp_path / "f.jpg", retries=0)
    sha = hashlib.sha256(data).hexdigest()
    assert fetch(f"{http_server.url}/f.jpg", tmp_path / "f.jpg", checksum=sha).read_bytes() == data


@pytest.mark.parametrize("mode", ["drop", "ignore-if-range"])
def test_resume_after_the_file_changed_is_not_spliced(http_server: Served, tmp_path: Path, mode: str):  # noqa: F811
    old, new = FRAME.read_bytes(), FRAME.with_name("00001.jpg").read_bytes()
    (http_server.root / "f.jpg").write_bytes(old)
    http_server.mode = "drop"
    with pytest.raises(UserError, match="re-run to resume"):
        fetch(f"{http_server.url}/f.jpg", tmp_path / "f.jpg", retries=0)
    (http_server.root / "f.jpg").write_bytes(new)  # the server's file changed between the attempts
    http_server.mode = mode  # honours If-Range (sends all of the new file) or ignores it (206 with a new ETag)
    assert fetch(f"{http_server.url}/f.jpg", tmp_path / "f.jpg").read_bytes() == new


def test_truncated_archive_recorded_by_an_older_run_is_downloaded_again(http_server: Served, tmp_path: Path):  # noqa: F811
    data = _bl30k_tar(http_server.root / "BL30K_a.tar").read_bytes()
    dest = tmp_path / "BL30K_a.tar"
    dest.write_bytes(data[: len(data) // 2])  # what older versions accepted and recorded
    dest.with_name("BL30K_a.tar.sha256").write_text(f"{hashlib.sha256(dest.read_bytes()).hexdigest()}  x\n")
    fetch(f"{http_server.url}/BL30K_a.tar", dest)
    assert dest.read_bytes() == data


# ---- item 3: `stcn download --to` never deletes what it did not create --------------------------------------------


def test_download_refuses_a_foreign_non_empty_target(http_server: Served, tmp_path: Path):  # noqa: F811
    _davis_zip(http_server.root / "DAVIS-2017-trainval-480p.zip")
    notes = tmp_path / "t" / "JPEGImages" / "480p" / "mine" / "notes.txt"
    notes.parent.mkdir(parents=True)
    notes.write_text("my notes")
    with pytest.raises(UserError, match="not empty and was not created by `stcn download davis17`"):
        download_dataset("davis17", source="http", url=http_server.url + "/", to=tmp_path / "t")
    assert notes.read_text() == "my notes" and http_server.requests == []
    cmd = [sys.executable, "-m", "stcn.cli", "download", "davis17", "--source", "bundled", "--to", str(tmp_path / "t")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "not empty" in res.stderr
    assert sorted(p.name for p in (tmp_path / "t").rglob("*")) == ["480p", "JPEGImages", "mine", "notes.txt"]


def test_reinstall_into_our_own_target_keeps_files_the_user_added(http_server: Served, tmp_path: Path):  # noqa: F811
    _davis_zip(http_server.root / "DAVIS-2017-trainval-480p.zip")
    target = download_dataset("davis17", source="http", url=http_server.url + "/", to=tmp_path / "t")
    notes = target / "JPEGImages" / "480p" / "blackswan" / "notes.txt"
    notes.write_text("my notes")
    (target / ".downloads" / "DAVIS-2017-trainval-480p.zip.extracted").unlink()  # force a re-extraction
    download_dataset("davis17", source="http", url=http_server.url + "/", to=target)
    assert notes.read_text() == "my notes"
    assert (target / "JPEGImages" / "480p" / "blackswan" / "00000.jpg").read_bytes() == FRAME.read_bytes()
    with pytest.raises(UserError, match="holds the davis17 download, not davis16"):
        download_dataset("davis16", source="bundled", to=target)


# ---- item 4: links in archives are refused (a chain of links escapes any textual check) ---------------------------


def _zip_symlinks(path: Path, links: list[tuple[str, str]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok/a.txt", b"fine")
        for name, target in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def test_zip_symlink_chain_cannot_escape(tmp_path: Path):
    archive = _zip_symlinks(tmp_path / "a.zip", [("a", "."), ("b", "a/..")])
    with pytest.raises(UserError, match="symlink .*'a'"):
        safe_extract(archive, tmp_path / "t")
    assert not any(p.is_symlink() for p in (tmp_path / "t").rglob("*"))


def test_tar_symlink_chain_cannot_escape(tmp_path: Path):
    with tarfile.open(tmp_path / "a.tar", "w") as tar:
        for name, link in [("a", "."), ("b", "a/..")]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, link
            tar.addfile(info)
    with pytest.raises(UserError, match="symlink .*'a'"):
        safe_extract(tmp_path / "a.tar", tmp_path / "t")
    assert not any(p.is_symlink() for p in (tmp_path / "t").rglob("*"))


def test_tar_members_go_through_the_data_filter(tmp_path: Path):
    with tarfile.open(tmp_path / "a.tar", "w") as tar:
        info = tarfile.TarInfo("d/run.sh")
        info.size, info.mode = 4, 0o6777  # setuid, setgid, world-writable
        tar.addfile(info, io.BytesIO(b"echo"))
    assert safe_extract(tmp_path / "a.tar", tmp_path / "t") == 1
    assert stat.S_IMODE((tmp_path / "t" / "d" / "run.sh").stat().st_mode) & 0o6002 == 0


# ---- item 5: extraction is capped by the archive's size and the free space; a full disk is one line ------------


def test_zip_bomb_is_refused_before_writing(tmp_path: Path):
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as zf, zf.open("zeros.bin", "w") as f:
        for _ in range(100):
            f.write(bytes(1 << 20))
    assert (tmp_path / "bomb.zip").stat().st_size < 1 << 20
    with pytest.raises(UserError, match=r"bomb.zip would expand to 104.9 MB, over 50x its size"):
        safe_extract(tmp_path / "bomb.zip", tmp_path / "t")
    assert list((tmp_path / "t").iterdir()) == []


def _small_davis_zip(path: Path) -> Path:
    """A DAVIS-layout zip of the first 12 real blackswan frames and masks (~1 MB)."""
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as zf:
        for sub in ("JPEGImages", "Annotations"):
            for p in sorted((DAVIS_MINI / sub / "480p" / "blackswan").iterdir())[:12]:
                zf.write(p, f"DAVIS/{sub}/480p/blackswan/{p.name}")
    return path


def test_full_disk_during_extraction_is_one_line_and_cleans_up(
    tiny_fs,  # noqa: F811
    tmp_path: Path,
    monkeypatch,
):
    archive = _small_davis_zip(tmp_path / "mirror" / "DAVIS-2017-trainval-480p.zip")
    small = tiny_fs(archive.stat().st_size * 3 // 2)  # room for the download, not for its extraction
    target = small / "d"
    with pytest.raises(UserError, match="not enough space to extract .*DAVIS-2017-trainval-480p.zip"):
        download_dataset("davis17", source="file", url=str(archive.parent), to=target)
    assert not (target / ".downloads" / "DAVIS-2017-trainval-480p.zip.extracting").exists()
    assert not (target / "JPEGImages").exists()
    # free space reported wrongly (another writer filled the disk meanwhile): the write itself fails
    plenty = shutil.disk_usage(tmp_path)._replace(free=1 << 40)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: plenty)
    with pytest.raises(UserError, match="cannot extract DAVIS/.* No space left on device") as e:
        download_dataset("davis17", source="file", url=str(archive.parent), to=target)
    assert "\n" not in str(e.value)
    assert not (target / ".downloads" / "DAVIS-2017-trainval-480p.zip.extracting").exists()


# ---- item 6: masks and videos that would silently give wrong results are errors naming the file ------------------


def _stcn(*args) -> subprocess.CompletedProcess:
    """The CLI without progress lines (a slow, loaded machine would print some before a one-line error)."""
    env = {"STCN_QUIET": "1", **os.environ}
    return subprocess.run([sys.executable, "-m", "stcn.cli", *map(str, args)], capture_output=True, text=True, env=env)


def _one_line_error(res: subprocess.CompletedProcess, *fragments: str) -> str:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _blackswan_labels() -> np.ndarray:
    return read_mask(DAVIS_MINI / "Annotations" / "480p" / "blackswan" / "00000.png")


def _save_16bit(labels: np.ndarray, path: Path) -> Path:
    Image.fromarray(labels.astype(np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I;16")
    return path


def test_16bit_mask_with_ids_above_255_is_an_error_naming_it(weights_file, small_blackswan, tmp_path):
    frames, masks = small_blackswan
    labels = read_mask(masks / "00000.png").astype(np.int32)
    labels[:, : labels.shape[1] // 2] *= 300  # ids 1 (right half of the swan) and 300 (left half)
    mask = _save_16bit(labels, tmp_path / "first16.png")
    res = _stcn("segment", "--weights", weights_file, "--frames", frames, "--first-mask", mask, "--out", tmp_path / "o")
    _one_line_error(res, "first16.png", "ids above 255")


def test_16bit_mask_with_small_ids_keeps_every_object(tmp_path):
    labels = _blackswan_labels().copy()
    labels[:, :400][labels[:, :400] == 1] = 2
    assert read_mask(_save_16bit(labels, tmp_path / "m.png")).tolist() == labels.tolist()
    binary = _save_16bit((labels > 0) * 65535, tmp_path / "b.png")  # a 0/65535 binary mask: one object
    assert np.array_equal(read_mask(binary), (labels > 0).astype(np.uint8))


def test_rgb_masks_with_several_colours(tmp_path):
    labels = _blackswan_labels().copy()
    labels[:, :400][labels[:, :400] == 1] = 2
    rgb = np.array(PALETTE, np.uint8).reshape(256, 3)[labels]
    Image.fromarray(rgb).save(tmp_path / "davis_colours.png")
    assert np.array_equal(read_mask(tmp_path / "davis_colours.png"), labels)  # DAVIS colours: their ids
    rgb[labels == 2] = (10, 200, 30)
    Image.fromarray(rgb).save(tmp_path / "other.png")
    with pytest.raises(UserError, match="colour mask .*other.png has 2 colours"):
        read_mask(tmp_path / "other.png")


def test_score_reads_16bit_predictions_with_their_ids(tmp_path):
    gt = DAVIS_MINI / "Annotations" / "480p" / "blackswan"
    pred = tmp_path / "pred" / "blackswan"
    pred.mkdir(parents=True)
    for p in sorted(gt.glob("*.png")):
        labels = read_mask(p).astype(np.int32)
        if p.stem == "00010":
            labels[:20, :20] = 2  # an object the ground truth does not have
        _save_16bit(labels, pred / p.name)
    with pytest.raises(UserError, match="prediction of 'blackswan' has object id 2"):
        score_davis(DAVIS_MINI, 2017, "val", tmp_path / "pred", progress=False)


def _faststart(path: Path) -> None:
    """Move an MP4's `moov` box before `mdat` (as web-optimised files have it), fixing the chunk offsets."""
    data = bytearray(path.read_bytes())
    boxes, i = [], 0
    while i < len(data):
        size = int.from_bytes(data[i : i + 4], "big")
        boxes.append((data[i + 4 : i + 8].decode(), bytes(data[i : i + size])))
        i += size
    moov = bytearray(dict(boxes)["moov"])

    def shift(start: int, end: int) -> None:
        j = start
        while j < end:
            size, kind = int.from_bytes(moov[j : j + 4], "big"), moov[j + 4 : j + 8]
            if kind in (b"trak", b"mdia", b"minf", b"stbl"):
                shift(j + 8, j + size)
            elif kind == b"stco":
                for k in range(int.from_bytes(moov[j + 12 : j + 16], "big")):
                    at = j + 16 + 4 * k
                    moov[at : at + 4] = (int.from_bytes(moov[at : at + 4], "big") + len(moov)).to_bytes(4, "big")
            j += size

    shift(8, len(moov))
    order = [b for k, b in boxes if k == "ftyp"] + [bytes(moov)] + [b for k, b in boxes if k not in ("ftyp", "moov")]
    path.write_bytes(b"".join(order))


def test_truncated_mp4_with_its_index_first_is_an_error(small_blackswan, tmp_path):
    frames, _ = small_blackswan
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (426, 240))
    for f in sorted(frames.glob("*.jpg")):
        writer.write(cv2.imread(str(f))[:, :426])
    writer.release()
    _faststart(video)
    assert len(list(video_frames(video))) == 8  # whole: every frame
    video.write_bytes(video.read_bytes()[: int(video.stat().st_size * 0.7)])
    with pytest.raises(UserError, match=r"truncated or damaged video: .*clip.mp4 \(decoded [0-7] of its 8 frames\)"):
        list(video_frames(video))


def test_frames_of_different_sizes_are_an_error(weights_file, small_blackswan, tmp_path):
    frames, masks = small_blackswan
    Image.open(frames / "00001.jpg").resize((300, 200)).save(frames / "00001.jpg")
    res = _stcn("segment", "--weights", weights_file, "--frames", frames, "--first-mask", masks / "00000.png",
                "--out", tmp_path / "o")  # fmt: skip
    _one_line_error(res, "frame 00001 is 300x200 but the first frame is 427x240")


# ---- item 7: outputs appear whole or not at all -----------------------------------------------------------------


def test_failed_segment_leaves_no_output_folder(weights_file, small_blackswan, tmp_path):
    frames, masks = small_blackswan
    (frames / "00005.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    res = _stcn("segment", "--weights", weights_file, "--frames", frames, "--first-mask", masks / "00000.png",
                "--out", tmp_path / "out", "--overlay", tmp_path / "preview" / "out.mp4")  # fmt: skip
    _one_line_error(res, "corrupt", "00005.jpg")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))  # no out/, no temporary folder
    preview = tmp_path / "preview"
    assert not preview.exists() or not any(preview.iterdir())  # no preview video, finished or partial


def test_failed_training_leaves_no_dvclive(tmp_path):
    def broken(index, segment):
        raise UserError("the data stream failed")

    cfg = TrainConfig(stage=0, data=["unused"], out=str(tmp_path / "run"), init="random", iterations=2, batch_size=1,
                      crop=64, num_workers=0, device="cpu", progress=False)  # fmt: skip
    with pytest.raises(UserError, match="data stream failed"):
        train(cfg, open_segment=broken)
    assert not (tmp_path / "run" / "dvclive").exists()


def test_score_csvs_are_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    root = tmp_path / "davis"
    for sub in ("JPEGImages", "Annotations"):
        for seq in ("blackswan", "car-shadow", "libby"):
            for p in sorted((DAVIS_MINI / sub / "480p" / seq).iterdir())[:4]:
                (root / sub / "480p" / seq).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(p, root / sub / "480p" / seq / p.name)
    shutil.copytree(DAVIS_MINI / "ImageSets", root / "ImageSets")
    shutil.copytree(root / "Annotations" / "480p", tmp_path / "pred")  # perfect predictions
    score_davis(root, 2017, "val", tmp_path / "pred", out_dir=tmp_path / "scores", progress=False)
    before = (tmp_path / "scores" / "global_results-val.csv").read_text()

    def full_disk(self, path, **kw):
        Path(path).write_text("J&F-Mean,J-Me")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    with pytest.raises(UserError, match="cannot write .*global_results-val.csv: No space left on device"):
        score_davis(root, 2017, "val", tmp_path / "pred", out_dir=tmp_path / "scores", progress=False)
    assert (tmp_path / "scores" / "global_results-val.csv").read_text() == before
    assert sorted(p.name for p in (tmp_path / "scores").iterdir()) == [
        "global_results-val.csv", "per-sequence_results-val.csv"]  # fmt: skip


# ---- items 8 and 10: training settings: None means the recipe, anything else must be a valid number --------------


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"stage": 3, "data": ["d"], "out": "o", **kw})


def test_none_means_recipe_and_non_positive_values_are_refused():
    assert _cfg().resolved(1)["iterations"] == 150_000 and _cfg(iterations=7).resolved(1)["iterations"] == 7
    for name, value in [("iterations", 0), ("batch_size", 0), ("lr", 0), ("lr", -1e-5), ("iterations", -1)]:
        with pytest.raises(UserError, match=f"training setting {name} must be .*, got {value!r}"):
            _cfg(**{name: value})


@pytest.mark.parametrize("value", ["abc", "-1", "0", "2.5"])
def test_pipeline_train_with_a_bad_iterations_param_is_one_line(tmp_path, value):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train_s03"]["iterations"] = yaml.safe_load(value)  # what `dvc exp run -S train_s03.iterations=...` writes
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    res = subprocess.run(
        [sys.executable, str(REPO / "pipelines" / "train.py"), "s03"], cwd=tmp_path, capture_output=True, text=True
    )
    _one_line_error(res, "training setting iterations must be an integer >= 1", f"got {yaml.safe_load(value)!r}")
    assert not (tmp_path / "models").exists()


# ---- item 8: corrupt payloads inside a shard are skipped with a line naming shard and key, and counted -----------


def _rewrite_shard(path: Path, change) -> None:
    """Rewrite a shard tar with `change(name, data)` applied to every member's bytes."""
    with tarfile.open(path) as tar:
        members = [(info, tar.extractfile(info).read()) for info in tar.getmembers()]
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            data = change(info.name, data)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_corrupt_payloads_in_shards_are_skipped_named_and_counted(tmp_path, capfd):
    videos = davis_pending(DAVIS_MINI, 2017, "val")  # blackswan, car-shadow, libby: one shard each
    write_shards(videos, str(tmp_path / "s"), dataset="davis", split="train", source="davis", shard_size_bytes=1)
    shards = sorted((tmp_path / "s").glob("*.tar"))
    assert len(shards) == 3
    _rewrite_shard(shards[0], lambda name, data: b"\xff\xd8 not a jpeg" if name.endswith(".jpg") else data)
    _rewrite_shard(shards[1], lambda name, data: b"{not json" if name.endswith(".json") else data)
    loader = make_loader(tmp_path / "s", "video", batch_size=1, num_workers=0, mode="once", crop=64, shuffle_buffer=0)
    batches = list(loader)
    assert [i["name"] for b in batches for i in b["info"]] == ["libby"]
    assert batches[0]["info"][0]["skipped"] in (0, 1, 2)  # corrupt samples skipped by this worker before it
    warnings = [ln for ln in capfd.readouterr().err.splitlines() if ln.startswith("warning: skipped corrupt")]
    assert len(warnings) == 2
    warnings.sort(key=lambda line: "car-shadow" in line)  # the shard order is shuffled
    assert "'blackswan'" in warnings[0] and shards[0].name in warnings[0]
    assert "'car-shadow'" in warnings[1] and shards[1].name in warnings[1]


def _batches(index, segment):
    """Seeded static-stage batches; batch i says its worker (i % 2) has skipped i corrupt samples so far."""
    gen = torch.Generator().manual_seed(index)
    for i in range(segment.batches):
        rgb = torch.rand(1, 3, 3, 64, 64, generator=gen)
        gt = torch.zeros(1, 3, 1, 64, 64)
        gt[..., 16:48, 16:48] = 1
        info = [{"rank": 0, "worker": i % 2, "skipped": i}]
        yield {"rgb": rgb, "gt": gt, "cls_gt": gt[:, :, 0].long(), "info": info}


def _train_small(out: Path) -> None:
    cfg = TrainConfig(stage=0, data=["unused"], out=str(out), init="random", iterations=2, batch_size=1, crop=64,
                      num_workers=0, device="cpu", progress=False, seed=3)  # fmt: skip
    train(cfg, open_segment=_batches)


def test_training_metrics_count_skipped_samples(tmp_path):
    _train_small(tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "dvclive" / "metrics.json").read_text())
    assert metrics["train"]["skipped_samples"] == 1


# ---- item 8: unwritable, read-only or full outputs are one line ---------------------------------------------------


def test_segment_out_is_a_file_or_read_only_is_one_line(weights_file, small_blackswan, read_only_dir, tmp_path):  # noqa: F811
    frames, masks = small_blackswan
    args = ["segment", "--weights", weights_file, "--frames", frames, "--first-mask", masks / "00000.png", "--out"]
    (tmp_path / "taken").write_text("x")
    _one_line_error(_stcn(*args, tmp_path / "taken"), "taken exists and is a file")
    _one_line_error(_stcn(*args, read_only_dir / "out"), "cannot write", "read-only/out")


def test_download_to_read_only_is_one_line(read_only_dir):  # noqa: F811
    res = _stcn("download", "davis17", "--source", "bundled", "--to", read_only_dir / "d")
    _one_line_error(res, "cannot write into --to", "read-only/d")


def test_shard_on_a_full_disk_is_one_line(tiny_fs, tmp_path):  # noqa: F811
    small = tiny_fs(300_000)
    if not tiny_fs.mounted:
        pytest.skip("needs a real small file system (root may mount a tmpfs)")
    res = _stcn("shard", "davis", "--root", DAVIS_MINI, "--split", "val", "--out", small / "shards")
    _one_line_error(res, "cannot write shards to", "No space left on device")


def test_zip_with_a_file_and_a_folder_of_the_same_name_is_one_line(tmp_path):
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as zf:
        zf.writestr("data", b"a file")
        zf.writestr("data/x.txt", b"and a folder")
    with pytest.raises(UserError, match="cannot extract data/x.txt from .*a.zip"):
        safe_extract(tmp_path / "a.zip", tmp_path / "t")


# ---- item 9: an S3 endpoint that accepts and never answers is one line naming it (its deadlines are enforced: a
# missing one hangs, and the hang guard below fails the test; no wall-clock limit a busy machine can miss) ----------


HANG_GUARD_S = 900  # far past every deadline of stcn/data/storage.py: only a missing deadline reaches it


@pytest.fixture
def black_hole():
    """A TCP listener on 127.0.0.1 that accepts connections and never sends a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.parametrize("data", ["s3://bucket/shards", "s3://bucket/shards/train-000000.tar"])
def test_training_against_a_silent_s3_endpoint_is_one_line_naming_it(black_hole, tmp_path, data):
    env = {**os.environ, "AWS_ENDPOINT_URL": black_hole, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
           "AWS_DEFAULT_REGION": "us-east-1", "OMP_NUM_THREADS": "1"}  # fmt: skip
    cmd = [sys.executable, "-m", "stcn.cli", "train", "--stage", "2", "--data", data, "--out", str(tmp_path / "run"),
           "--init", "random", "--iterations", "2", "--device", "cpu", "--num-workers", "0"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=HANG_GUARD_S)
    _one_line_error(res, black_hole.removeprefix("http://"))


# ---- item 11: cached training outputs reproduce exactly; files respect the umask ---------------------------------


def test_training_outputs_reproduce_and_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        _train_small(tmp_path / "a")
        _train_small(tmp_path / "b")
    finally:
        os.umask(old)

    def files(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    a, b = files(tmp_path / "a" / "dvclive"), files(tmp_path / "b" / "dvclive")
    assert "metrics.json" in a and a.keys() == b.keys()
    assert {k: v for k, v in a.items() if k != "params.yaml"} == {k: v for k, v in b.items() if k != "params.yaml"}
    assert not any("per_s" in name for name in a)  # no wall-clock throughput among the recorded metrics
    for name in ("weights.pth", "checkpoint.pth"):
        assert stat.S_IMODE((tmp_path / "a" / name).stat().st_mode) == 0o644


def test_files_downloaded_by_an_earlier_version_count_as_ours(http_server: Served, tmp_path: Path):  # noqa: F811
    target = tmp_path / "w"
    target.mkdir()
    (target / "stcn.pth").write_bytes(b"old weights")  # kept files with their records, no marker yet
    (target / "stcn.pth.sha256").write_text(f"{hashlib.sha256(b'old weights').hexdigest()}  stcn.pth\n")
    for name in ("stcn.pth", "stcn_s03.pth", "s2m.pth", "fusion_stcn.pth"):
        torch.save({"name": name}, http_server.root / name)
    download_dataset("pretrained", source="http", url=http_server.url + "/", to=target)
    assert (target / "stcn_s03.pth").is_file() and (target / ".stcn-download").read_text() == "pretrained\n"


@pytest.mark.parametrize("reader", ["stream", "ranges"])
def test_shard_read_from_a_silent_s3_endpoint_is_one_line_naming_it(black_hole, reader):
    """Past the start-up checks (an endpoint that stops answering mid-training): opening a shard is bounded too."""
    from stcn.data.stream.loader import S3_READ_VAR, open_shard

    env = {"AWS_ENDPOINT_URL": black_hole, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
           "AWS_DEFAULT_REGION": "us-east-1", S3_READ_VAR: reader}  # fmt: skip
    pool = ThreadPoolExecutor(1)
    try:
        with pytest.raises(UserError, match=f"cannot read shard s3://bucket/train-000000.tar at {black_hole}") as e:
            pool.submit(lambda: open_shard("s3://bucket/train-000000.tar", env).read(1)).result(HANG_GUARD_S)
    finally:
        pool.shutdown(wait=False)  # a hung read (no deadline) has failed the test already: do not wait for it
    assert "\n" not in str(e.value)
