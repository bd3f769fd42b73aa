"""The DVC pipeline, through the real `dvc` CLI on a fresh clone of the committed HEAD.

Fast checks: params.yaml is conf/ composed with the sample profile, the paper profile and single
overrides compose, the DAG has the stages the registry declares, and each `evaluate.models` entry picks its chain.
End to end (sample profile, offline): `dvc repro` -> reports and a clean `dvc status`;
`dvc exp run -S` re-runs only the stages downstream of the changed param; `dvc push` / `dvc pull`
through a real S3 server (rclone); training from shards written to S3 (`shard.url` switch).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from registry_checks import expected_stages
from s3_server import rclone_s3

ROOT = Path(__file__).resolve().parent.parent
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
BENCHMARKS = [n for n, e in PARAMS["datasets"].items() if "evaluate" in (e or {})]
MODELS = list(PARAMS["evaluate"]["models"])  # the sample profile's (s012 and s03, and any line added)
STAGES = expected_stages(PARAMS)  # every stage the registry declares (BL30K: no download stage)
UP_TO_DATE = "Data and pipelines are up to date."


def env(repo: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This interpreter first on PATH, the clone's own `stcn` package, no analytics, a git identity."""
    e = dict(os.environ)
    e.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}",
        PYTHONPATH=str(repo),
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="test",
        GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="test@example.com",
    )
    e.update(extra or {})
    return e


def run(repo: Path, *cmd: str, extra: dict[str, str] | None = None, timeout: float = 600) -> str:
    """Run a command in `repo`; its stdout + stderr, or a failure showing them."""
    p = subprocess.run(cmd, cwd=repo, env=env(repo, extra), capture_output=True, text=True, timeout=timeout)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"{' '.join(cmd)} exited with {p.returncode}:\n{out[-6000:]}"
    return out


def dvc(repo: Path, *args: str, **kw) -> str:
    return run(repo, sys.executable, "-m", "dvc", *args, **kw)


def ran(output: str) -> set[str]:
    """Stages `dvc repro` / `dvc exp run` ran (not skipped)."""
    return set(re.findall(r"Running stage '([^']+)'", output))


def clone(src: Path, dst: Path) -> Path:
    run(dst.parent, "git", "clone", "-q", str(src), str(dst))
    return dst


def compose(tmp_path: Path, *overrides: str) -> dict:
    """params.yaml as `python pipelines/compose.py OVERRIDES` writes it (in tmp_path)."""
    out = tmp_path / "params.yaml"
    r = subprocess.run([sys.executable, str(ROOT / "pipelines" / "compose.py"), *overrides, "--params", str(out)],
                       cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return yaml.safe_load(out.read_text())


def profile_models(profile: str) -> set[str]:
    """The model names a profile of conf/ lists under `evaluate.models`."""
    return set(yaml.safe_load((ROOT / "conf" / "profile" / f"{profile}.yaml").read_text())["evaluate"]["models"])


# --- fast ----------------------------------------------------------------------------------------
def test_params_yaml_is_conf_composed_with_the_sample_profile(tmp_path):
    compose(tmp_path)
    assert (tmp_path / "params.yaml").read_text() == (ROOT / "params.yaml").read_text(), (
        "params.yaml is out of date with conf/: run `python pipelines/compose.py`"
    )


def test_paper_profile_and_single_overrides(tmp_path):
    p = compose(tmp_path, "profile=paper", "train_s03.iterations=40")
    assert p["profile"] == "paper" and p["download"]["source"] is None  # gdrive where the registry has an id
    assert p["train"]["launcher"].startswith("torchrun") and p["train"]["device"] == "cuda" and p["train"]["amp"]
    assert p["train"]["crop"] == 384 and p["train_s0"]["init"] == "imagenet"
    assert p["train_s012"]["iterations"] is None and p["train"]["iterations"] is None  # None: the recipe's
    assert p["train_s03"]["iterations"] == 40
    assert p["evaluate"]["resolution"] is None and p["evaluate"]["precision"] == "fp32"
    assert p["evaluate"]["launcher"] == "python"
    assert p["download"]["source"] is None and p["shard"]["check"] == "header"
    assert p["datasets"]["youtube19"]["shard"]["subset"] == "stcn/data/youtube_train_subset.txt"
    sample = compose(tmp_path, "train_s03.iterations=40")
    assert sample["train_s03"]["iterations"] == 40 and sample["train_s012"]["iterations"] is None
    assert sample["train"]["iterations"] == 4  # every run's in the sample profile, unless its own block says
    # each profile's models are the lines of its `evaluate.models` (one line adds a model)
    assert set(p["evaluate"]["models"]) == profile_models("paper") >= {"s012", "s03", "stcn", "stcn_s03"}
    assert set(sample["evaluate"]["models"]) == profile_models("sample") >= {"s012", "s03"}


def test_dag_stages_and_each_model_picks_its_chain(tmp_path):
    repo = clone(ROOT, tmp_path / "repo")
    assert set(dvc(repo, "stage", "list", "--name-only").split()) == STAGES
    assert {"evaluate_davis17@s012", "evaluate_davis17@s03"} <= STAGES  # the sample evaluates both runs

    def upstream(target: str) -> set[str]:
        return set(re.findall(r'"([^"]+)" ->', dvc(repo, "dag", "--dot", target)))

    chain = upstream("evaluate_davis17@s03")
    assert {"train_s0", "train_s03", "shard_davis17", "shard_youtube19", "download_davis17"} <= chain
    assert not chain & {"train_s01", "train_s012", "download_pretrained", "download_davis16"}
    assert {"train_s0", "train_s01", "train_s012", "shard_bl30k"} <= upstream("evaluate_davis17@s012")
    assert {f"evaluate_{b}@{m}" for b in BENCHMARKS for m in MODELS} <= upstream("report")
    # one more model (the released weights) is one more line of evaluate.models: a stage per benchmark
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["evaluate"]["models"]["stcn"] = "models/pretrained/stcn.pth"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert upstream("evaluate_davis17@stcn") == {"download_pretrained", "download_davis17"}
    assert f"evaluate_{BENCHMARKS[-1]}@stcn" in dvc(repo, "stage", "list", "--name-only").split()
    # the sample's interactive evaluation uses the S2M it trains (stage train_s2m, on the static and DAVIS stand-ins)
    assert {"train_s2m", "download_static", "download_davis17"} <= upstream("evaluate_davis17_interactive")


def test_paper_dag_through_dvc_exp_run_dry(tmp_path):
    """`dvc exp run -S profile=paper --dry` on the committed dvc.yaml (DVC composes params.yaml from conf/, with
    conf/'s resolver from hydra_plugins/) lists the paper's stages and the release's commands; `-S` of BL30K's parts
    gives that many part stages. params.yaml is left as it was."""
    repo = clone(ROOT, tmp_path / "repo")
    # --force: without it DVC's run-cache lookup hashes the deps of every stage and fails on a fresh clone's
    # missing data/ (DVC 3.67: FileNotFoundError data/static under --dry)
    out = dvc(repo, "exp", "run", "-S", "profile=paper", "-S", "datasets.bl30k.shard.parts=3", "--dry", "--force")
    p = compose(tmp_path, "profile=paper", "datasets.bl30k.shard.parts=3")
    assert ran(out) == expected_stages(p)
    assert {"shard_bl30k_part@2", "evaluate_davis17@stcn", "evaluate_youtube19@stcn_s03", "download_pretrained"} <= (
        ran(out)
    )
    assert "> torchrun --standalone --nproc-per-node=2 pipelines/train.py s012" in out
    assert "> python pipelines/shard.py bl30k --part 2/3" in out and "--part 3/3" not in out
    assert run(repo, "git", "status", "--porcelain", "--untracked-files=no") == ""


def paper_sections() -> str:
    """The docs' "Paper scale" page (sharding on many machines, multi-node, S3, the commands without DVC)."""
    return (ROOT / "docs" / "paper-scale.md").read_text()


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


# --- end to end (sample profile) -----------------------------------------------------------------
@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, str]:
    """A fresh clone of HEAD after a full offline `dvc repro`, its result committed."""
    repo = clone(ROOT, tmp_path_factory.mktemp("e2e") / "repo")
    output = dvc(repo, "repro", timeout=1800)
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", "sample run")
    return repo, output


@pytest.mark.dag
def test_repro_runs_every_stage_offline_and_writes_reports(sample):
    repo, output = sample
    assert ran(output) == STAGES
    status = (repo / "models" / "pretrained" / "STATUS").read_text()
    assert status.startswith("skipped: needs internet") or (repo / "models" / "pretrained" / "stcn.pth").is_file()
    for name in [*(f"{b}.{e}" for b in BENCHMARKS for e in ("md", "csv")), "summary.csv", "metrics.json", "README.md"]:
        assert (repo / "reports" / name).is_file(), name
    for model in MODELS:  # a row and pictures per evaluated model
        assert (repo / "reports" / "davis17" / model / "blackswan.png").read_bytes()[:4] == b"\x89PNG"
        assert model in (repo / "reports" / "davis17.csv").read_text()
    assert (repo / "reports" / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "| first |" in (repo / "reports" / "s2m.md").read_text()  # stage train_s2m's held-out IoUs
    assert "J&F-Mean" in dvc(repo, "metrics", "show")
    assert "train_loss" in dvc(repo, "plots", "show", "--json")
    assert UP_TO_DATE in dvc(repo, "status")


def duplicated_in_cache(repo: Path, *folders: Path) -> tuple[int, int]:
    """(bytes of the files under `folders`, bytes of their DVC cache copies that are separate files from them)."""
    import hashlib

    size = copies = 0
    for folder in folders:
        for p in folder.rglob("*"):
            if not p.is_file() or p.is_symlink():
                continue
            size += p.stat().st_size
            digest = hashlib.md5(p.read_bytes()).hexdigest()
            cached = repo / ".dvc" / "cache" / "files" / "md5" / digest[:2] / digest[2:]
            if cached.is_file() and not cached.samefile(p):
                copies += cached.stat().st_size
    return size, copies


@pytest.mark.dag
def test_no_dataset_is_held_twice_on_local_disk(sample):
    repo, _ = sample
    data, copies = duplicated_in_cache(repo, repo / "data", repo / "shards")
    total = data + copies  # cache entries that are links to the workspace files take no space of their own
    assert total <= 1.3 * data, f"data/ + shards/ + .dvc/cache = {total / data:.2f}x data/ + shards/"
    parts = (PARAMS["datasets"]["bl30k"].get("shard") or {}).get("parts") or 1
    kept = sorted(p.name for p in (repo / "data" / "bl30k").iterdir())
    if parts > 1:  # the part stages read the segments fetched once by shard_bl30k_index (a persistent output)
        assert kept == ["BL30K_a.tar", "BL30K_b.tar"], kept
    else:  # one part: download, shard and delete one segment at a time (the index stage leaves a note)
        assert kept == ["STATUS"], kept


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
        _use_remote(repo, server)
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
            _use_remote(repo, server)
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


@pytest.mark.dag
def test_exp_run_reruns_only_what_is_downstream_of_the_param(sample):
    repo, _ = sample
    assert UP_TO_DATE in dvc(repo, "status")
    output = dvc(repo, "exp", "run", "-S", "train_s012.iterations=6", timeout=900)
    assert ran(output) == {"train_s012", *(f"evaluate_{b}@s012" for b in BENCHMARKS), "report"}
    assert "Stage 'evaluate_davis17@s03' didn't change, skipping" in output
    assert yaml.safe_load((repo / "params.yaml").read_text())["train_s012"]["iterations"] == 6
    assert "train_s012.iterations" in dvc(repo, "exp", "show", "--md", "--only-changed")
    assert UP_TO_DATE in dvc(repo, "status")


def _use_remote(repo: Path, server) -> None:
    for key, value in [("endpointurl", server.endpoint_url), ("access_key_id", server.key),
                       ("secret_access_key", server.secret), ("region", "us-east-1")]:  # fmt: skip
        dvc(repo, "remote", "modify", "--local", "storage", key, value)


@pytest.mark.dag
def test_s3_remote_push_pull_and_training_from_s3_shards(sample, tmp_path):
    repo, _ = sample
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "--allow-empty", "-m", "after the experiment")
    (tmp_path / "s3" / "stcn").mkdir(parents=True)  # the bucket of the committed remote s3://stcn/dvc-cache
    with rclone_s3(tmp_path / "s3", dir_cache_time=None) as server:  # "0s" stalls a dvc push
        _use_remote(repo, server)
        dvc(repo, "push", timeout=900)
        other = clone(repo, tmp_path / "other")
        _use_remote(other, server)
        dvc(other, "pull", timeout=900)
        assert UP_TO_DATE in dvc(other, "status")
        for path in ("models/s012/weights.pth", "shards/davis17/index.json", "results/davis17/s03/evaluation.json"):
            assert (other / path).read_bytes() == (repo / path).read_bytes(), path

        output = dvc(other, "exp", "run", "-S", "shard.url=s3://stcn/shards", "train_s0", extra=server.env())
        assert ran(output) == {"shard_static", "train_s0"}
        remote = tmp_path / "s3" / "stcn" / "shards" / "static"
        assert (remote / "index.json").is_file() and list(remote.glob("train-*.tar"))
        assert (other / "shards" / "static" / "index.json").read_bytes() == (remote / "index.json").read_bytes()


def _dead_spool(tmp: Path) -> Path:
    """A spool folder of a shard writer that is gone (as a killed run leaves it) in the folder TMPDIR names."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    spool = tmp / f"stcn-shard-{int(gone.stdout)}-killed"
    spool.mkdir(parents=True)
    (spool / "0").write_bytes(b"\0" * 4096)
    return spool


@pytest.mark.dag
def test_spools_of_killed_runs_through_a_run_and_a_cached_rerun(sample, tmp_path):
    """Issue 29 item 3, as docs/paper-scale.md says: a stage that runs removes dead writers' spools in TMPDIR; a
    cached re-run runs no command, so the spool stays until `stcn shard clean` (or any shard command)."""
    repo, _ = sample
    tmp = {"TMPDIR": str(tmp_path / "tmp")}
    spool = _dead_spool(tmp_path / "tmp")
    assert "shard_davis17" in ran(dvc(repo, "repro", "-f", "--single-item", "shard_davis17", extra=tmp))
    assert not spool.exists()
    spool = _dead_spool(tmp_path / "tmp")
    output = dvc(repo, "repro", "shard_davis17", extra=tmp)
    assert not ran(output) and spool.exists(), output  # nothing ran: DVC cannot clear it
    cleaned = run(repo, sys.executable, "-m", "stcn.cli", "shard", "clean", extra=tmp)
    assert f"removed the spool of a killed shard run: {spool}" in cleaned and not spool.exists()
    assert "no spool of a killed shard run" in run(repo, sys.executable, "-m", "stcn.cli", "shard", "clean", extra=tmp)
    assert UP_TO_DATE in dvc(repo, "status")


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
