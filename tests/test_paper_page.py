"""The docs' "Paper scale" page, executed: its `-S` overrides keep the committed dvc.yaml, its commands list their
stages under the paper profile, BL30K in one and three parts, its many-machine flows (a Slurm array on a shared
workspace, separate clones sharing git and an S3 remote) and its multi-node `torchrun` + `dvc commit` on localhost.

Separate from tests/test_pipeline_e2e.py so that the two `dag` files run side by side (one process per file)."""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dvchelp import ROOT, UP_TO_DATE, clone, compose, dvc, env, paper_sections, ran, run, use_remote
from registry_checks import expected_stages
from s3_server import rclone_s3


def page_overrides() -> list[str]:
    """Every `-S KEY=VALUE` the paper-scale page gives (quoted ones unquoted)."""
    found = []
    for m in re.finditer(r"-S ('[^']*'|[^\s`']+)", paper_sections()):
        found.append(shlex.split(m.group(1))[0])
    return found


def test_every_override_of_the_paper_page_keeps_the_committed_dvc_yaml():
    """Each `-S` the paper-scale page shows composes with the paper profile (Hydra, as
    `dvc exp run -S` does) into params that the committed dvc.yaml serves: the same stages, nothing regenerated."""
    from registry_checks import compose_module

    compose = compose_module()
    overrides = page_overrides()
    assert {"profile=paper", "datasets.bl30k.shard.parts=8", "datasets.bl30k.download.source=s3",
            "shard.url=s3://BUCKET/shards"} <= set(overrides), overrides  # fmt: skip
    committed = (ROOT / "dvc.yaml").read_text()
    for override in overrides:
        p = compose.compose_params(["profile=paper", override], ROOT / "conf")
        assert compose.dvc_yaml(p) == committed, override
        key, _, value = override.partition("=")
        got = p
        for part in key.split("."):
            got = got[part]
        assert str(got) == yaml.safe_load(value) or got == yaml.safe_load(value), override


@pytest.mark.dag
def test_the_paper_page_commands_list_their_stages(tmp_path):
    """The "Paper scale" block's commands, run as written in a fresh clone with `--dry --force` added to each DVC
    run (no GPU, no internet here): each lists the stages of its target under the paper profile."""
    block = re.search(r"```bash\n(.*?)```", paper_sections(), re.S).group(1)
    commands = [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands[0] == "dvc exp run -S profile=paper evaluate_davis17@s012", commands
    repo = clone(ROOT, tmp_path / "repo")
    paper = compose(tmp_path, "profile=paper")
    for command in commands:
        words = shlex.split(command)
        if words[:2] == ["python", "pipelines/compose.py"]:
            run(repo, sys.executable, *words[1:])
            assert yaml.safe_load((repo / "params.yaml").read_text()) == paper
            continue
        assert words[0] == "dvc", command
        extra = [] if "--dry" in words else ["--dry", "--force"]
        out = dvc(repo, *words[1:], *extra, timeout=900)
        target = next((w for w in words if "@" in w), None)
        if target is None:  # the whole DAG
            assert ran(out) == expected_stages(paper), command
            continue
        assert target in ran(out), command
        if target == "evaluate_davis17@s012":
            assert {"download_static", "shard_bl30k_part@0", "train_s0", "train_s01", "train_s012"} <= ran(out)
            assert "> torchrun --standalone --nproc-per-node=2 pipelines/train.py s012" in out
        if target == "evaluate_davis17@stcn":  # the official weights: downloaded, nothing trained
            assert ran(out) == {"download_pretrained", "download_davis17", "evaluate_davis17@stcn"}, ran(out)


@pytest.mark.dag
def test_bl30k_in_one_part_and_in_three_with_the_committed_dvc_yaml(tmp_path):
    """`-S datasets.bl30k.shard.parts=1` (the paper's: segments streamed one at a time in the one part) and `=3`
    run the same dvc.yaml's index, part and merge stages on the bundled segments, to the same samples."""
    repo = clone(ROOT, tmp_path / "repo")
    one = dvc(repo, "exp", "run", "-S", "datasets.bl30k.shard.parts=1", "shard_bl30k", timeout=900)
    assert ran(one) == {"shard_bl30k_index", "shard_bl30k_part@0", "shard_bl30k"}
    assert sorted(p.name for p in (repo / "data" / "bl30k").iterdir()) == ["STATUS"]  # no segment kept
    assert not (repo / "data" / "bl30k.stream").exists()  # the streamed run's work folder is removed when done
    streamed = json.loads((repo / "shards" / "bl30k" / "index.json").read_text())
    three = dvc(repo, "exp", "run", "-S", "datasets.bl30k.shard.parts=3", "shard_bl30k", timeout=900)
    assert ran(three) == {"shard_bl30k_index", *(f"shard_bl30k_part@{i}" for i in range(3)), "shard_bl30k"}
    assert sorted(p.name for p in (repo / "shards" / "bl30k" / "parts").iterdir()) == ["0-of-3", "1-of-3", "2-of-3"]
    assert sorted(p.name for p in (repo / "data" / "bl30k").iterdir()) == ["BL30K_a.tar", "BL30K_b.tar"]
    parted = json.loads((repo / "shards" / "bl30k" / "index.json").read_text())
    assert parted["totals"]["samples"] == streamed["totals"]["samples"] > 0
    assert UP_TO_DATE in dvc(repo, "status", "shard_bl30k")
    assert run(repo, "git", "diff", "--stat", "dvc.yaml") == ""  # both from the committed dvc.yaml


def page_slurm_flow() -> tuple[str, str, str]:
    """From the paper-scale page: the index command (N machines: once), the Slurm array task's script, the merge
    command."""
    text = paper_sections()
    index = re.search(r"^(dvc repro shard_bl30k_index && dvc push)\s+# N machines", text, re.M).group(1)
    script = re.search(r"```bash\n#!/bin/bash\n(.*?)```", text, re.S).group(1)
    merge = re.search(r"--wrap '([^']+)'", text).group(1)
    return index, script, merge


@pytest.mark.dag
def test_the_paper_page_slurm_array_shards_bl30k_parts_at_once_and_merges(tmp_path):
    """The paper-scale page's many-machine BL30K flow as a Slurm array on a shared workspace: the index stage and a
    push, the array's task script run for both parts at the same time (SLURM_* set as Slurm does), then the merge
    job; the DVC remote is a local S3 server (rclone). Commands are the page's text."""
    index, script, merge = page_slurm_flow()
    assert "pipelines/shard.py bl30k --part" in script and merge.startswith("dvc commit")
    parts = int(re.search(r"--array=0-(\d+)", script).group(1)) + 1
    script = script.replace(f"/{parts}", "/2")  # the page's N = 4 machines; the sample's 2 parts here
    repo = clone(ROOT, tmp_path / "repo")
    (tmp_path / "s3" / "stcn").mkdir(parents=True)
    with rclone_s3(tmp_path / "s3", dir_cache_time=None) as server:
        use_remote(repo, server)
        shell = ["bash", "-euo", "pipefail", "-c"]
        first = run(repo, *shell, index, timeout=900)
        assert ran(first) == {"shard_bl30k_index"}
        tasks = [subprocess.Popen([*shell, script], cwd=repo, env=env(repo, {"SLURM_SUBMIT_DIR": str(repo),
                                  "SLURM_ARRAY_TASK_ID": str(i)}), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True) for i in range(2)]  # fmt: skip
        outputs = [task.communicate(timeout=900)[0] for task in tasks]
        for i, (task, out) in enumerate(zip(tasks, outputs, strict=True)):
            assert task.returncode == 0, out[-4000:]
            assert f"shard_bl30k: parts/{i}-of-2 done" in out, out[-2000:]
        last = run(repo, *shell, merge, timeout=900)
        assert ran(last) == {"shard_bl30k"}, last[-2000:]  # the parts were committed, not run again
    index_json = json.loads((repo / "shards" / "bl30k" / "index.json").read_text())
    assert index_json["splits"]["train"]["parts"] == 2 and index_json["totals"]["samples"] > 0
    assert UP_TO_DATE in dvc(repo, "status", "shard_bl30k")


def page_machines_flow() -> list[str]:
    """From the paper-scale page: the N-machine BL30K lines (index + its commit, a part machine, the merge + its
    commit), comments dropped."""
    block = re.search(r"```bash\n(dvc repro shard_bl30k .*?)```", paper_sections(), re.S).group(1)
    lines = [line.split("  #")[0].strip() for line in block.splitlines()]
    assert lines[0] == "dvc repro shard_bl30k" and len(lines) == 6, lines  # the one-machine line, then N machines
    return lines[1:]


@pytest.mark.dag
def test_the_paper_page_bl30k_parts_on_separate_clones_sharing_git_and_a_remote(tmp_path):
    """The paper-scale page's N-machine BL30K lines as written, each machine its own clone of one git origin, the
    DVC remote a local S3 server (rclone). N = 3 parts is set in params.yaml and pushed first (as a user picks N;
    no committed lock entry matches it); the index machine commits its lock entry, three part machines push their
    parts with the run-cache and commit nothing, the merge machine restores every part from the run-cache (runs
    only the merge) and commits; a new clone then pulls the same shards."""
    index, index_commit, part, merge, merge_commit = page_machines_flow()
    assert "shard_bl30k_part@3" in part and "--run-cache" in part and "--pull" in merge, (part, merge)
    origin, parts = tmp_path / "origin.git", 3
    run(tmp_path, "git", "clone", "-q", "--bare", str(ROOT), str(origin))
    setup = clone(origin, tmp_path / "setup")
    run(setup, sys.executable, "pipelines/compose.py", f"datasets.bl30k.shard.parts={parts}")
    run(setup, "git", "commit", "-q", "-m", f"BL30K in {parts} parts", "params.yaml")
    run(setup, "git", "push", "-q")
    (tmp_path / "s3" / "stcn").mkdir(parents=True)
    shell = ["bash", "-euo", "pipefail", "-c"]
    with rclone_s3(tmp_path / "s3", dir_cache_time=None) as server:

        def machine(name: str) -> Path:
            repo = clone(origin, tmp_path / name)
            use_remote(repo, server)
            return repo

        first = machine("index")
        assert ran(run(first, *shell, index, timeout=900)) == {"shard_bl30k_index"}
        run(first, *shell, index_commit)
        for i in range(parts):
            out = run(machine(f"part{i}"), *shell, part.replace("shard_bl30k_part@3", f"shard_bl30k_part@{i}"),
                      timeout=900)  # fmt: skip
            assert ran(out) == {f"shard_bl30k_part@{i}"}, out[-2000:]
        last = machine("merge")
        out = run(last, *shell, merge, timeout=900)
        assert ran(out) == {"shard_bl30k"}, out[-3000:]  # the parts came from the run-cache, not run again
        assert out.count("is cached - skipping run") == parts, out[-3000:]
        run(last, *shell, merge_commit)
        assert UP_TO_DATE in dvc(last, "status", "shard_bl30k")
        later = machine("later")
        dvc(later, "pull", "--with-deps", "shard_bl30k", timeout=900)
        assert UP_TO_DATE in dvc(later, "status", "shard_bl30k")
        for path in ("shards/bl30k/index.json", *(f"shards/bl30k/parts/{i}-of-{parts}" for i in range(parts))):
            assert sorted(_tree(later / path)) == sorted(_tree(last / path)), path


def _tree(path: Path) -> list[tuple[str, bytes]]:
    """(relative name, bytes) of a file or of every file under a folder."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [(str(p.relative_to(path)), p.read_bytes()) for p in files]


def page_multinode_flow() -> tuple[str, str]:
    """From the paper-scale page: the multi-node `torchrun` command (comments and line breaks dropped) and the
    `dvc commit` that records its result."""
    block = re.search(r"```bash\n(torchrun --nnodes=.*?)```", paper_sections(), re.S).group(1)
    lines = [line.split("#")[0].strip() for line in block.splitlines()]
    joined = " ".join(lines).replace("\\ ", " ")
    torchrun, commit = re.fullmatch(r"(torchrun .*?)\s+(dvc commit .*?)\s*", joined).groups()
    return " ".join(torchrun.split()), commit


@pytest.mark.dag
def test_the_paper_page_multinode_training_on_two_local_nodes(tmp_path):
    """The paper-scale page's multi-node lines as written, on localhost: two `torchrun` nodes of one process each
    (gloo on CPU) run train_s012 after `dvc repro train_s01`, then `dvc commit` records it: the stage is up to date."""
    torchrun, commit = page_multinode_flow()
    assert "--node-rank=R" in torchrun and "HOST0" in torchrun and commit == "dvc commit -f train_s012"
    repo = clone(ROOT, tmp_path / "repo")
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    inputs = [d for d in stages["train_s012"]["deps"] if d.startswith(("shards/", "models/"))]
    outs = {name: [next(iter(o)) if isinstance(o, dict) else o for o in st.get("outs", [])]
            for name, st in stages.items()}  # fmt: skip
    makers = [
        name for name, paths in outs.items() if any(d == o or d.startswith(f"{o}/") for d in inputs for o in paths)
    ]
    assert len(makers) == len(inputs), (inputs, makers)  # e.g. train_s01, shard_davis17, shard_youtube19
    dvc(repo, "repro", *makers, timeout=1800)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    line = re.sub(r"--nproc-per-node=\d+", "--nproc-per-node=1", torchrun)
    line = line.replace("HOST0", "127.0.0.1").replace("--master-port=29500", f"--master-port={port}")
    nodes = [subprocess.Popen(shlex.split(line.replace("--node-rank=R", f"--node-rank={r}")), cwd=repo, env=env(repo),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in (0, 1)]  # fmt: skip
    outputs = [node.communicate(timeout=900)[0] for node in nodes]
    for node, out in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, out[-4000:]
    assert (repo / "models" / "s012" / "weights.pth").is_file()
    run(repo, *shlex.split(commit.replace("dvc ", f"{sys.executable} -m dvc ", 1)))
    assert UP_TO_DATE in dvc(repo, "status", "train_s012")
