"""`stcn interact` and the app's session check what they read: the interaction state, scribble PNGs
and JSON, page strokes; a round on another video is refused (one line, the earlier rounds untouched)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from clihelp import one_error


def test_interact_round_on_another_video_is_refused(tmp_path: Path, interact_round) -> None:
    """Item 6: round 2 on another video (fewer frames) into the same --out: one line, the masks untouched."""
    swan, swan_png = interact_round.video("blackswan", 5)
    dog, dog_png = interact_round.video("dog-agility", 3)
    out = tmp_path / "out"
    first = interact_round(swan, swan_png, out)
    assert first.returncode == 0, first.stderr[-2000:]
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    one_error(interact_round(dog, dog_png, out), f"{out} holds rounds of another video", "5 frames", "3 frames")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("interacted", "ab", "interacted must be a list of frame indexes below 5"),
        ("interacted", [100], "got [100]"),
        ("interacted", [-3], "got [-3]"),
        ("ids", [3000], "ids must be a list of object ids 1..255, got [3000]"),
        ("ids", "2", "ids must be a list of object ids"),
        ("ids", [1, 1], "ids must be distinct, got [1, 1]"),
        ("rounds", -1, "rounds must be a non-negative integer"),
        ("video", None, "no record of its video"),
    ],
)
def test_tampered_interaction_state_is_one_line(tmp_path: Path, interact_round, key, value, needle) -> None:
    """Item 10: the state file is checked in type and range before use (no TypeError/IndexError/OOM)."""
    swan, swan_png = interact_round.video("blackswan", 5)
    out = tmp_path / "out"
    assert interact_round(swan, swan_png, out).returncode == 0
    state = json.loads((out / "interactive.json").read_text())
    (out / "interactive.json").write_text(json.dumps({**state, key: value}))
    one_error(interact_round(swan, swan_png, out), "corrupt interaction state", needle)


def test_scribble_of_another_size_is_refused(tmp_path: Path, interact_round) -> None:
    """Item 7: a 50x50 scribble on frames of another size is refused naming both sizes (not stretched)."""
    import numpy as np
    from PIL import Image

    swan, _ = interact_round.video("blackswan", 3)
    w, h = Image.open(next(swan.iterdir())).size
    small = np.zeros((50, 50), np.uint8)
    small[10:20, 10:20] = 1
    Image.fromarray(small, "L").save(tmp_path / "small.png")
    res = interact_round(swan, tmp_path / "small.png", tmp_path / "out")
    one_error(res, "50x50", f"{w}x{h}")
    assert not (tmp_path / "out").exists()


def test_16_bit_scribble_names_the_id(tmp_path: Path, interact_round) -> None:
    """Smaller: a 16-bit scribble with id 300 names the id (not "no strokes")."""
    import numpy as np
    from PIL import Image

    swan, _ = interact_round.video("blackswan", 3)
    w, h = Image.open(next(swan.iterdir())).size
    ids = np.zeros((h, w), np.uint16)
    ids[5:15, 5:15] = 300
    Image.fromarray(ids).save(tmp_path / "wide.png")
    assert Image.open(tmp_path / "wide.png").mode.startswith("I")
    one_error(interact_round(swan, tmp_path / "wide.png", tmp_path / "out"), "holds id 300")


def test_interact_round_on_another_video_of_the_same_names_and_size_is_refused(tmp_path: Path, interact_round):
    """Issue 30 item 8: round 2 with another video's frames (same frame names and size, as every DAVIS video has)
    into the same --out was accepted: the state is bound to the first frame's content."""
    swan, swan_png = interact_round.video("blackswan", 3)
    dog, dog_png = interact_round.video("dog-agility", 3)
    assert sorted(p.name for p in swan.iterdir()) == sorted(p.name for p in dog.iterdir())
    out = tmp_path / "out"
    first = interact_round(swan, swan_png, out)
    assert first.returncode == 0, first.stderr[-2000:]
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    one_error(interact_round(dog, dog_png, out), f"{out} holds rounds of another video", "first frame differs")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    again = interact_round(swan, swan_png, out)  # the same video: a second round
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((out / "interactive.json").read_text())["rounds"] == 2


def _stroke(object_id: object = 1, path: object = None) -> dict:
    return {"path": [[0.4, 0.5], [0.6, 0.5]] if path is None else path, "object_id": object_id}


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"scribbles": 5}, "`scribbles` must be a list"),
        ({"scribbles": [[_stroke(-2)], [], []]}, "frame 0 stroke 0 object_id must be a whole number 0..255"),
        ({"scribbles": [[], [_stroke(1.9)], []]}, "frame 1 stroke 0 object_id must be a whole number 0..255 (0: "
         "background), got 1.9"),
        ({"scribbles": [[_stroke(True)], [], []]}, "got True"),
        ({"scribbles": [[_stroke(1, [[float("nan"), 0.5]])], [], []]}, "point [nan, 0.5] is not [x, y] with finite"),
        ({"scribbles": [[_stroke(1, [[1.5, 0.5]])], [], []]}, "point [1.5, 0.5]"),
        ({"scribbles": [[_stroke(1, [])], [], []]}, "path must be a non-empty list"),
        ({"scribbles": [5, [], []]}, "frame 0 must be a list of strokes"),
    ],
)  # fmt: skip
def test_scribble_json_of_wrong_types_is_one_line(tmp_path: Path, interact_round, data, needle) -> None:
    """Issue 30 items 11 and 14: `object_id` -2 became object 1 (-3 a background stroke), 1.9 became 1,
    `{"scribbles": 5}` and NaN coordinates were tracebacks; now one line naming the file and the stroke."""
    swan, _ = interact_round.video("blackswan", 3)
    scribbles = tmp_path / "s.json"
    scribbles.write_text(json.dumps({**data, "sequence": "blackswan"}))
    one_error(interact_round(swan, scribbles, tmp_path / "out"), f"not a DAVIS scribble file: {scribbles}", needle)
    assert not (tmp_path / "out").exists()


def test_page_strokes_of_wrong_types_are_refused(tmp_path: Path, weights_file: Path) -> None:
    """Issue 30 item 11: a stroke for object 12.9 drew object 12, on frame 1.9 frame 1, `positive: "false"` a
    positive stroke; the session refuses them (the page's own "12" from its input field still works)."""
    from stcn.errors import UserError
    from stcn.inference.loading import load_model
    from stcn.inference.settings import InferenceSettings
    from stcn.interactive.session import Session
    from stcn.interactive.weights import load_fusion, load_s2m

    settings = InferenceSettings(resolution=64, mem_every=2)
    session = Session(load_model(weights_file), load_s2m(None, 0), load_fusion(None), settings, tmp_path / "out",
                      tmp_path, max_frames=3, models="test")  # fmt: skip
    session.open(sample="blackswan")
    point = [[0.5, 0.5]]
    for frame, obj, positive, needle in ((0, 12.9, True, "object id 12.9 is not a whole number"),
                                         (0, "12.9", True, "object id '12.9' is not a whole number"),
                                         (1.9, 12, True, "frame 1.9 is not a whole number"),
                                         (0, 12, "false", "positive must be true or false, got 'false'")):  # fmt: skip
        with pytest.raises(UserError, match=re.escape(needle)):
            session.stroke(frame, obj, positive, point)
    assert session.status()["objects"] == [] and session.status()["pending"] is None
    session.stroke(1, "12", True, point)
    assert session.status()["objects"] == [12] and session.status()["pending"] == 1


def test_deeply_nested_interaction_state_is_one_line(tmp_path: Path, interact_round) -> None:
    """Issue 30 item 14: a state file nested 10^5 deep was a RecursionError traceback."""
    swan, swan_png = interact_round.video("blackswan", 3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "interactive.json").write_text("[" * 100_000 + "]" * 100_000)
    one_error(interact_round(swan, swan_png, out), f"corrupt interaction state {out / 'interactive.json'}",
              "nested too deeply")  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["interactive.json"]
