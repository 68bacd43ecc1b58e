"""The report's figures as markdown documents for Prefect artifacts: one document per section, its images as data
URIs, each document small enough for the event that Prefect publishes about an artifact."""

from __future__ import annotations

import dataclasses
import io
import re

from PIL import Image

from tasks.report.html import data_uri
from tasks.report.sections import Section

DOCUMENT_BYTES = 1_000_000  # under Prefect's default PREFECT_EVENTS_MAXIMUM_SIZE_BYTES (1,500,000)
SHRINK_STEP = 0.8


def shrunk_png(png: bytes, limit: int) -> bytes:
    """The PNG itself where it holds at most `limit` bytes, else the image scaled down until it does."""
    if len(png) <= limit:
        return png
    image = Image.open(io.BytesIO(png))
    scale = (limit / len(png)) ** 0.5
    while True:
        size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
        buffer = io.BytesIO()
        image.resize(size, Image.LANCZOS).save(buffer, format="PNG", optimize=True)
        if buffer.tell() <= limit or size == (1, 1):
            return buffer.getvalue()
        scale *= SHRINK_STEP


def _key(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def gallery_documents(sections: list[Section], limit: int = DOCUMENT_BYTES) -> dict[str, str]:
    """For each section with figures, a key made of its title and a markdown document (title, text, figures)
    of at most `limit` bytes: each figure's PNG shrunk to its share of the room left (base64 is 4/3 larger)."""
    documents = {}
    for section in (s for s in sections if s.figures):
        head = f"## {section.title}\n\n{section.text}"
        captions = sum(len(f.title.encode()) + 40 for f in section.figures)
        room = max(limit - len(head.encode()) - captions, 0) * 3 // 4 // len(section.figures)
        figures = [dataclasses.replace(f, png=shrunk_png(f.png, room)) for f in section.figures]
        documents[_key(section.title)] = "\n\n".join([head, *(f"![{f.title}]({data_uri(f)})" for f in figures)])
    return documents
