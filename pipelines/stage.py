"""What every pipeline entry shares: its parameters from params.yaml, one-line user errors, OpenMP set-up."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer

PARAMS = Path("params.yaml")
# idle OpenMP threads sleep instead of spinning: on a busy CPU, spinning threads slow torch down ~10x
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def load() -> dict[str, Any]:
    """All of params.yaml, read strictly (duplicate keys, anchors and aliases are one-line errors)."""
    from stcn.registry import read_yaml

    return read_yaml(PARAMS)


def params(block: str, shared: str | None = None) -> dict[str, Any]:
    """The `block` of params.yaml laid over the `shared` block (the block's values win where they are not null)."""
    data = load()
    base = data.get(shared) or {} if shared else {}
    return {**base, **given(data.get(block) or {})}


def registry(data: dict[str, Any] | None = None):
    """The dataset registry of params.yaml (`datasets` and `weights`, checked by `stcn.registry`)."""
    from stcn.registry import parse_registry

    data = data or load()
    return parse_registry(data.get("datasets") or {}, "params.yaml", data.get("weights"))


def dataset(name: str, data: dict[str, Any] | None = None):
    """The registry entry `weights.<name>`, else `datasets.<name>`, of params.yaml (a checked
    `stcn.registry.Dataset`)."""
    return registry(data).entry(name)


def given(knobs: dict[str, Any]) -> dict[str, Any]:
    """The knobs that are set: null in params means the library's default, declared once in the code."""
    return {k: v for k, v in knobs.items() if v is not None}


def models(data: dict[str, Any]) -> dict[str, str]:
    """The evaluated models: `evaluate.models`, name -> weights file (each evaluated on every benchmark)."""
    return dict(data["evaluate"].get("models") or {})


def model_weights(model: str, data: dict[str, Any] | None = None) -> str:
    """The weights file of a model of `evaluate.models`, or a UserError naming the known models."""
    from stcn.errors import UserError

    known = models(data or load())
    if model not in known:
        raise UserError(f"unknown model {model!r} (evaluate.models in params.yaml: {', '.join(known)})")
    return known[model]


def runs(data: dict[str, Any]) -> list[str]:
    """The STCN training runs: one `train_<run>` block each (`train_s2m` trains S2M, not a run)."""
    return [key.removeprefix("train_") for key in data if key.startswith("train_") and key != "train_s2m"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def command(fn) -> None:
    """Run `fn` as a typer command; a stcn user error becomes one line on stderr and exit code 2."""
    from stcn.atomic import output_errors
    from stcn.errors import reporting

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(fn)
    with reporting(), output_errors(None):  # a full or read-only disk: one line too
        app()
