"""The suite's registry checks: what conf/ declares is what the pipeline has, for conf/ or any copy of it.

Expected stages, benchmarks, paper numbers and runs are read from a conf/ folder (composed with its sample profile)
and compared with what `pipelines/compose.py` generates and `stcn.reports` reads, so adding a dataset, a run or an
evaluated model to conf/ alone keeps these checks green (tests/test_registry.py runs them on an edited copy).
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from stcn.layouts import LAYOUTS, Layout

REPO = Path(__file__).resolve().parent.parent
PIPELINES = REPO / "pipelines"


def pipelines_importable() -> None:
    """pipelines/ on sys.path: compose.py, its sibling `stage`, the import walker `import_walk`."""
    if str(PIPELINES) not in sys.path:
        sys.path.insert(0, str(PIPELINES))


def compose_module():
    """pipelines/compose.py as a module (its sibling `stage` importable)."""
    pipelines_importable()
    return importlib.import_module("compose")


def raw_config(conf: Path) -> dict[str, Any]:
    """conf/config.yaml as written (not composed)."""
    return yaml.safe_load((conf / "config.yaml").read_text())


def expected_stages(p: dict[str, Any]) -> set[str]:
    """The stage names (as `dvc stage list` shows them) that the registry in params `p` declares."""
    datasets = {name: entry or {} for name, entry in p["datasets"].items()}
    runs = [k.removeprefix("train_") for k in p if k.startswith("train_")]
    benchmarks = [n for n, e in datasets.items() if "evaluate" in e]
    return {
        *(f"download_{n}" for n, e in datasets.items() if not e.get("root") and layout(e).has_download_stage),
        *(f"download_{n}" for n in p.get("weights") or {}),  # model weights: download_<name> -> models/<name>
        *(f"shard_{n}" for n, e in datasets.items() if "shard" in e),
        *(name for n, e in datasets.items() for name in bl30k_part_stages(n, e)),
        *(f"train_{r}" for r in runs),
        *(f"evaluate_{b}@{m}" for b in benchmarks for m in p["evaluate"]["models"]),
        *(k for k in p if k.startswith("evaluate_") and k.endswith("_interactive")),
        "report",
    }


def layout(entry: dict[str, Any]) -> Layout:
    """The layout object (stcn.layouts) of a `datasets` entry of params."""
    return LAYOUTS[entry["layout"]]


def bl30k_part_stages(name: str, entry: dict[str, Any]) -> list[str]:
    """A BL30K dataset sharded in N parts (1 too): its index stage and one stage per part (the merge is
    `shard_<name>`)."""
    if not layout(entry).segment_tars or "shard" not in entry:
        return []
    parts = int((entry.get("shard") or {}).get("parts") or 1)
    return [f"shard_{name}_index", *(f"shard_{name}_part@{i}" for i in range(parts))]


def stage_names(stages: dict[str, Any], p: dict[str, Any]) -> set[str]:
    """dvc.yaml `stages` expanded as DVC does: a `foreach` stage over `${evaluate.models}` is `<stage>@<model>`,
    one over a BL30K dataset's `${datasets.<name>.shard.part_list}` is `<stage>@<I>`."""
    names = set()
    for name, stage in stages.items():
        part_list = re.fullmatch(r"\$\{datasets\.(\w+)\.shard\.part_list\}", str(stage.get("foreach")))
        if part_list:  # BL30K's parts: foreach over 0..N-1
            names |= {f"{name}@{i}" for i in p["datasets"][part_list.group(1)]["shard"]["part_list"]}
        elif "foreach" in stage:
            assert stage["foreach"] == "${evaluate.models}", name
            names |= {f"{name}@{m}" for m in p["evaluate"]["models"]}
        else:
            names.add(name)
    return names


def project_imports(script: Path) -> set[str]:
    """The project files `script` runs (itself and every project module it imports, transitively, imports by name
    included), found by the project's one import walker (pipelines/import_walk.py), as paths relative to the
    repository."""
    pipelines_importable()
    from import_walk import project_files

    return {str(f.relative_to(REPO)) for f in project_files(script.resolve(), REPO, "stcn")}


def uncovered(script: Path, deps: list[str]) -> set[str]:
    """The project files `script` imports that no dep of its stage covers (a dep covers itself and its folder)."""
    return {f for f in project_imports(script) if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)}


def check_registry(conf: Path) -> dict[str, Any]:
    """Run the registry checks on a conf/ folder (sample profile); its composed params."""
    from stcn.registry import parse_registry
    from stcn.reports import benchmarks

    compose = compose_module()
    p = compose.compose_params([], conf)
    stages = compose.stages(p)
    assert stage_names(stages, p) == expected_stages(p)
    # every stage's code dependencies cover what its entry script imports
    for name, stage in stages.items():
        body = stage.get("do", stage)
        script = next(w for w in body["cmd"].split() if w.startswith("pipelines/"))
        assert not uncovered(REPO / script, body["deps"]), f"{name}: {sorted(uncovered(REPO / script, body['deps']))}"
    # the report shows every benchmark with the paper's numbers as conf/ writes them
    raw = raw_config(conf)["datasets"]
    reported = {b.key: b.paper for b in benchmarks(parse_registry(p["datasets"]))}
    assert reported == {n: (e.get("report") or {}).get("paper", {}) for n, e in raw.items() if "evaluate" in e}
    # the sample profile shortens every run, those it does not list too
    for run in (k for k in p if k.startswith("train_")):
        iterations = p[run].get("iterations") or p["train"]["iterations"]
        assert iterations is not None and iterations <= 1000, f"{run}: {iterations} iterations in the sample profile"
    # every evaluated model names a weights file that a training run writes or a download stage provides
    writers = {f"models/{k.removeprefix('train_')}/weights.pth" for k in p if k.startswith("train_")}
    for model, weights in p["evaluate"]["models"].items():
        assert weights in writers or any(weights.startswith(f"models/{n}/") for n in p["datasets"]), model
    return p
