"""The report's HTML pieces: a page with its CSS inlined, sections, tables and images as ``data:``
URIs, so the page is one file that opens offline and can be mailed as it is (no network, no
external script or stylesheet)."""

from __future__ import annotations

import base64
import html
import io

import pandas as pd

from ..errors import plural

__all__ = ["page", "section", "figure", "png_figure", "table", "facts", "note", "escape", "png_bytes", "plural"]

# Readable on a phone and a laptop: one column, images never wider than the screen, wide tables
# scroll sideways inside their own box instead of widening the page.
CSS = """
:root { color-scheme: light; --ink: #1d2330; --muted: #5d6677; --line: #d9dde5; --accent: #2b5fb4; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       background: #f6f7f9; }
main { max-width: 1100px; margin: 0 auto; padding: 12px 16px 48px; }
header { padding: 8px 0 4px; }
h1 { font-size: 1.5em; margin: 0.3em 0; word-break: break-word; }
h2 { font-size: 1.2em; margin: 1.6em 0 0.4em; padding-bottom: 0.2em; border-bottom: 2px solid var(--line); }
h3 { font-size: 1.02em; margin: 1.1em 0 0.3em; }
nav { font-size: 0.92em; }
nav a { margin-right: 0.8em; color: var(--accent); white-space: nowrap; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 4px 16px 14px;
          margin: 14px 0; }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; font-size: 0.88em; margin: 6px 0; }
th, td { padding: 3px 8px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { background: #eef1f6; position: sticky; top: 0; }
td:first-child, th:first-child { text-align: left; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 8px 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; word-break: break-word; }
@media (min-width: 760px) { dl.facts.wide { grid-template-columns: repeat(3, max-content minmax(6em, 1fr)); } }
figure { margin: 14px 0; }
figure img { max-width: 100%; height: auto; display: block; border: 1px solid var(--line); background: #fff; }
figcaption { color: var(--muted); font-size: 0.9em; margin-top: 4px; }
.note { color: var(--muted); font-style: italic; }
.hint { color: var(--muted); font-size: 0.8em; margin: 2px 0; }
p, li, figcaption, .note, .missing { overflow-wrap: anywhere; }  /* a long run-folder path wraps, never widens */
.missing { background: #fff7e6; border-left: 4px solid #e0a400; padding: 6px 10px; }
.big { font-size: 1.6em; font-weight: 600; }
code { font-size: 0.92em; background: #eef1f6; padding: 0 3px; border-radius: 3px; word-break: break-all; }
"""





def escape(text) -> str:
    return html.escape(str(text), quote=True)


def page(title: str, subtitle: str, sections: list[tuple[str, str, str]]) -> str:
    """The whole document: ``sections`` are ``(anchor, heading, body_html)``."""
    nav = " ".join(f'<a href="#{a}">{escape(h)}</a>' for a, h, _ in sections)
    body = "\n".join(section(a, h, b) for a, h, b in sections)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{CSS}</style>
</head>
<body>
<main>
<header><h1>{escape(title)}</h1><div class="note">{escape(subtitle)}</div><nav>{nav}</nav></header>
{body}
</main>
</body>
</html>
"""


def section(anchor: str, heading: str, body: str) -> str:
    return f'<section id="{escape(anchor)}">\n<h2>{escape(heading)}</h2>\n{body}\n</section>'


def png_bytes(fig, dpi: int = 100) -> bytes:
    """A matplotlib Figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def figure(png: bytes, caption: str, alt: str) -> str:
    """One picture inlined as a ``data:`` URI, with the line saying what it computes."""
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(alt)}" loading="eager">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def png_figure(fig, caption: str, alt: str) -> str:
    return figure(png_bytes(fig), caption, alt)


WIDE_TABLE = 8  # columns past which a table is said to scroll (it is wider than a phone, often a laptop's card)


def table(frame: pd.DataFrame, float_format: str = "{:.4g}") -> str:
    """A DataFrame as an escaped HTML table in a box that scrolls sideways on a narrow screen."""
    if frame.empty:
        return note("(empty)")
    text = frame.to_html(index=False, border=0, na_rep="", escape=True,
                         float_format=lambda v: float_format.format(v))
    hint = (f'<p class="hint">{len(frame.columns)} columns: the table scrolls sideways</p>'
            if len(frame.columns) > WIDE_TABLE else "")
    return f'{hint}<div class="scroll">{text}</div>'


def facts(pairs: list[tuple[str, object]], wide: bool = False) -> str:
    """A list of ``(label, value)``: two columns, or with ``wide`` three pairs a row on a laptop
    (one on a phone)."""
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in pairs)
    return f'<dl class="facts{" wide" if wide else ""}">{rows}</dl>'


def note(text: str, missing: bool = False) -> str:
    return f'<p class="{"missing" if missing else "note"}">{escape(text)}</p>'
