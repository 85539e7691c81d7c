"""The documentation site builds strictly (every page in the nav, every link and anchor found), and the README
stays a page a newcomer reads in ten minutes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_README_LINES = 300


def _build(root: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(root / "mkdocs.yml"), "-d", str(out)]
    return subprocess.run(command, capture_output=True, text=True, cwd=root, env=env, timeout=600)


def test_the_docs_site_builds_strictly_with_the_api_reference(tmp_path: Path) -> None:
    done = _build(REPO, tmp_path / "site")
    assert done.returncode == 0, done.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("load_scorer", "RunRecord", "create_baseline", "PAIDataModule", "LMMDataModule"):
        assert name in api  # generated from the docstrings
    assert "Benchmarks" in (tmp_path / "site" / "benchmarks" / "index.html").read_text()  # BENCHMARKS.md included


def test_a_broken_link_or_a_page_outside_the_nav_fails_the_build(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("mkdocs.yml", "BENCHMARKS.md"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "docs", root / "docs")
    (root / "epaiqa").symlink_to(REPO / "epaiqa")
    (root / "docs" / "orphan.md").write_text("# Not in the nav\n")
    done = _build(root, tmp_path / "a")
    assert done.returncode != 0 and "orphan.md" in done.stderr
    (root / "docs" / "orphan.md").unlink()
    page = root / "docs" / "data.md"
    page.write_text(page.read_text() + "\nSee [the missing page](no-such-page.md).\n")
    done = _build(root, tmp_path / "b")
    assert done.returncode != 0 and "no-such-page.md" in done.stderr


def test_the_readme_is_short_and_links_only_to_pages_that_exist() -> None:
    import re

    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= MAX_README_LINES
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith("http"):
            assert (REPO / target).exists(), target
