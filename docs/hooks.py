"""MkDocs hook: the command-line reference is the parser's own help, rendered at build time."""

from __future__ import annotations

import contextlib
import io
import os

from convert2snn.cli.main import VERBS, main

MARKER = "<!-- cli-help -->"


def _help(argv: list[str]) -> str:
    out = io.StringIO()
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal: the page must not depend on it
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            main(argv)
    finally:
        if columns is None:
            os.environ.pop("COLUMNS")
        else:
            os.environ["COLUMNS"] = columns
    return out.getvalue().rstrip()


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001  (MkDocs' hook signature)
    """Replace the marker with ``convert2snn --help`` and each verb's help, as the installed CLI prints them."""
    if MARKER not in markdown:
        return markdown
    parts = [f"## convert2snn\n\n```text\n{_help(['--help'])}\n```"]
    parts += [f"## convert2snn {verb}\n\n```text\n{_help([verb, '--help'])}\n```" for verb in VERBS]
    return markdown.replace(MARKER, "\n\n".join(parts))
