"""The README stays short and the documentation's links hold.

README.md and the pages in docs/ (not docs/results/**, which holds published study outputs):
README.md has at most 300 lines; every relative link and image resolves to a file, and every
`#anchor` to a heading as GitHub names it; the text names no issue numbers (`#12`) and no commit
hashes (the documents describe the project as it is; history is in git); every docs page is
linked from README.md. Pure Python: no TensorFlow.
"""

from __future__ import annotations

import pathlib
import re
import urllib.parse

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
MAX_README_LINES = 300

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# [text](target) and ![alt](target), with an optional "title"; text may hold one level of [..]
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^()\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
ISSUE_REF = re.compile(r"(?<![\w/#])#\d+\b")
HEX_TOKEN = re.compile(r"\b[0-9a-f]{7,40}\b")
# An abbreviated hash can be all digits (2896272). Prose writes numbers with thousands separators
# (60,000), so a bare run of 7+ digits outside code is taken for a hash too.
DIGIT_TOKEN = re.compile(r"(?<![\w.,])\d{7,40}(?![\w.,]\d|\w)")
# Hex-looking tokens that are not commit hashes, each with the reason it is allowed. Empty: add
# a token here (not a pattern) only for a legitimate value such as a digest quoted in a table.
ALLOWED_HEX: dict[str, str] = {}


def doc_pages() -> list[pathlib.Path]:
    """README.md and docs/*.md; docs/results/** is excluded (the glob does not recurse)."""
    return [README, *sorted(DOCS.glob("*.md"))]


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks."""
    lines, fenced, marker = [], False, ""
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if match and (not fenced or match.group(1) == marker):
            fenced, marker = not fenced, match.group(1)
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def without_code_spans(line: str) -> str:
    return CODE_SPAN.sub(" ", line)


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: markup removed, lowercase, every character but
    letters, digits, spaces, hyphens and underscores dropped, spaces turned into hyphens."""
    text = CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading anchor of a Markdown page; a repeated slug gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    result = set()
    for _, line in prose_lines(text):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        if slug in seen:
            seen[slug] += 1
            slug = f"{slug}-{seen[slug]}"
        else:
            seen[slug] = 0
        result.add(slug)
    return result


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every Markdown link and image outside code."""
    return [(number, match.group(1)) for number, line in prose_lines(text)
            for match in LINK.finditer(without_code_spans(line))]


def broken_links(page: pathlib.Path, text: str | None = None) -> list[str]:
    """What in `page` (or in `text`, read as if it were that page) does not resolve."""
    text = page.read_text() if text is None else text
    problems = []
    for number, target in links(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http(s), mailto, ...
            continue
        path_part, _, fragment = target.partition("#")
        path = urllib.parse.unquote(path_part)
        resolved = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(REPO)}:{number}: {target}"
        if path and not resolved.exists():
            problems.append(f"{where}: no such file")
            continue
        if not fragment:
            continue
        if resolved.suffix != ".md" or (path and not resolved.is_file()):
            problems.append(f"{where}: an anchor into something that is no Markdown page")
            continue
        page_text = text if resolved == page else resolved.read_text()
        if urllib.parse.unquote(fragment) not in anchors(page_text):
            problems.append(f"{where}: no heading with this anchor")
    return problems


def history_references(name: str, text: str) -> list[str]:
    """Issue numbers and all-digit hashes outside code, and commit-like hex tokens anywhere
    (fenced code included)."""
    found = []
    for number, line in prose_lines(text):
        prose = without_code_spans(line)
        for match in ISSUE_REF.finditer(prose):
            found.append(f"{name}:{number}: issue reference {match.group()}")
        for match in DIGIT_TOKEN.finditer(prose):
            found.append(f"{name}:{number}: commit-like token {match.group()}")
    for number, line in enumerate(text.splitlines(), 1):
        for match in HEX_TOKEN.finditer(line):
            token = match.group()
            if (re.search(r"[0-9]", token) and re.search(r"[a-f]", token)
                    and token not in ALLOWED_HEX):
                found.append(f"{name}:{number}: commit-like token {token}")
    return found


def test_readme_is_short():
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_README_LINES, (
        f"README.md has {lines} lines (at most {MAX_README_LINES}): move detail into docs/")


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_and_anchors_resolve(page):
    assert broken_links(page) == []


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_issue_numbers_or_commit_hashes(page):
    assert history_references(str(page.relative_to(REPO)), page.read_text()) == []


def test_every_docs_page_is_linked_from_the_readme():
    linked = set()
    for _, target in links(README.read_text()):
        path = urllib.parse.unquote(target.partition("#")[0])
        if path and not re.match(r"^[a-z][a-z0-9+.-]*:", path, re.IGNORECASE):
            linked.add((REPO / path).resolve())
    pages = [page for page in doc_pages() if page != README]
    assert pages, "docs/ holds no pages"
    assert [str(p.relative_to(REPO)) for p in pages if p.resolve() not in linked] == []


# --- the checks themselves catch what they are meant to -----------------------------------------

def test_github_slugs():
    assert github_slug("The `tfx` CLI (local engine)") == "the-tfx-cli-local-engine"
    assert github_slug("AVX2-only AMD EPYC, float32 (2026-12-02)") == "avx2-only-amd-epyc-float32-2026-12-02"
    assert github_slug("Ingestion (`benchmarks/ingest_benchmark.py`)") == (
        "ingestion-benchmarksingest_benchmarkpy")
    assert github_slug("Installing TFX 1.21 on an older glibc") == "installing-tfx-121-on-an-older-glibc"
    assert anchors("# A\n## Notes\n```\n# not a heading\n```\n## Notes\n") == {"a", "notes", "notes-1"}


def test_the_checks_fail_on_bad_text():
    page = REPO / "docs" / "example.md"  # need not exist: the text is passed in
    bad = ("# Example\n\n## Present heading\n\n"
           "[ok](#present-heading) [gone](#missing-heading) [no file](nowhere.md)\n"
           "[readme anchor](../README.md#no-such-section) ![img](results/none.png)\n"
           "[web](https://example.com/#12) `#12 in code is fine`\n"
           "Fixed in #12 by 2b553ae, 60,000 images before 2896272 (`ls -l 1234567`).\n")
    problems = broken_links(page, bad)
    assert len(problems) == 4, problems
    assert [p.split(": ")[-1] for p in problems] == [
        "no heading with this anchor", "no such file", "no heading with this anchor", "no such file"]
    found = history_references("example.md", bad)
    assert [f.split(": ", 1)[1] for f in found] == [
        "issue reference #12", "commit-like token 2896272", "commit-like token 2b553ae"]

