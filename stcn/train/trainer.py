"""The training loop: one stage of the recipe, DDP-aware, resumable, logged.

Read top-down (as torchvision's references/segmentation): `train` = `setup` (checkpoint to resume, data plan
and stream, seeded model, optimizer) -> `train_loop` (one `train_one_iteration` per batch, metrics,
checkpoints) -> `finish` (weights.pth).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from stcn.atomic import remove_stale_temporaries
from stcn.data.stream.loader import skipped_samples
from stcn.errors import UserError
from stcn.model.checkpoint import load_weights
from stcn.model.network import STCN
from stcn.model.trained import write_trained_at
from stcn.outputs import check_output
from stcn.train import ddp
from stcn.train.checkpointing import CHECKPOINT, WEIGHTS, load_checkpoint, save_checkpoint, save_weights, set_rng_state
from stcn.train.config import TrainConfig
from stcn.train.data import OpenSegment, segment_opener
from stcn.train.data_plan import Segment, plan_segments, segment_at
from stcn.train.forward import TrainingForward
from stcn.train.init_weights import build_model
from stcn.train.loss import compute_losses, iou
from stcn.train.recipe import LR_GAMMA, WEIGHT_DECAY, Stage, get_stage, scaled_lr_steps

INPUTS = ("rgb", "gt", "sec_gt", "selector", "cls_gt")
# settings that must not change when a run is resumed
RESUME_FIXED = ("stage", "iterations", "batch_size", "crop", "lr", "seed", "checkpoint_every", "data", "world_size")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast_dtype(device: torch.device) -> torch.dtype:
    """fp16 on CUDA (with a GradScaler), bf16 on CPU."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def to_device(batch: dict[str, Any], device: torch.device, single_object: bool) -> dict[str, torch.Tensor]:
    """The tensors the forward pass and loss need, on `device` (non-blocking)."""
    keys = ("rgb", "gt", "cls_gt") if single_object else INPUTS
    return {k: batch[k].to(device, non_blocking=True) for k in keys}


def _check_resume(saved: dict[str, Any], now: dict[str, Any]) -> None:
    """Settings that define the run must match; a different worker count only changes the data order."""
    if saved.get("num_workers", now["num_workers"]) != now["num_workers"] and os.environ.get("RANK", "0") == "0":
        print(f"note: --num-workers {now['num_workers']} differs from the checkpoint's {saved['num_workers']}: "
              "the batches will differ from those of an uninterrupted run", file=sys.stderr)  # fmt: skip
    for key in RESUME_FIXED:
        if key in saved and saved[key] != now[key]:
            raise UserError(
                f"--resume with a different {key.replace('_', '-')} ({now[key]!r}) than the "
                f"checkpoint ({saved[key]!r}); use the original value or a new --out"
            )


def batches_from(segments: list[Segment], start: int, open_segment: OpenSegment) -> Iterator[dict[str, Any]]:
    """Batches for iterations start, start + 1, ... (skipping those of the first segment already used)."""
    first = segment_at(segments, start)
    for index in range(first, len(segments)):
        seg = segments[index]
        skip = max(0, start - seg.start)
        stream = iter(open_segment(index, seg))
        got = 0
        for batch in itertools.islice(stream, skip, seg.batches):
            got += 1
            yield batch
        if got < seg.batches - skip:
            raise UserError(f"the data stream ended after {skip + got} of {seg.batches} batches of a segment")
        del stream


def train_one_iteration(
    forward: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    iteration: int,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    use_amp: bool,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """One optimisation step on one batch (forward, losses, backward, optimizer and lr step); returns the losses."""
    with torch.autocast(device.type, dtype=autocast_dtype(device), enabled=use_amp):
        result = forward(batch["rgb"], batch["gt"], batch.get("sec_gt"), batch.get("selector"))
        losses = compute_losses(result, batch, iteration)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(losses["total_loss"]).backward()
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return losses


@dataclass
class Run:
    """What one training run holds: built by `setup`, advanced by `train_one_iteration` in `train`."""

    cfg: TrainConfig
    conf: dict[str, Any]  # the resolved settings (recipe values filled in), recorded in checkpoints and logs
    stage: Stage
    dist: ddp.Dist
    segments: list[Segment]  # the data plan: one loader epoch per segment (cut at checkpoints and skip changes)
    open_segment: OpenSegment
    model: STCN
    forward: torch.nn.Module  # the training forward pass (DDP-wrapped across ranks)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    use_amp: bool
    start: int  # the first iteration to run (after a resumed checkpoint's)

    @property
    def iterations(self) -> int:
        return self.conf["iterations"]

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)


def train(cfg: TrainConfig, open_segment: OpenSegment | None = None) -> dict[str, Any]:
    """Run (or resume) one stage; returns {'iteration', 'losses' (this run's logged), 'weights' (path), 'model'}.

    Batches come from `cfg.data` through `stcn.data.stream.loader` unless `open_segment` is given.
    """
    dist = ddp.setup(cfg.device)
    try:
        run = setup(cfg, open_segment, dist)
        history = train_loop(run)
        return finish(run, history)
    finally:
        ddp.teardown()


def setup(cfg: TrainConfig, open_segment: OpenSegment | None, dist: ddp.Dist) -> Run:
    """Everything a run needs, in the order that keeps runs reproducible: the checkpoint to resume, the data
    plan and stream (a bad --data fails before the model is built), the seed, the model, the optimizer, and
    last the resumed optimizer / scheduler / random state."""
    stage = get_stage(cfg.stage)
    conf = cfg.resolved(dist.world_size)
    check_output(cfg.out, {"--data": [d.rsplit("*", 1)[0] for d in cfg.data], "--imagenet-dir": cfg.imagenet_dir,
                           "--init": None if cfg.init in (None, "imagenet", "random") else cfg.init})  # fmt: skip
    if dist.is_main:  # a killed earlier run's half-written checkpoint / weights (`.checkpoint.pth.<pid>.tmp`)
        remove_stale_temporaries(cfg.out, [CHECKPOINT, WEIGHTS])
    state = _resume_state(cfg, conf, Path(cfg.out) / CHECKPOINT)
    if cfg.init is None and state is None and stage.index > 0:
        raise UserError(
            f"stage {stage.index} starts from the previous stage's weights: pass --init PREV/weights.pth "
            "(or --init imagenet / --init random)"
        )
    segments = plan_segments(stage, conf["iterations"], cfg.checkpoint_every)
    if open_segment is None:
        open_segment = segment_opener(
            cfg.data, stage.index, conf["batch_size"], cfg.crop, cfg.num_workers, cfg.seed, segments
        )
    seed_everything(cfg.seed)
    path = Path(cfg.out) / CHECKPOINT
    model, forward = build_network(cfg, stage, state, dist)
    check_finite(model, f"{path}" if state is not None else f"--init {cfg.init}")
    optimizer, scheduler, scaler, use_amp = build_optimizer(cfg, conf, stage, model, dist.device)
    with _resumable(path, state is not None):
        start = 0 if state is None else restore(state, optimizer, scheduler, scaler)
    if start and dist.is_main:  # a re-run that continues is said in one line, not silent
        print(f"train: resuming {path} at iteration {start} of {conf['iterations']}", file=sys.stderr)
    return Run(cfg, conf, stage, dist, segments, open_segment, model, forward, optimizer, scheduler, scaler, use_amp,
               start)  # fmt: skip


@contextlib.contextmanager
def _resumable(path: Path, resuming: bool) -> Iterator[None]:
    """A checkpoint whose parts do not fit this run (a missing random state, other parameter groups, a tensor of
    another shape: a tampered or foreign file) is one line naming it, not a traceback."""
    try:
        yield
    except (KeyError, ValueError, TypeError, IndexError, RuntimeError, AttributeError) as e:
        if not resuming:
            raise
        what = f"missing {e}" if isinstance(e, KeyError) else str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"corrupt training checkpoint {path}: {what}; delete it or use a new --out") from None


def build_network(
    cfg: TrainConfig, stage: Stage, state: dict[str, Any] | None, dist: ddp.Dist
) -> tuple[STCN, torch.nn.Module]:
    """The model (initialised by `cfg.init`, or the checkpoint's weights) on the device, and its training
    forward pass (DDP across ranks) with BatchNorm frozen."""
    if state is None:
        model = build_model(stage.single_object, cfg.init or "imagenet", cfg.imagenet_dir)
    else:
        with _resumable(Path(cfg.out) / CHECKPOINT, True):
            model = load_weights(STCN(single_object=stage.single_object), state["network"])
    device = dist.device
    model.to(device)
    forward = TrainingForward(model)
    if dist.enabled:
        ids = [device.index] if device.type == "cuda" else None
        forward = DistributedDataParallel(forward, device_ids=ids)
    forward.eval()  # BatchNorm frozen (running statistics), as the original; weights still train
    return model, forward


def build_optimizer(
    cfg: TrainConfig, conf: dict[str, Any], stage: Stage, model: STCN, device: torch.device
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, torch.amp.GradScaler, bool]:
    """Adam with the recipe's weight decay, its step lr schedule scaled to the run's length, and the AMP scaler."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=conf["lr"], weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, scaled_lr_steps(stage, conf["iterations"]), LR_GAMMA)
    use_amp = cfg.amp if cfg.amp is not None else device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and device.type == "cuda")
    return optimizer, scheduler, scaler, use_amp


def restore(state: dict[str, Any], optimizer, scheduler, scaler) -> int:
    """Load a checkpoint's optimizer, scheduler, scaler and random state; returns the iteration to continue at."""
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    return int(state["iteration"])


def train_loop(run: Run) -> list[float]:
    """Iterations `run.start` .. end: one `train_one_iteration` per batch, metrics every `log_every`, checkpoints
    every `checkpoint_every`. Returns the logged losses. A run that fails before its first checkpoint leaves no
    metrics behind."""
    cfg, out = run.cfg, run.out
    fresh_log = not (out / "dvclive").exists()
    log = _make_log(cfg, run.conf, out, run.iterations, run.start, run.dist)
    history: list[float] = []
    skipped_by: dict[tuple, int] = {}
    tick, steps = time.perf_counter(), 0
    try:
        batches = batches_from(run.segments, run.start, run.open_segment)
        for it, batch in zip(range(run.start, run.iterations), batches, strict=False):
            skipped = skipped_samples(batch.get("info") or [], skipped_by)
            batch = to_device(batch, run.dist.device, run.stage.single_object)
            lr = run.optimizer.param_groups[0]["lr"]
            losses = train_one_iteration(run.forward, batch, it, run.optimizer, run.scheduler, run.scaler,
                                         run.use_amp, run.dist.device)  # fmt: skip
            steps += 1
            if (it + 1) % cfg.log_every == 0 or it + 1 == run.iterations:
                rate = steps / (time.perf_counter() - tick)
                metrics = _metrics(losses, lr, run.segments[segment_at(run.segments, it)].max_skip)
                metrics["skipped_samples"] = skipped  # corrupt samples skipped so far by this rank's workers
                history.append(metrics["loss"])
                if not math.isfinite(metrics["loss"]):
                    raise UserError(
                        f"training diverged: the loss is {metrics['loss']} at iteration {it + 1}; "
                        f"nothing saved from it in {out} (lower --lr, or resume an earlier checkpoint)"
                    )
                # the speed is shown, not logged: wall-clock numbers in models/<run>/ would never hash the same
                log.log(it, metrics, speed=f"{rate * run.conf['batch_size'] * run.dist.world_size:.2f} samples/s")
                tick, steps = time.perf_counter(), 0
            if (it + 1) % cfg.checkpoint_every == 0 and it + 1 < run.iterations:
                save_state(run, it + 1)
    except BaseException:
        log.close()
        if fresh_log and run.dist.is_main:
            _drop_unresumable_log(out)
        raise
    log.close()
    return history


def finish(run: Run, history: list[float]) -> dict[str, Any]:
    """The final checkpoint (unless dropped) and weights.pth; every rank waits for rank 0 to write them."""
    out = run.out
    try:
        if run.cfg.keep_checkpoint:
            save_state(run, run.iterations)
        check_finite(run.model, f"training at iteration {run.iterations}")  # never a weights.pth of NaN
        if run.dist.is_main:
            save_weights(out / WEIGHTS, run.model)
            write_trained_at(out / WEIGHTS, run.stage.index, run.cfg.crop)  # weights.json: the resolution to run at
    except BaseException:
        if run.dist.is_main:
            _drop_unresumable_log(out)  # e.g. a full disk with no checkpoint to resume from
        raise
    if run.dist.is_main and not run.cfg.keep_checkpoint:
        (out / CHECKPOINT).unlink(missing_ok=True)
    ddp.barrier()
    return {"iteration": run.iterations, "losses": history, "weights": str(out / WEIGHTS), "model": run.model}


def check_finite(model: torch.nn.Module, where: str) -> None:
    """A one-line UserError naming `where` and the first parameter or buffer holding NaN or infinity."""
    for name, tensor in [*model.state_dict().items()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise UserError(f"{where}: non-finite weights (NaN or infinity) in {name}; nothing saved from them")


def save_state(run: Run, iteration: int) -> None:
    """The run's checkpoint after `iteration` iterations (see `_checkpoint`); never of non-finite weights."""
    check_finite(run.model, f"training at iteration {iteration}")
    _checkpoint(run.out / CHECKPOINT, run.model, run.optimizer, run.scheduler, run.scaler, run.segments, run.conf,
                run.dist, iteration)  # fmt: skip


def _drop_unresumable_log(out: Path) -> None:
    """A failed run with no checkpoint to resume from leaves no metrics behind (they would describe nothing)."""
    import shutil

    if not (out / CHECKPOINT).exists():
        shutil.rmtree(out / "dvclive", ignore_errors=True)


def _resume_state(cfg: TrainConfig, conf: dict[str, Any], path: Path) -> dict[str, Any] | None:
    """The checkpoint to continue (None for a fresh run); refuses to overwrite one without --resume."""
    if not path.exists():
        return None
    if not cfg.resume:
        raise UserError(f"{path.parent} already holds a training checkpoint: pass --resume or use a new --out")
    state = load_checkpoint(path)
    if not isinstance(state.get("config", {}), dict):
        raise UserError(f"corrupt training checkpoint {path}: config must be a mapping; delete it or use a new --out")
    _check_resume(state.get("config", {}), conf)
    if type(state["iteration"]) is not int or state["iteration"] < 0:
        raise UserError(f"corrupt training checkpoint {path}: iteration must be a whole number, got "
                        f"{state['iteration']!r}; delete it or use a new --out")  # fmt: skip
    if int(state["iteration"]) >= conf["iterations"]:
        raise UserError(f"{path} is already at iteration {state['iteration']} of {conf['iterations']}: finished")
    return state


def _make_log(cfg: TrainConfig, conf: dict[str, Any], out: Path, iterations: int, start: int, dist: ddp.Dist):
    from stcn.train.live import TrainLog

    params = dict(conf)
    params["data"] = ",".join(conf["data"])
    return TrainLog(
        out / "dvclive" if cfg.live else None, iterations, start, params, enabled=dist.is_main, progress=cfg.progress
    )


def _metrics(losses: dict[str, torch.Tensor], lr: float, max_skip: int) -> dict[str, float]:
    """Loss (mean over ranks), IoU (pooled over ranks), lr, bootstrap fraction p, max_skip."""
    parts = torch.stack([losses["total_loss"].detach().float(), losses["iou_i"].float(), losses["iou_u"].float()])
    loss = ddp.mean_over_ranks(parts[:1]).cpu()
    iu = ddp.sum_over_ranks(parts[1:]).cpu()
    return {
        "loss": float(loss[0]),
        "iou": iou({"iou_i": iu[0], "iou_u": iu[1]}),
        "lr": lr,
        "p": float(losses["p"]),
        "max_skip": max_skip,
    }


def _checkpoint(
    path: Path, model, optimizer, scheduler, scaler, segments: list[Segment], conf: dict[str, Any], dist: ddp.Dist,
    iteration: int,
) -> None:  # fmt: skip
    """Rank 0 writes the state after `iteration` iterations; all ranks wait for it.

    The data position is the segment (= loader epoch) holding the next iteration and how many of
    its batches were consumed; `batches_from` re-creates exactly that point.
    """
    if dist.is_main:
        index = segment_at(segments, iteration) if iteration < segments[-1].end else len(segments)
        start = segments[index].start if index < len(segments) else iteration
        position = {
            "iteration": iteration,
            "segment": index,
            "segment_start": start,
            "batches_into_segment": iteration - start,
            "seed": conf["seed"],
        }
        save_checkpoint(
            path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, iteration=iteration,
            data_position=position, config=conf,
        )  # fmt: skip
    ddp.barrier()
