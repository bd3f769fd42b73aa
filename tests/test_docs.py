"""The documentation: a short README linking into docs/, and docs/ a MkDocs site that builds in strict mode offline
(every internal link and anchor checked, every page in the navigation)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
README_LINES = 250


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    """`mkdocs build --strict` of `config` into `site` (no network: the site needs none to build)."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner about its successor
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def nav_pages(nav) -> list[str]:
    """The page files of mkdocs.yml's `nav`, in order."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [p for v in nav.values() for p in nav_pages(v)]
    return [p for item in nav for p in nav_pages(item)]


def config() -> dict:
    class Loader(yaml.SafeLoader):  # mkdocs.yml names a Python function (`!!python/name:`): keep it as text
        pass

    Loader.add_multi_constructor("tag:yaml.org,2002:python/name:", lambda loader, suffix, node: suffix)
    return yaml.load((REPO / "mkdocs.yml").read_text(), Loader=Loader)


def test_docs_build_in_strict_mode(tmp_path):
    r = build(REPO / "mkdocs.yml", tmp_path / "site")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not re.search(r"^WARNING", r.stderr, re.M), r.stderr
    pages = nav_pages(config()["nav"])
    assert sorted(pages) == sorted(p.name for p in (REPO / "docs").glob("*.md"))  # every page, once
    for page in pages:
        html = tmp_path / "site" / ("index.html" if page == "index.md" else f"{page[:-3]}/index.html")
        assert html.is_file(), page
    dag = (tmp_path / "site" / "dag" / "index.html").read_text()
    assert '<pre class="mermaid"><code>flowchart TD' in dag  # the generated graph, drawn by mermaid
    assert "fonts.googleapis.com" not in (tmp_path / "site" / "index.html").read_text()  # opens offline


def test_a_broken_link_fails_the_build(tmp_path):
    """The check of the check: strict mode fails on a link to a page that does not exist and on a page left out of
    the navigation, naming them."""
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    page = tmp_path / "docs" / "parity.md"
    page.write_text(page.read_text() + "\nSee [the tests](testing.md).\n")
    r = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert r.returncode != 0 and "testing.md" in r.stderr, r.stderr
    page.write_text((REPO / "docs" / "parity.md").read_text())
    (tmp_path / "docs" / "extra.md").write_text("# Not in the navigation\n")
    r = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert r.returncode != 0 and "extra.md" in r.stderr, r.stderr


def test_readme_is_short_and_its_links_resolve():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= README_LINES
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [link.split("#")[0] for link in links if "://" not in link]
    assert {"docs/setup.md", "docs/pipeline.md", "docs/dag.md", "docs/segment.md", "docs/credits.md"} <= set(local)
    assert [link for link in local if not (REPO / link).exists()] == []
