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


def test_training_log_shows_iteration_loss_iou_and_eta(capsys, monkeypatch):
    from stcn.train.live import TrainLog

    monkeypatch.setenv("STCN_PROGRESS_PERIOD", "0")
    log = TrainLog(None, total=4, start=1, params={})  # resumed at iteration 1
    for step in (1, 2, 3):
        log.log(step, {"loss": 0.5 / step, "iou": 0.25 * step})
    log.close()
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("train: 2/4 it (50%)") and "eta " in lines[0]
    assert lines[0].endswith("loss 0.5000 iou 0.250")
    assert lines[-1].startswith("train: 4/4 it (100%)") and lines[-1].endswith("loss 0.1667 iou 0.750 — done")


def test_training_log_without_progress_is_silent(capsys, monkeypatch):
    from stcn.train.live import TrainLog

    monkeypatch.setenv("STCN_PROGRESS_PERIOD", "0")
    log = TrainLog(None, total=2, start=0, params={}, progress=False)
    log.log(0, {"loss": 1.0, "iou": 0.0})
    log.close()
    assert capsys.readouterr().err == ""


def test_download_reports_mebibytes(tmp_path, capsys, monkeypatch):
    from stcn.data.fetch.download import fetch

    monkeypatch.setenv("STCN_PROGRESS_PERIOD", "0")
    src = tmp_path / "src" / "frames.bin"
    src.parent.mkdir()
    src.write_bytes(bytes(range(256)) * (3 * 4096 + 10))  # 3 MiB + 2560 bytes: 4 started MiB
    fetch(str(src), tmp_path / "dl" / "frames.bin")
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("download frames.bin: ")]
    assert [ln.split(": ")[1].split(" (")[0] for ln in lines] == ["1/4 MiB", "2/4 MiB", "3/4 MiB", "4/4 MiB", "4/4 MiB"]
    assert lines[-1].endswith("done")


def test_shard_reports_samples(tmp_path, capsys, monkeypatch):
    from stcn.data.fetch.download import download_dataset
    from stcn.data.shards.build import shard_davis

    download_dataset("davis17", source="bundled", to=tmp_path / "davis17")
    capsys.readouterr()
    monkeypatch.setenv("STCN_PROGRESS_PERIOD", "0")
    index = shard_davis(tmp_path / "davis17", str(tmp_path / "shards"), split="train")
    n = index["totals"]["samples"]
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("shard davis2017 train: ")]
    assert lines[0].startswith(f"shard davis2017 train: 1/{n} samples") and "train-000000" in lines[0]
    assert lines[-1].startswith(f"shard davis2017 train: {n}/{n} samples (100%)") and lines[-1].endswith("done")
