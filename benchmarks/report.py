"""Write one benchmark's results as a section of reports/benchmarks.md (other sections are kept)."""

from __future__ import annotations

import datetime
import platform
import re
import shlex
import sys
from pathlib import Path

import pandas as pd

REPORT = Path(__file__).resolve().parent.parent / "reports" / "benchmarks.md"
HEADER = "# Benchmarks\n\nEach section is written by the script it names; re-run that script to refresh it.\n"


def machine() -> str:
    """A one-line description of this machine (CPU model, cores, torch build)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    import torch

    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"


def write_section(name: str, table: pd.DataFrame, notes: str = "") -> str:
    """Replace (or append) section `name` with the table, the machine, the command and the date."""
    command = "python " + " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    body = (
        f"## {name}\n\n"
        f"- command: `{command}`\n- machine: {machine()}\n"
        f"- date: {datetime.date.today().isoformat()}\n\n"
        f"{table.to_markdown(index=False)}\n" + (f"\n{notes.strip()}\n" if notes.strip() else "")
    )
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    text = REPORT.read_text() if REPORT.exists() else HEADER
    pattern = re.compile(rf"^## {re.escape(name)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: body + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + body
    REPORT.write_text(text)
    return body
