"""The README's shell commands run as written in bash and zsh: no unquoted glob characters."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def shell_lines() -> list[str]:
    blocks = re.findall(r"^```bash\n(.*?)^```", README.read_text(), re.S | re.M)
    return [line for block in blocks for line in block.splitlines()]


def test_glob_characters_are_quoted():
    """zsh stops with `no matches found` on an unquoted `*`, `?` or `[...]` that matches no file."""
    assert len(shell_lines()) > 20
    for line in shell_lines():
        bare = re.sub(r"'[^']*'|\"[^\"]*\"", "", line)  # quoted parts are safe
        bare = re.sub(r"(^|\s)#.*", "", bare)  # comments
        assert not re.search(r"[*?\[\]]", bare), f"quote the pattern in: {line}"
