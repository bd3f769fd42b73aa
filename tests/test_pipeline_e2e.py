"""The DVC pipeline, through the real `dvc` CLI on a fresh clone of the committed HEAD.

Fast checks: params.yaml is conf/ composed with the sample profile, the paper profile and single
overrides compose, the DAG has the stages the registry declares, and each `evaluate.models` entry picks its chain.
End to end (sample profile, offline): `dvc repro` -> reports and a clean `dvc status`;
`dvc exp run -S` re-runs only the stages downstream of the changed param; `dvc push` / `dvc pull`
through a real S3 server (rclone); training from shards written to S3 (`shard.url` switch).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dvchelp import ROOT, UP_TO_DATE, clone, compose, dvc, ran, run, use_remote
from registry_checks import expected_stages
from s3_server import rclone_s3

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
BENCHMARKS = [n for n, e in PARAMS["datasets"].items() if "evaluate" in (e or {})]
MODELS = list(PARAMS["evaluate"]["models"])  # the sample profile's (s012 and s03, and any line added)
STAGES = expected_stages(PARAMS)  # every stage the registry declares (BL30K: no download stage)


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


# --- end to end (sample profile) -----------------------------------------------------------------
@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, str]:
    """A fresh clone of HEAD after a full offline `dvc repro`, its result committed."""
    repo = clone(ROOT, tmp_path_factory.mktemp("e2e") / "repo")
    output = dvc(repo, "repro", timeout=3000)  # the whole sample DAG beside the other dag files, on 2 cores
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
def test_exp_run_reruns_only_what_is_downstream_of_the_param(sample):
    repo, _ = sample
    assert UP_TO_DATE in dvc(repo, "status")
    output = dvc(repo, "exp", "run", "-S", "train_s012.iterations=6", timeout=900)
    assert ran(output) == {"train_s012", *(f"evaluate_{b}@s012" for b in BENCHMARKS), "report"}
    assert "Stage 'evaluate_davis17@s03' didn't change, skipping" in output
    assert yaml.safe_load((repo / "params.yaml").read_text())["train_s012"]["iterations"] == 6
    assert "train_s012.iterations" in dvc(repo, "exp", "show", "--md", "--only-changed")
    assert UP_TO_DATE in dvc(repo, "status")


@pytest.mark.dag
def test_s3_remote_push_pull_and_training_from_s3_shards(sample, tmp_path):
    repo, _ = sample
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "--allow-empty", "-m", "after the experiment")
    (tmp_path / "s3" / "stcn").mkdir(parents=True)  # the bucket of the committed remote s3://stcn/dvc-cache
    with rclone_s3(tmp_path / "s3", dir_cache_time=None) as server:  # "0s" stalls a dvc push
        use_remote(repo, server)
        dvc(repo, "push", timeout=900)
        other = clone(repo, tmp_path / "other")
        use_remote(other, server)
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
