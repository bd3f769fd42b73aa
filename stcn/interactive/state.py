"""The interaction state of a `stcn interact` output folder (interactive.json): the object ids, the frames
interacted so far, the rounds, and the video they belong to (its frame names, size and first frame's content)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from stcn.errors import UserError

STATE = "interactive.json"  # in the output folder: object ids, frames interacted so far, rounds, the video


MAX_OBJECTS = 255  # what a palette mask can hold


def first_frame_digest(rgb: np.ndarray) -> str:
    """sha256 of the first frame's decoded pixels: what binds an output folder's rounds to one video's content."""
    return hashlib.sha256(np.ascontiguousarray(rgb).tobytes()).hexdigest()


def read_state(path: Path, stems: list[str], size: tuple[int, int], digest: str | None = None) -> dict:
    """The previous rounds' state in the output folder (none yet: round 0), checked in type and range.

    `ids`: the object ids so far, in channel order (an older state's `objects`: N means ids 1..N).
    It must record this video (its frame names, size and `digest`, the first frame's content): a round on
    another video is refused, even one with the same frame names and size (every DAVIS video has them)."""
    if not path.is_file():
        return {"ids": [], "interacted": [], "rounds": 0}

    def bad(what: str) -> UserError:
        return UserError(f"corrupt interaction state {path}: {what}; use a new --out folder")

    state = _load(path, bad)
    ids = _ids(state, bad)
    rounds, interacted = state.get("rounds"), state.get("interacted")
    if type(rounds) is not int or rounds < 0:
        raise bad(f"rounds must be a non-negative integer, got {rounds!r}")
    _check_video(state.get("video"), path, stems, size, digest, bad)
    if not isinstance(interacted, list) or any(type(t) is not int or not 0 <= t < len(stems) for t in interacted):
        raise bad(f"interacted must be a list of frame indexes below {len(stems)}, got {interacted!r}")
    return {"ids": ids, "interacted": interacted, "rounds": rounds}


def _load(path: Path, bad) -> dict:
    """The state file's JSON object; else `bad(why)` raised."""
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise bad(str(e)) from None
    except RecursionError:  # e.g. [[[[...]]]] 10^5 deep
        raise bad("nested too deeply") from None
    if not isinstance(state, dict):
        raise bad("not a JSON object")
    return state


def _ids(state: dict, bad) -> list[int]:
    """The state's distinct object ids 1..MAX_OBJECTS (an older state's `objects: N`: ids 1..N); else `bad(why)`."""
    ids = state.get("ids")
    if "ids" not in state and "objects" in state:  # an older state: objects N were ids 1..N
        objects = state["objects"]
        if type(objects) is not int or not 0 <= objects <= MAX_OBJECTS:
            raise bad(f"objects must be an integer in 0..{MAX_OBJECTS}, got {objects!r}")
        ids = list(range(1, objects + 1))
    if not isinstance(ids, list) or any(type(i) is not int or not 1 <= i <= MAX_OBJECTS for i in ids):
        raise bad(f"ids must be a list of object ids 1..{MAX_OBJECTS}, got {ids!r}")
    if len(set(ids)) != len(ids):
        raise bad(f"ids must be distinct, got {ids!r}")
    return ids


def _check_video(video, path: Path, stems: list[str], size: tuple[int, int], digest: str | None, bad) -> None:
    """The state's video record must be this video: its frame names, (W, H) `size` and first frame `digest`."""
    if (
        not isinstance(video, dict)
        or not isinstance(video.get("frames"), list)
        or not isinstance(video.get("size"), list)
    ):
        raise bad("no record of its video (frames, size)")
    if video["frames"] != stems or video["size"] != list(size):
        w, h = (video["size"] + [None, None])[:2]
        raise UserError(f"{path.parent} holds rounds of another video ({len(video['frames'])} frames of {w}x{h}; "
                        f"this one: {len(stems)} frames of {size[0]}x{size[1]}); use a new --out folder")  # fmt: skip
    recorded = video.get("first_frame_sha256")
    if digest is not None and recorded is not None and recorded != digest:
        raise UserError(f"{path.parent} holds rounds of another video (its first frame differs from the first frame "
                        "of --frames, with the same names and size); use a new --out folder")  # fmt: skip


def round_mask(path: Path, ids: list[int]) -> np.ndarray:
    """An earlier round's mask in the output folder; an id the state does not know is a one-line error."""
    from stcn.data.images import read_mask

    mask = read_mask(path)
    unknown = sorted(set(np.unique(mask).tolist()) - {0, *ids})
    if unknown:
        raise UserError(f"{path} holds object {unknown[0]}, which {path.parent / STATE} does not list ({ids}); "
                        "use a new --out folder")  # fmt: skip
    return mask


def round_state(ids: list[int], interacted, rounds: int, stems: list[str], size: tuple[int, int], digest: str) -> dict:
    """The state after a round: object `ids` in channel order, the `interacted` frames, the `rounds` so far, and
    the video (frame names, (W, H) `size`, the first frame's `digest`)."""
    video = {"frames": stems, "size": list(size), "first_frame_sha256": digest}
    return {"ids": ids, "interacted": [int(t) for t in interacted], "rounds": rounds, "video": video}


def write_state(path: Path, state: dict) -> None:
    """Write `state` (of `round_state`) as one JSON line: the caller writes it last, in its atomic output folder."""
    path.write_text(json.dumps(state) + "\n")
