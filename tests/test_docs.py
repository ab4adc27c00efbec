"""The documentation site's sources: every snippet it includes exists, the CLI page renders."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNIPPET = re.compile(r'^--8<-- "([^":]+)(?::([\w-]+))?"$', re.M)


def test_every_included_snippet_exists_once_in_order():
    included = [m.groups() for page in (ROOT / "docs").glob("*.md") for m in SNIPPET.finditer(page.read_text())]
    assert len(included) >= 9
    for file, section in included:
        text = (ROOT / file).read_text()
        if section is None:
            continue
        start, end = f"--8<-- [start:{section}]", f"--8<-- [end:{section}]"
        assert text.count(start) == 1 and text.count(end) == 1, (file, section)
        assert text.index(start) < text.index(end), (file, section)


def test_the_cli_page_is_the_parser_s_own_help():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    page = hooks.on_page_markdown("# CLI\n\n" + hooks.MARKER, None, None, None)
    assert hooks.MARKER not in page
    from convert2snn.cli.main import VERBS

    assert hooks.VERBS is VERBS  # one list of verbs: a new one cannot be missing from the page
    for verb in VERBS:
        assert f"usage: convert2snn {verb}" in page
    assert "--percentile" in page and "--scale" in page  # convert's option flags and the data flags
