"""The README is the front door and every relative link and image in it and in docs/ resolves."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 300

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
IMG_TAG = re.compile(r"<img[^>]*\ssrc=\"([^\"]+)\"", re.I)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def _prose(text: str) -> str:
    """The page without code blocks and inline code, where brackets are not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(h) for h in HEADING.findall(FENCE.sub("", page.read_text()))}


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """Every relative link or image of ``page`` whose file or heading anchor does not exist."""
    prose = _prose(page.read_text())
    bad = []
    for target in LINK.findall(prose) + IMG_TAG.findall(prose):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.is_relative_to(root.resolve()) or not resolved.exists():
            bad.append(f"{page.name}: {target} (no such file)")
        elif anchor and (resolved.suffix != ".md" or anchor not in anchors(resolved)):
            bad.append(f"{page.name}: {target} (no such heading)")
    return bad


def test_every_relative_link_and_image_resolves():
    assert [p.name for p in PAGES[1:]], "docs/ has no pages"
    assert [bad for page in PAGES for bad in broken_links(page)] == []


def test_every_docs_page_is_reachable_from_the_readme():
    targets = LINK.findall(_prose(PAGES[0].read_text()))
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in targets}
    assert [p.name for p in PAGES[1:] if p.resolve() not in linked] == []


def test_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES
    headings = [line for line in lines if line.startswith("## ")]
    assert "## Set-up" in headings and "## Layout" in headings
    assert any("make repro" in line for line in lines[:15])


def test_the_checker_finds_missing_files_and_headings(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading, too\n")
    (tmp_path / "fig.png").write_bytes(b"")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n[ok](other.md) [ok](other.md#a-code-heading-too) ![ok](fig.png) [ok](#page)\n"
        "[web](https://example.org/x) `[code](missing.md)`\n```\n[fenced](missing.md)\n```\n"
        "[gone](missing.md) ![gone](nofig.png) [bad anchor](other.md#nope) [self](#nope)\n"
        "[outside](../../etc/passwd) <img src=\"nofig2.png\">\n"
    )
    assert broken_links(page, tmp_path) == [
        "page.md: missing.md (no such file)",
        "page.md: nofig.png (no such file)",
        "page.md: other.md#nope (no such heading)",
        "page.md: #nope (no such heading)",
        "page.md: ../../etc/passwd (no such file)",
        "page.md: nofig2.png (no such file)",
    ]
