"""The rehearsal: a miniature paper run. `dvc exp run -S profile=paper` in a fresh clone, as a user with GPUs and the
internet runs it, with only sizes shrunk (the `-S` overrides docs/paper-scale.md lists) and the
sources served on this machine: Google Drive ids by the stand-in Drive (tests/drive_server.py, reached by the real
gdown; the DAVIS ids over quota, so those files come from their HTTP URLs on a local server), BL30K's six segments
from S3 (`rclone serve s3`), every file verified by its checksum (`+datasets.X.files.N.checksum`, the weights'
`+weights.X.files.N.checksum`). The stand-in files are small archives in each dataset's official layout, of
the bundled real DAVIS frames; the official weights (`stcn.pth`, `stcn_s03.pth` in the release's key layout,
MiVOS's `s2m.pth` / `fusion_stcn.pth`) are seeded tensors.

Every stage of the paper DAG runs: the release's recipe through `torchrun --standalone --nproc-per-node=2` (gloo on
CPU), stage 0's mixture with its repeats, BL30K from its six segments, the YouTube-VOS subset file, the max-skip
curriculum, a run interrupted (Ctrl-C) after its first checkpoint and resumed (`dvc repro` of that stage, as
docs/paper-scale.md says); every benchmark x the four models
(the two trained runs and the two official weights); the interactive stage with the official S2M and fusion; the
report. Measured (AMD EPYC, 2 cores shared with other jobs, load average 8-10): 17 min 40 s wall, 646 s of CPU
(547 user + 99 system); not measured with the cores to itself (at that CPU time, at least 5.4 minutes).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from conftest import KEY_LIST, seeded_state_dict
from drive_server import HOSTS, stand_in_drive
from dvchelp import ROOT, UP_TO_DATE, clone, compose, dvc, env, paper_sections, ran
from localhttp import serving_folder
from registry_checks import expected_stages
from s3_server import rclone_s3
from test_interactive import listed_state_dict

from stcn.data.fetch.sources import (
    STATIC_SETS,
    _davis,
    _static,
    _youtube_split,
    bl30k_members,
    bundled_videos,
    write_tar,
)
from stcn.layouts import LAYOUTS

pytestmark = pytest.mark.dag


def page_rehearsal() -> list[str]:
    """The `-S` overrides of the rehearsal's command on docs/paper-scale.md ("The rehearsal"), profile=paper first."""
    section = paper_sections().split("## The rehearsal", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return re.findall(r"-S (\S+)", block)


FRAMES = 5  # frames per DAVIS video (J&F scores all but the first and last)
YOUTUBE_TRAIN = ("003234408d", "0043f083b5")  # the first two videos of stcn/data/youtube_train_subset.txt


def videos(names: tuple[str, ...], frames: int, rename: tuple[str, ...] = ()) -> list:
    """The bundled real DAVIS videos `names` (their first `frames` frames), renamed to `rename` if given."""
    found = {n: f for n, f in bundled_videos(with_multi_object=False)}
    return [(new, found[n][:frames]) for n, new in zip(names, rename or names, strict=True)]


def zip_folder(folder: Path, top: str) -> bytes:
    """A zip of `folder`'s files under the top folder `top` (the official archives' root)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, f"{top}/{p.relative_to(folder).as_posix()}" if top else p.relative_to(folder).as_posix())
    return buf.getvalue()


def stand_ins(work: Path) -> dict[str, bytes]:
    """Each file of the paper's registry, by name, as small archives in the official layouts."""
    train, val = videos(("dog-agility",), FRAMES), videos(("blackswan",), FRAMES)
    files: dict[str, bytes] = {}
    d17 = work / "davis17"
    lists = {f"{y}/{s}.txt": [v[0] for v in vs] for y in (2016, 2017) for s, vs in (("train", train), ("val", val))}
    _davis(d17, train + val, lists)
    files["DAVIS-2017-trainval-480p.zip"] = zip_folder(d17, "DAVIS")
    dev = work / "testdev"
    _davis(dev, val, {"2017/test-dev.txt": [v[0] for v in val]}, first_only=True)
    files["DAVIS-2017-test-dev-480p.zip"] = zip_folder(dev, "DAVIS")
    d16 = work / "davis16"  # DAVIS 2016: ImageSets/480p lists of frame / mask pairs
    _davis(d16, train + val, {})
    for split, vs in (("train", train), ("val", val)):
        lines = [f"/JPEGImages/480p/{n}/{s}.jpg /Annotations/480p/{n}/{s}.png\n" for n, fr in vs for s, _, _ in fr]
        (d16 / "ImageSets" / "480p").mkdir(parents=True, exist_ok=True)
        (d16 / "ImageSets" / "480p" / f"{split}.txt").write_text("".join(lines))
    files["DAVIS-data.zip"] = zip_folder(d16, "DAVIS")
    yt = work / "youtube"  # train: two videos of the subset file and one outside it; valid: every 5th frame
    _youtube_split(yt, "train", videos(("car-shadow", "libby", "dog-agility"), 11, (*YOUTUBE_TRAIN, "ffffffffff")),
                   valid=False)  # fmt: skip
    _youtube_split(yt, "valid", videos(("blackswan",), 11), valid=True)
    files["train.zip"] = zip_folder(yt / "train", "train")
    files["valid.zip"] = zip_folder(yt / "valid", "valid")
    files["valid_all_frames.zip"] = zip_folder(yt / "all_frames" / "valid_all_frames", "valid_all_frames")
    static = work / "static"  # every 10th frame: six images, one in each of static_data.zip's six folders
    _static(static, videos(("car-shadow", "libby"), 21))
    assert sorted(p.name for p in static.iterdir()) == sorted(STATIC_SETS)
    files["static_data.zip"] = zip_folder(static, "static")
    members = bl30k_members(videos(("car-shadow", "libby"), 4))  # 16 members over six segment tars
    for i, letter in enumerate("abcdef"):
        write_tar(work / f"BL30K_{letter}.tar", members[i * 3 : i * 3 + 3] if i < 5 else members[15:])
        files[f"BL30K_{letter}.tar"] = (work / f"BL30K_{letter}.tar").read_bytes()
    files["stcn.pth"] = files["stcn_s03.pth"] = saved(seeded_state_dict(json.loads(KEY_LIST.read_text())["entries"]))
    files["s2m.pth"], files["fusion_stcn.pth"] = (
        saved(listed_state_dict("s2m")),
        saved(listed_state_dict("fusion_stcn")),
    )
    return files


def imagenet_cache(torch_home: Path) -> Path:
    """A torch hub cache holding torchvision's ResNet-50 / ResNet-18 files (seeded, not ImageNet-trained): stage 0's
    `init: imagenet` loads them from there as it does on a machine that downloaded them once (download.pytorch.org
    is not reachable here, and torch hub checks a download's hash against its file name)."""
    import torchvision

    from stcn.train.init_weights import IMAGENET_URLS

    torch.manual_seed(0)
    folder = torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    for arch, url in IMAGENET_URLS.items():
        torch.save(getattr(torchvision.models, arch)().state_dict(), folder / Path(url).name)
    return torch_home


def saved(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server of a folder: (base URL, folder)."""
    root = tmp_path / "www"
    root.mkdir()
    with serving_folder(root) as base:
        yield base, root


def registry_entries(paper: dict) -> list[tuple[str, str, dict]]:
    """(block, name, entry) of each entry with files of the registry in params `paper`: datasets and weights."""
    return [(block, name, ds) for block in ("datasets", "weights") for name, ds in (paper.get(block) or {}).items()]


def source_overrides(paper: dict, files: dict[str, bytes], base: str) -> list[str]:
    """Each registry file's checksum added, HTTP URLs pointed at the local server, BL30K from the S3 mirror."""
    out = []
    for block, name, ds in registry_entries(paper):
        for i, f in enumerate(ds.get("files") or []):
            out.append(f"+{block}.{name}.files.{i}.checksum=sha256:{hashlib.sha256(files[f['name']]).hexdigest()}")
            if f.get("http"):
                out.append(f"{block}.{name}.files.{i}.http={base}/{f['name']}")
    return [*out, "datasets.bl30k.download.source=s3", "datasets.bl30k.download.url=s3://mirror/bl30k/"]


def test_the_paper_profile_rehearsed_on_cpu_with_local_sources(tmp_path, web):
    base, www = web
    paper = compose(tmp_path, "profile=paper")
    files = stand_ins(tmp_path / "stand-ins")
    repo = clone(ROOT, tmp_path / "repo")
    (repo / "youtube_subset.txt").write_text("".join(f"{n}\n" for n in YOUTUBE_TRAIN))
    (tmp_path / "s3" / "mirror" / "bl30k").mkdir(parents=True)
    davis_ids = set()
    for name, data in files.items():
        (www / name).write_bytes(data)
        if name.startswith("BL30K"):
            (tmp_path / "s3" / "mirror" / "bl30k" / name).write_bytes(data)
    with stand_in_drive(tmp_path / "drive") as drive, rclone_s3(tmp_path / "s3", dir_cache_time=None) as s3:
        for _, _, ds in registry_entries(paper):
            for f in ds.get("files") or []:
                drive.files[f["gdrive"]] = (f["name"], files[f["name"]])
                if f["name"].startswith("DAVIS"):
                    davis_ids.add(f["gdrive"])
        drive.over_quota = davis_ids  # Drive refuses them: their HTTP copies are used
        extra = {
            **drive.env(),
            **s3.env(),
            "OMP_NUM_THREADS": "1",
            "TORCH_HOME": str(imagenet_cache(tmp_path / "torch")),
        }
        overrides = page_rehearsal()
        assert overrides[0] == "profile=paper" and len(overrides) > 10, overrides
        command = [sys.executable, "-m", "dvc", "exp", "run"]
        for override in [*overrides, *source_overrides(paper, files, base)]:
            command += ["-S", override]
        # the first run is interrupted (Ctrl-C) once train_s0 has written a checkpoint
        first = subprocess.Popen(command, cwd=repo, env=env(repo, extra), stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
        checkpoint = repo / "models" / "s0" / "checkpoint.pth"
        while first.poll() is None and not checkpoint.exists():
            time.sleep(0.5)
        assert first.poll() is None, first.communicate()[0][-6000:]
        os.killpg(first.pid, signal.SIGINT)
        out1 = first.communicate(timeout=300)[0]
        assert checkpoint.exists(), out1[-4000:]
        # as the page says: the stopped stage continues under `dvc repro` (`dvc exp run` would first check out every
        # output, deleting the unfinished one's checkpoint), then the same `dvc exp run` runs the rest
        resumed = dvc(repo, "repro", "train_s0", extra=extra, timeout=900)
        assert ran(resumed) == {"train_s0"}, resumed[-4000:]
        assert "train: resuming models/s0/checkpoint.pth at iteration " in resumed, resumed[-4000:]
        out2 = dvc(repo, *command[3:], extra=extra, timeout=1800)
        assert UP_TO_DATE in dvc(repo, "status", extra=extra)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert ran(out1) | ran(out2) | {"train_s0"} == expected_stages(params), sorted(
        expected_stages(params) - ran(out1) - ran(out2)
    )
    assert "train_s0" not in ran(out2), out2[-4000:]  # the resumed run's result is kept
    # every Drive id asked; the DAVIS ones over quota, so their HTTP copies; every file checksummed
    asked = {r.split("id=")[1].split("&")[0] for r in drive.requests if "id=" in r}
    assert asked == set(drive.files) - {f["gdrive"] for f in paper["datasets"]["bl30k"]["files"]}
    for name in ("DAVIS-data.zip", "DAVIS-2017-trainval-480p.zip", "DAVIS-2017-test-dev-480p.zip"):
        assert f"{base}/{name}" in out1 + out2
    stcn_id = paper["weights"]["pretrained"]["files"][0]["gdrive"]
    assert any(r.startswith(f"{HOSTS[1]} /download?id={stcn_id}&") for r in drive.requests)  # the confirm page's form
    for block, name, ds in registry_entries(paper):  # each file's record: the sha256 of the file served
        for f in ds.get("files") or []:
            record = (repo / "models" / name / f"{f['name']}.sha256" if block == "weights" else
                      repo / "data" / name / ".downloads" / f"{f['name']}.extracted")  # fmt: skip
            if block == "weights" or not LAYOUTS[ds["layout"]].segment_tars:
                assert record.read_text().split()[0] == hashlib.sha256(files[f["name"]]).hexdigest(), record
    assert "> torchrun --standalone --nproc-per-node=2 pipelines/train.py s012" in out1 + out2
    index = json.loads((repo / "shards" / "youtube19" / "index.json").read_text())
    assert index["totals"]["samples"] == len(YOUTUBE_TRAIN), index["totals"]  # the subset's, not the third
    skips = (repo / "models" / "s012" / "dvclive" / "plots" / "metrics" / "train" / "max_skip.tsv").read_text()
    assert [int(float(line.split()[-1])) for line in skips.splitlines()[1:]] == [5, 10, 15, 20, 25, 25, 25, 25, 25, 5]
    bl30k = json.loads((repo / "shards" / "bl30k" / "index.json").read_text())
    assert bl30k["totals"]["samples"] == 2, bl30k["totals"]  # both videos, their members spread over six segments
    assert "s3://mirror/bl30k/BL30K_f.tar" in (repo / "data" / "bl30k" / "SOURCE.txt").read_text()
    assert set(params["evaluate"]["models"]) == {"s012", "s03", "stcn", "stcn_s03"}
    for bench in (name for name, ds in params["datasets"].items() if "evaluate" in ds):
        for model in params["evaluate"]["models"]:
            assert (repo / "results" / bench / model / "evaluation.json").is_file(), (bench, model)
    assert "s2m.pth" in (repo / "reports" / "davis17_interactive.md").read_text()
    assert "stcn_s03" in (repo / "reports" / "davis17.md").read_text()
