"""The figures' Prefect artifacts: one document per section, each under the size Prefect publishes."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
from PIL import Image

from tasks.report.figures import Chart
from tasks.report.gallery import gallery_documents, shrunk_png
from tasks.report.sections import Section


def _png(side: int, seed: int) -> bytes:
    """Noise: a PNG that compresses badly, about 3 bytes a pixel."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _images(document: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(data)))
            for data in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", document)]


def test_every_section_document_fits_the_limit_and_keeps_every_figure():
    big, small = _png(700, 0), _png(40, 1)
    sections = [Section("K search", "text", [], [Chart("a", "big one", big), Chart("b", "small one", small)]),
                Section("Exemplars (kmeans)", "more text", [], [Chart("c", "big too", _png(600, 2))]),
                Section("No figures", "none", [], [])]
    documents = gallery_documents(sections, limit=400_000)
    assert list(documents) == ["k-search", "exemplars-kmeans"]
    for document in documents.values():
        assert len(document.encode()) <= 400_000
    first = _images(documents["k-search"])
    assert len(first) == 2 and first[0].width < 700 and first[0].width / first[0].height == 1
    assert base64.b64encode(small).decode() in documents["k-search"], "a figure that fits is left as it is"
    assert "## K search\n\ntext" in documents["k-search"] and "![big one](" in documents["k-search"]


def test_a_png_under_the_limit_is_unchanged_and_one_over_it_is_scaled_down_to_fit():
    png = _png(300, 3)
    assert shrunk_png(png, len(png)) == png
    smaller = shrunk_png(png, len(png) // 3)
    assert len(smaller) <= len(png) // 3
    image = Image.open(io.BytesIO(smaller))
    assert 0 < image.width < 300 and image.width == image.height
