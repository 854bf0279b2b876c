"""The README a newcomer reads in five minutes, and the documentation it points into."""

from __future__ import annotations

import re

from tests.conftest import ROOT

README = (ROOT / "README.rst").read_text()


def test_the_readme_is_short_and_gives_the_two_commands_early():
    lines = README.splitlines()
    assert len(lines) <= 250
    first = "\n".join(lines[:80])
    assert "./dev demo" in first
    assert "./dev test" in first
    assert "pip install" in first


def test_every_page_the_readme_links_to_exists():
    links = re.findall(r"<((?:docs/)?[\w/.-]+\.rst)>`_", README)
    assert len(links) > 20
    assert [link for link in links if not (ROOT / link).is_file()] == []


def test_every_documentation_page_is_in_the_site():
    # Sphinx warns of a page no toctree names (and -W fails the build), but
    # only where the build runs: this says it in every test run.
    index = (ROOT / "docs" / "index.rst").read_text()
    pages = {
        path.relative_to(ROOT / "docs").with_suffix("").as_posix()
        for path in (ROOT / "docs").rglob("*.rst")
        if "_build" not in path.parts
    }
    listed = set(re.findall(r"^   ([\w/-]+)$", index, re.M))
    assert sorted(pages - listed - {"index"}) == []
