"""The project's pip constraints (constraints.txt): one version for every distribution `stcn[dev,interactive]`
needs, so that pip's resolver has one candidate each and never backtracks (dvc-s3 -> s3fs -> aiobotocore pins a
botocore range, boto3 another: unconstrained, pip walked dozens of releases of both for half an hour).

    python .ci/constraints.py --write   # after a deliberate upgrade: pin what this environment has installed
    python .ci/constraints.py --check   # every requirement of the closure is pinned, and the pins satisfy them all

torch and torchvision are left out: install.sh pins the build already installed (CPU or CUDA), see install.sh.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import sys
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

FILE = Path(__file__).resolve().parent.parent / "constraints.txt"
ROOT, EXTRAS = "stcn", ("dev", "interactive")
LEFT_TO_INSTALL_SH = {"torch", "torchvision"}


def _applies(req: Requirement, extras: set[str]) -> bool:
    """Whether `req` is needed given the extras asked of the distribution that declares it."""
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**default_environment(), "extra": e}) for e in extras | {""})


def closure() -> dict[str, list[Requirement]]:
    """Every distribution reached from stcn[dev,interactive] in this environment -> the requirements naming it."""
    found: dict[str, list[Requirement]] = {}
    todo: list[tuple[str, set[str]]] = [(ROOT, set(EXTRAS))]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, frozenset(extras)) in seen:
            continue
        seen.add((name, frozenset(extras)))
        for text in md.requires(name) or []:
            req = Requirement(text)
            if not _applies(req, extras):
                continue
            dep = canonicalize_name(req.name)
            if dep in LEFT_TO_INSTALL_SH:
                continue  # their own dependencies differ between the CPU and CUDA builds
            found.setdefault(dep, []).append(req)
            todo.append((dep, set(req.extras)))
    found.pop(ROOT, None)
    return found


def pins(path: Path = FILE) -> dict[str, str]:
    """constraints.txt as {canonical name: version}."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[canonicalize_name(name)] = version.strip()
    return out


def problems(path: Path = FILE) -> list[str]:
    """What makes constraints.txt incomplete or inconsistent with the project's dependency closure."""
    pinned, out = pins(path), []
    for name, reqs in sorted(closure().items()):
        if name not in pinned:
            out.append(f"{name} is required ({reqs[0]}) but not pinned")
            continue
        out += [
            f"{name}=={pinned[name]} does not satisfy {r}"
            for r in reqs
            if not r.specifier.contains(pinned[name], prereleases=True)
        ]
    return out


def write(path: Path = FILE) -> None:
    names = sorted(closure())
    lines = [f"{n}=={md.version(n)}" for n in names]
    head = "# pip constraints for install.sh: regenerate with `python .ci/constraints.py --write` (see that file)\n"
    path.write_text(head + "\n".join(lines) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true")
    group.add_argument("--check", action="store_true")
    args = parser.parse_args()
    if args.write:
        write()
    else:
        bad = problems()
        print("\n".join(bad) or f"{FILE.name}: consistent")
        sys.exit(1 if bad else 0)
