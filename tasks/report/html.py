"""report.html: one self-contained page, every figure embedded as a data URI, every table inline."""

from __future__ import annotations

import base64
import html
import json

import pandas as pd

from tasks.report.figures import Chart
from tasks.report.sections import Section


def _table_html(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0, classes="table")


def data_uri(figure: Chart) -> str:
    return "data:image/png;base64," + base64.b64encode(figure.png).decode()


def render_html(title: str, summary: dict, sections: list[Section]) -> str:
    """The page: each section's numbered points, text, figures and tables, then the run's summary."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        parts.append(f"<h2 id='{html.escape(section.title)}'>{html.escape(section.title)}</h2>")
        if section.points:
            parts.append("<ol>" + "".join(f"<li>{html.escape(point)}</li>" for point in section.points) + "</ol>")
        parts.append(f"<p>{html.escape(section.text)}</p>")
        for figure in section.figures:
            parts.append(f"<figure><img alt='{html.escape(figure.title)}' src='{data_uri(figure)}'>"
                         f"<figcaption>{html.escape(figure.title)}</figcaption></figure>")
        for caption, table in section.tables:
            parts.append(f"<h3>{html.escape(caption)}</h3>{_table_html(table)}")
    parts += ["<h2>Run summary</h2>", "<pre>" + html.escape(json.dumps(summary, indent=2)) + "</pre>"]
    style = ("body{font-family:sans-serif;max-width:1300px;margin:auto;padding:1em}img{max-width:100%}"
             ".table{border-collapse:collapse;font-size:13px}.table td,.table th{padding:2px 8px;"
             "border-bottom:1px solid #ddd;text-align:right}figure{margin:1em 0}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
