"""Progress on a non-terminal: periodic plain lines (what `dvc repro` logs show), silent when quiet."""

from stcn.progress import progress_bar


def test_plain_lines_appear_with_a_period_on_a_non_terminal(capsys):
    with progress_bar("segment blackswan", total=4, unit="frames", period=0.0, terminal=False) as bar:
        for _ in range(4):
            bar.advance(1, info="1 object")
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("segment blackswan: 1/4 frames (25%)")
    assert "1 object" in lines[0]
    assert lines[-1].startswith("segment blackswan: 4/4 frames (100%)") and lines[-1].endswith("done")
    assert len(lines) == 5  # one per advance (period 0) + the closing line


def test_long_period_prints_only_the_closing_line(capsys):
    with progress_bar("train", total=10, unit="it", period=3600, terminal=False) as bar:
        for _ in range(10):
            bar.advance()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train: 10/10 it (100%)")


def test_quiet_prints_nothing(capsys, monkeypatch):
    monkeypatch.setenv("STCN_QUIET", "1")
    with progress_bar("train", total=3, unit="it", period=0.0, terminal=False) as bar:
        bar.advance(3)
    assert capsys.readouterr().err == ""
