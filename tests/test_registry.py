"""The registry in conf/ drives dvc.yaml and params.yaml; a new dataset is declared in params only."""

from __future__ import annotations

import hashlib
import json
import modulefinder
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from clihelp import one_error
from conftest import DAVIS, shrink_sequence
from registry_checks import (
    check_registry,
    compose_module,
    expected_stages,
    project_imports,
    stage_names,
    uncovered,
)

REPO = Path(__file__).resolve().parent.parent


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


def test_committed_dvc_yaml_and_params_are_current(tmp_path):
    """`python pipelines/compose.py` (sample profile) gives exactly the committed dvc.yaml, params.yaml and
    docs/dag.md (the stages page)."""
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    shutil.copytree(REPO / "pipelines", tmp_path / "pipelines")
    shutil.copytree(REPO / "hydra_plugins", tmp_path / "hydra_plugins")  # conf/'s resolvers
    (tmp_path / "stcn").symlink_to(REPO / "stcn")  # the library whose import graph gives the code dependencies
    run(tmp_path, "pipelines/compose.py")
    assert (tmp_path / "dvc.yaml").read_text() == (REPO / "dvc.yaml").read_text(), "run python pipelines/compose.py"
    assert (tmp_path / "params.yaml").read_text() == (REPO / "params.yaml").read_text()
    assert (tmp_path / "docs" / "dag.md").read_text() == (REPO / "docs" / "dag.md").read_text()
    run(REPO, "pipelines/compose.py", "--check")


# a profile a user adds: other sources, sizes, devices, parts and models; values only, so the same dvc.yaml
USER_PROFILE = """# @package _global_
profile: mine
download: {source: http, url: "http://mirror.example/stcn"}
datasets: {bl30k: {shard: {parts: 5}, download: {source: s3, url: "s3://bucket/bl30k"}}}
train: {launcher: torchrun --standalone --nproc-per-node=4, device: cuda, amp: true, crop: 320, num_workers: 4,
        log_every: 10, iterations: 100, batch_size: 8}
evaluate: {models: {stcn: models/pretrained/stcn.pth, s03: models/s03/weights.pth}, device: cuda, resolution: 360}
report: {notes: [mine]}
train_s2m: {device: cuda, num_workers: 2, notes: [mine]}
evaluate_davis17_interactive: {weights: models/pretrained/stcn.pth, s2m: models/pretrained/s2m.pth, notes: [mine]}
"""
# -S overrides of the knobs that look structural: BL30K's parts (1 is a list of one) and the evaluated models
OVERRIDES = [[], ["datasets.bl30k.shard.parts=1"], ["datasets.bl30k.shard.parts=8"],
             ["profile=paper", "datasets.bl30k.shard.parts=3"], ["+evaluate.models.extra=models/s0/weights.pth"],
             ["profile=paper", "~evaluate.models.stcn_s03"]]  # fmt: skip


def every_profile(conf: Path) -> list[list[str]]:
    """`profile=<name>` of every profile in `conf`/profile, and each with the structure-like overrides."""
    names = sorted(f.stem for f in (conf / "profile").glob("*.yaml"))
    return [[f"profile={n}"] for n in names] + OVERRIDES


def test_one_dvc_yaml_for_every_profile_and_override(tmp_path):
    """dvc.yaml is byte-identical under sample, paper, a profile a user adds and -S overrides of parts and
    models (the registry decides the stages, profiles only values); the stages DVC expands from it are those
    the registry declares for each composition (one BL30K part stage per part, one evaluation per model)."""
    compose = compose_module()
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    (conf / "profile" / "mine.yaml").write_text(USER_PROFILE)
    committed = (REPO / "dvc.yaml").read_text()
    seen = set()
    for overrides in every_profile(conf):
        p = compose.compose_params(overrides, conf)
        assert compose.dvc_yaml(p) == committed, f"{overrides} gives another dvc.yaml"
        names = stage_names(yaml.safe_load(committed)["stages"], p)
        assert names == expected_stages(p), overrides
        seen.add(frozenset(names))
        parts = p["datasets"]["bl30k"]["shard"]["parts"]
        assert p["datasets"]["bl30k"]["shard"]["part_list"] == list(range(parts))
        assert {f"shard_bl30k_part@{i}" for i in range(parts)} <= names and f"shard_bl30k_part@{parts}" not in names
        assert {f"evaluate_davis17@{m}" for m in p["evaluate"]["models"]} <= names
    assert {"profile=mine"} <= {o[0] for o in every_profile(conf) if o} and len(seen) >= 5  # the DAGs differ


def test_a_profile_that_would_change_the_dag_is_a_one_line_error(tmp_path):
    """A profile declaring a benchmark (structure) is refused by compose, naming the stages it would add."""
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    sample = (conf / "profile" / "sample.yaml").read_text()
    line = "datasets: {bl30k: {shard: {parts: 2}}}"
    assert sample.count(line) == 1
    (conf / "profile" / "wrong.yaml").write_text(  # the sample, with a benchmark declared by the profile
        sample.replace(line, "datasets: {bl30k: {shard: {parts: 2}}, static: {evaluate: {split: train}}}")
    )
    args = ["profile=wrong", "--conf", str(conf), "--params", str(tmp_path / "params.yaml")]
    r = subprocess.run([sys.executable, "pipelines/compose.py", *args], cwd=REPO, capture_output=True, text=True)
    one_error(r, "would change dvc.yaml", "evaluate_static", "report", alone=True)
    bad = subprocess.run([sys.executable, "pipelines/compose.py", "datasets.bl30k.shard.parts=0", "--params",
                          str(tmp_path / "p.yaml")], cwd=REPO, capture_output=True, text=True)  # fmt: skip
    one_error(bad, "datasets.bl30k.shard.parts must be a whole number of parts 1..4096, got 0", alone=True)


def test_stage_names_and_one_name_per_dataset():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert {"download_davis17", "shard_davis17", "shard_youtube19", "evaluate_davis17", "evaluate_youtube19",
            "train_s0", "train_s01", "train_s012", "train_s03", "report"} <= set(stages)  # fmt: skip
    assert stages["shard_davis17"]["outs"] == ["shards/davis17"]
    assert "data/davis17" in stages["shard_davis17"]["deps"]
    assert {"shards/davis17", "shards/youtube19", "models/s0/weights.pth"} <= set(stages["train_s03"]["deps"])
    assert "results/davis17" in stages["report"]["deps"]
    assert stages["evaluate_davis17"]["foreach"] == "${evaluate.models}"  # evaluate_davis17@<model>, one per model
    assert {"data/davis17", "${item}"} <= set(stages["evaluate_davis17"]["do"]["deps"])
    assert stages["evaluate_davis17"]["do"]["outs"] == ["results/davis17/${key}"]


def test_registry_checks_pass_on_conf():
    p = check_registry(REPO / "conf")
    assert {"evaluate_davis17@s012", "evaluate_davis17@s03"} <= expected_stages(p)  # the sample evaluates both


def test_a_dataset_a_run_and_a_model_added_to_a_copy_of_conf_pass_the_registry_checks(tmp_path):
    """Each addition is an edit of one file of conf/: the dataset and the run in config.yaml, the evaluated model
    one line of the sample profile. The new run is not listed in the profile and still gets its short length."""
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    config = conf / "config.yaml"
    config.write_text(
        config.read_text().replace(
            "datasets:\n",
            "datasets:\n  clips: {layout: davis, year: 2017, splits: [val], evaluate: {split: val},\n"
            "    report: {title: My clips, paper: {J&F: 50.0}}, files: [{name: clips.zip, http: 'http://x/c.zip'}]}\n",
        )
        + "train_s03b: {stage: 3, data: [davis17], after: s0}\n"
    )
    sample = conf / "profile" / "sample.yaml"
    text = sample.read_text()
    assert text.count("    s03: models/s03/weights.pth\n") == 1
    sample.write_text(text.replace("    s03: models/s03/weights.pth\n",
                                   "    s03: models/s03/weights.pth\n    s03b: models/s03b/weights.pth\n"))  # fmt: skip
    p = check_registry(conf)
    assert p["train_s03b"].get("iterations") is None and p["train"]["iterations"] == 4  # the sample's, for every run
    stages = compose_module().stages(p)
    names = expected_stages(p)
    assert {
        "download_clips",
        "train_s03b",
        "evaluate_clips@s03b",
        "evaluate_clips@s012",
        "evaluate_davis17@s03b",
    } <= names
    assert "models/s03b/weights.pth" not in stages["train_s03b"]["deps"] and "results/clips" in stages["report"]["deps"]


def test_stage_code_deps_cover_what_its_script_imports():
    """The check of the registry checks: a dependency list missing a module the script imports fails it."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    deps = stages["train_s03"]["deps"]
    assert "stcn/data/images.py" in deps  # imported by stcn.data.stream.samples, which training reads through
    assert not uncovered(REPO / "pipelines" / "train.py", deps)
    assert uncovered(REPO / "pipelines" / "train.py", [d for d in deps if d != "stcn/data/images.py"]) == {
        "stcn/data/images.py"
    }
    assert uncovered(REPO / "pipelines" / "train.py", [*deps, "stcn"]) == set()  # a folder covers its files
    # the import walker (ast, compose.py and the checks) finds every project file the stdlib modulefinder finds
    # (bytecode) for every entry script, and beyond them only what the CLI imports by name (its AREAS)
    from stcn.cli.app import AREAS

    compose = compose_module()
    for script in sorted((REPO / "pipelines").glob("*.py")):
        if script.name in ("compose.py", "stage.py", "import_walk.py"):
            continue
        entry = f"pipelines/{script.name}"
        found = set(compose.code_deps(entry)) - set(compose.DATA_DEPS.get(entry, []))  # its imports only
        assert found == project_imports(script), script.name
        static = modulefinder_imports(script)
        assert static <= found, (script.name, sorted(static - found))
        by_name = {f for a in AREAS for f in project_imports(REPO / (a.replace(".", "/") + ".py"))}
        assert found - static <= by_name, (script.name, sorted(found - static - by_name))
        assert ("stcn/cli/app.py" in found) == (set(by_name) <= found), script.name  # the CLI app: all its areas


def modulefinder_imports(script: Path) -> set[str]:
    """The project files `script` runs as the stdlib `modulefinder` finds them (bytecode, imports inside functions
    included, imports by a computed name not), as paths relative to the repository: the walker's cross-check."""
    finder = modulefinder.ModuleFinder(path=[str(script.parent), str(REPO)])  # third-party modules: not followed
    finder.run_script(str(script))
    files = {Path(m.__file__).resolve() for m in finder.modules.values() if m.__file__}
    return {str(f.relative_to(REPO)) for f in files if f.is_relative_to(REPO)}


def own_dataset(dst: Path) -> Path:
    """Your own videos in DAVIS layout without `480p` and without ImageSets (real frames, small)."""
    for seq in ("blackswan", "car-shadow"):
        frames, masks = shrink_sequence(
            DAVIS / "JPEGImages/480p" / seq, DAVIS / "Annotations/480p" / seq, dst / "tmp" / seq, 6, 0.25
        )
        shutil.move(frames, dst / "JPEGImages" / seq)
        shutil.move(masks, dst / "Annotations" / seq)
    shutil.rmtree(dst / "tmp")
    return dst


@pytest.mark.usefixtures("one_torch_thread")
def test_a_new_dataset_declared_in_params_is_sharded_trained_on_evaluated_and_reported(tmp_path, weights_file):
    project = tmp_path / "project"
    shutil.copytree(REPO / "conf", project / "conf")
    shutil.copytree(REPO / "pipelines", project / "pipelines")
    shutil.copytree(REPO / "hydra_plugins", project / "hydra_plugins")  # conf/'s resolvers
    (project / "stcn").symlink_to(REPO / "stcn")
    mine = own_dataset(tmp_path / "mine")
    # the only edit: declare the dataset in conf/config.yaml, and train s03 on it
    config = project / "conf" / "config.yaml"
    text = config.read_text().replace(
        "datasets:\n",
        f"datasets:\n  mine: {{layout: davis, root: {mine}, shard: {{split: train}}, evaluate: {{split: val}},"
        " report: {title: My videos}}\n",
    )
    config.write_text(text.replace("train_s03: {stage: 3, data: ['davis17*5', youtube19]",
                                   "train_s03: {stage: 3, data: ['davis17*5', youtube19, 'mine*2']"))  # fmt: skip
    run(project, "pipelines/compose.py", f"evaluate.models.s03={weights_file}", "evaluate.resolution=64")
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    assert "download_mine" not in stages
    assert stages["shard_mine"]["outs"] == ["shards/mine"] and str(mine) in stages["shard_mine"]["deps"]
    assert "shards/mine" in stages["train_s03"]["deps"]
    assert str(mine) in stages["evaluate_mine"]["do"]["deps"] and "results/mine" in stages["report"]["deps"]
    assert {"reports/mine.md": {"cache": False}} in stages["report"]["outs"]

    run(project, "pipelines/shard.py", "mine")
    index = json.loads((project / "shards/mine/index.json").read_text())
    assert index["splits"]["train"]["totals"]["samples"] == 2
    # train on it alone for two iterations (the declared run, its data narrowed to the new set)
    # ... and evaluate it with its own top-k (a per-dataset override of the shared `evaluate` block)
    run(project, "pipelines/compose.py", f"evaluate.models.s03={weights_file}", "evaluate.resolution=64",
        "train_s03.data=[mine]", "~train_s03.after", "+train_s03.init=random", "train_s03.iterations=2",
        "train.crop=64", "+datasets.mine.evaluate.top_k=10")  # fmt: skip
    run(project, "pipelines/train.py", "s03")
    assert (project / "models/s03/weights.pth").is_file()
    run(project, "pipelines/evaluate.py", "mine", "s03")
    evaluation = json.loads((project / "results/mine/s03/evaluation.json").read_text())
    assert evaluation["frames"] == 12 and 0 <= evaluation["J&F-Mean"] <= 100  # percent
    assert 0 < evaluation["baseline J&F-Mean"] <= 100
    # the result records how it was made: the override, the shared settings and the weights that ran
    assert evaluation["settings"]["top_k"] == 10 and evaluation["settings"]["resolution"] == 64
    ran = evaluation["weights"]  # evaluate.models.s03: the seeded weights file
    assert (
        ran["path"] == str(weights_file)
        and ran["sha256"] == hashlib.sha256(Path(weights_file).read_bytes()).hexdigest()
    )
    run(project, "pipelines/report.py")
    md = (project / "reports/mine.md").read_text()
    assert md.startswith("## My videos") and "copy the first-frame mask" in md
    assert "- `s03`: cpu, fp32, 64p, top-k 10, a memory frame every 5" in md  # read from evaluation.json
    assert "blackswan_1" in md and "![car-shadow](mine/s03/car-shadow.png)" in md and "Not evaluated: s012." in md
    assert (project / "reports/mine/s03/blackswan.png").read_bytes()[:4] == b"\x89PNG"
    summary = pd.read_csv(project / "reports/summary.csv")
    assert "My videos" in list(summary["benchmark"])


def test_the_library_reads_the_registry_of_conf_typed_and_checked(tmp_path, monkeypatch):
    from stcn.errors import UserError
    from stcn.registry import load_registry

    registry = load_registry()  # the project's conf/config.yaml
    assert {"static", "davis16", "davis17"} <= set(registry.names)  # in conf/'s order, wherever an entry is added
    davis16 = registry.dataset("davis16")
    assert (davis16.layout, davis16.year, davis16.splits) == ("davis", 2016, ("train", "val"))
    assert davis16.files[0].name == "DAVIS-data.zip" and davis16.files[0].http.startswith("https://")
    assert [f.place for f in registry.weights["pretrained"].files] == [None] * 4  # `weights:`, not a dataset
    assert "pretrained" not in registry.names and registry.entry("pretrained") is registry.weights["pretrained"]
    known = re.escape(", ".join(registry.names))
    with pytest.raises(UserError, match=rf"^unknown dataset 'davis2017' \(known in .*config\.yaml: {known}\)"):
        registry.dataset("davis2017")
    # the composed params.yaml holds the same registry
    assert load_registry(REPO / "params.yaml").dataset("davis16") == davis16
    # STCN_CONFIG names another file; errors are one line naming the file and the culprit
    mine = tmp_path / "mine.yaml"
    mine.write_text("datasets:\n  clips: {layout: youtube, splits: [valid]}\n")
    monkeypatch.setenv("STCN_CONFIG", str(mine))
    assert load_registry().names == ["clips"]
    # an empty option block reads as {} in `weights:` as in `datasets:` (a YAML `download:` with nothing under it)
    mine.write_text("datasets:\n  clips: {layout: youtube, download: null}\n"
                    "weights:\n  w: {files: [], download: null}\n")  # fmt: skip
    assert load_registry().weights["w"].download == {} == load_registry().dataset("clips").download
    for text, message in [
        ("datasets: {}\nweights:\n  w: {files: [], download: 3}\n", r"weights\.w\.download must be a mapping, got 3"),
        ("datasets:\n  clips: {layout: dvd}\n", r"datasets\.clips\.layout must be one of davis, youtube"),
        ("datasets:\n  w: {layout: weights}\n", r"datasets\.w\.layout: model weights are declared in the `weights:`"),
        ("datasets: {}\nweights:\n  w: {layout: weights, files: []}\n", r"weights\.w: unknown key 'layout'"),
        ("datasets: {}\nweights:\n  w: {files: x}\n", r"weights\.w must be a mapping with its `files`"),
        ("datasets:\n  w: {layout: davis}\nweights:\n  w: {files: []}\n", r"'w' is declared both in datasets"),
        ("datasets:\n  clips: {layout: youtube, year: 2017}\n", r"datasets\.clips\.year: only a davis layout"),
        ("datasets:\n  clips: {layout: davis, url: x}\n", r"datasets\.clips: unknown key 'url'"),
        ("datasets:\n  clips: {layout: davis, files: [{name: a.zip, sha: x}]}\n", r"file a\.zip: unknown key 'sha'"),
        ("datasets: [a, b]\n", r"has no `datasets:` mapping"),
        ("datasets: {a: [\n", r"is not valid YAML"),
    ]:
        mine.write_text(text)
        with pytest.raises(UserError, match=message) as err:
            load_registry()
        assert "\n" not in str(err.value) and str(mine) in str(err.value)
    with pytest.raises(UserError, match=r"cannot read the dataset registry .*nowhere\.yaml"):
        load_registry(tmp_path / "nowhere.yaml")


def test_each_layout_is_one_type_that_every_step_asks():
    """A dataset's `layout` names one class of stcn.layouts; the registry checks names against them, each step
    reads its own attribute (stand-in, post-download, sharding, scorer, report columns, pipeline stages)."""
    from stcn.data.fetch.sources import STAND_INS
    from stcn.data.shards.build import READERS
    from stcn.layouts import LAYOUTS, layout_of, scored_layouts
    from stcn.registry import LAYOUTS as NAMES
    from stcn.registry import load_registry

    assert NAMES == tuple(LAYOUTS) == ("davis", "youtube", "static", "bl30k", "weights")
    assert all(lay.name == name for name, lay in LAYOUTS.items())
    # every layout with a stand-in has its builder, every sharded one its reader (and no others)
    assert set(STAND_INS) == {type(lay) for lay in LAYOUTS.values() if lay.has_stand_in}
    assert set(READERS) == {type(lay) for lay in LAYOUTS.values() if lay.sharded}
    assert scored_layouts() == ["davis", "youtube"] and LAYOUTS["youtube"].report_columns[0] == "G"
    assert [n for n, lay in LAYOUTS.items() if lay.has_year] == ["davis"]
    assert [n for n, lay in LAYOUTS.items() if not lay.has_download_stage] == ["bl30k"]
    registry = load_registry()
    for ds in registry:
        assert layout_of(ds) is ds.layout_type is LAYOUTS[ds.layout]
    davis16, davis17 = registry.dataset("davis16"), registry.dataset("davis17")
    assert davis16.layout_type.image_sets_2016(davis16) and not davis17.layout_type.image_sets_2016(davis17)
    pretrained = registry.entry("pretrained")
    assert str(pretrained.layout_type.download_folder(pretrained)) == "models/pretrained"
    assert str(davis17.layout_type.download_folder(davis17)) == "data/davis17"
