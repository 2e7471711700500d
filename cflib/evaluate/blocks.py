"""The blocks a report is made of (paragraphs, tables, figures in sections) and how one
renders as Markdown and as HTML; ``cflib.evaluate.report`` builds and renders whole
reports from them."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    align: str = ""  # one of "l"/"r" per column; default: first left, the rest right


@dataclass
class Figure:
    title: str
    png: bytes


@dataclass
class Section:
    title: str
    blocks: list[str | Table | Figure] = field(default_factory=list)  # str: a paragraph
    code: str | None = None  # a JSON block at the end


def md_table(table: Table) -> list[str]:
    """A table as Markdown lines."""
    align = table.align or "l" + "r" * (len(table.header) - 1)
    rule = "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"
    return [
        "| " + " | ".join(table.header) + " |",
        rule,
        *("| " + " | ".join(row) + " |" for row in table.rows),
    ]


def data_uri(figure: Figure) -> str:
    """A figure as a PNG ``data:`` URI (Markdown and HTML embed it)."""
    return "data:image/png;base64," + base64.b64encode(figure.png).decode()


CSS = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { padding: 0.3rem 0.8rem; border-bottom: 1px solid #ddd; }
td.r, th.r { text-align: right; }
pre { background: #f6f6f6; padding: 1rem; overflow-x: auto; }
figure { margin: 1rem 0; }
"""


def inline(text: str) -> str:
    """Escape text, then render Markdown's **bold** and `code` spans."""
    parts = html.escape(text).split("`")
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"<code>{part}</code>")
        else:
            bold = part.split("**")
            out.append("".join(f"<b>{b}</b>" if j % 2 else b for j, b in enumerate(bold)))
    return "".join(out)


def html_table(table: Table) -> str:
    """A table as HTML; its cells' ``**bold**`` and `` `code` `` spans rendered."""
    align = table.align or "l" + "r" * (len(table.header) - 1)
    cls = ["" if a == "l" else ' class="r"' for a in align]
    head = "".join(f"<th{c}>{html.escape(h)}</th>" for c, h in zip(cls, table.header, strict=True))
    body = "".join(
        "<tr>"
        + "".join(f"<td{c}>{inline(v)}</td>" for c, v in zip(cls, row, strict=True))
        + "</tr>"
        for row in table.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
