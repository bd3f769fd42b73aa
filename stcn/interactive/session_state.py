"""The pieces of a web page session's state (`stcn app`): the opened video, a pending edit, an undo snapshot, a
background job and its cancellation."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class Cancelled(Exception):
    """Raised inside a job when the user pressed cancel."""


@dataclass
class Video:
    """An opened video: names, frames at the processing size (RGB uint8) and the input size."""

    name: str
    stems: list[str]
    frames: list[np.ndarray]
    full: tuple[int, int]  # (W, H) of the input frames: exported masks have this size
    size: tuple[int, int]  # (W, H) processed and shown
    source: Path | None = None  # the frame folder or video file it was read from (resolved)


@dataclass
class Pending:
    """A frame's edited mask (channel labels) not yet propagated, and the strokes drawn on it."""

    frame: int
    labels: np.ndarray
    strokes: np.ndarray  # channel id where a positive stroke lies, 0 for negative strokes, -1 none


@dataclass
class Snapshot:
    """What undo restores: every frame's channel labels, the interacted frames and the ids."""

    labels: np.ndarray
    interacted: list[int]
    ids: list[int]


@dataclass
class Job:
    """A background job (propagate / export) the page polls."""

    kind: str
    total: int = 0
    done: int = 0
    state: str = "running"  # running, done, cancelled, failed
    message: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    started: float = field(default_factory=time.monotonic)
