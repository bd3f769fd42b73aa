"""`stcn train` (also `python -m stcn.train` / `torchrun -m stcn.train` with the same options)."""

from __future__ import annotations

import os

import typer

from stcn.cli.options import QUIET
from stcn.train.config import TrainConfig

D = TrainConfig.__dataclass_fields__  # the defaults live in TrainConfig


def train_command(
    stage: int = typer.Option(..., "--stage", help="0 static images, 1 BL30K, 2 or 3 DAVIS + YouTube-VOS"),
    data: list[str] = typer.Option(
        ...,
        "--data",
        help="shards: URL pattern {a..b}, folder/prefix with index.json, "
        "s3://...; '*W' suffix = sampling weight; repeatable",
    ),
    out: str = typer.Option(..., "--out", help="folder for weights.pth (official format), checkpoint.pth, dvclive/"),
    init: str | None = typer.Option(
        None,
        "--init",
        help="'imagenet' (stage 0 default), 'random', or the previous stage's weights.pth (required for stages 1-3)",
    ),
    imagenet_dir: str | None = typer.Option(
        None,
        "--imagenet-dir",
        help="folder with torchvision's resnet50/resnet18 ImageNet files (default: the torch hub cache)",
    ),
    iterations: int | None = typer.Option(
        None,
        "--iterations",
        min=1,
        help="(default: the stage's recipe); lr steps and the max_skip curriculum scale with it",
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="per process (default: recipe, 8 / 4)"),
    crop: int = typer.Option(D["crop"].default, "--crop", help="training crop size (multiple of 16)"),
    lr: float | None = typer.Option(None, "--lr", help="(default: recipe, 1e-5)"),
    resume: bool = typer.Option(D["resume"].default, "--resume", help="continue from OUT/checkpoint.pth if it exists"),
    amp: bool | None = typer.Option(
        None,
        "--amp/--no-amp",
        help="mixed precision (default: on with CUDA (fp16 + GradScaler), off on CPU (bf16 when on))",
    ),
    checkpoint_every: int = typer.Option(
        D["checkpoint_every"].default, "--checkpoint-every", help="iterations between checkpoints"
    ),
    seed: int = typer.Option(D["seed"].default, "--seed", help="seed of the model init and the data streams"),
    num_workers: int | None = typer.Option(
        None, "--num-workers", help="data loader processes per rank (default: 4, at most the CPU count)"
    ),
    log_every: int = typer.Option(D["log_every"].default, "--log-every", help="iterations between logged metrics"),
    device: str | None = typer.Option(None, "--device", help="cpu | cuda (default: cuda when available)"),
    keep_checkpoint: bool = typer.Option(
        D["keep_checkpoint"].default,
        "--keep-checkpoint/--no-keep-checkpoint",
        help="keep OUT/checkpoint.pth after the last iteration",
    ),
    quiet: bool = QUIET,
) -> None:
    """Train one stage of STCN (s012 = 0 -> 1 -> 2, s03 = 0 -> 3, each --init from the previous weights)."""
    from stcn.train.trainer import train

    cfg = TrainConfig(stage=stage, data=list(data), out=out, init=init, imagenet_dir=imagenet_dir,
                      iterations=iterations, batch_size=batch_size, crop=crop, lr=lr, resume=resume, amp=amp,
                      checkpoint_every=checkpoint_every, seed=seed, num_workers=num_workers, log_every=log_every,
                      device=device, keep_checkpoint=keep_checkpoint)  # fmt: skip
    result = train(cfg)
    if os.environ.get("RANK", "0") == "0":
        typer.echo(f"stage {stage}: {result['iteration']} iterations done; weights in {result['weights']}", err=True)


def register(app: typer.Typer) -> None:
    """Attach `train` to the `stcn` app."""
    app.command("train")(train_command)
