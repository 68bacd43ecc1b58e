"""Figure text from data (questions, tokens, statistic names) is drawn as it is: `$` is never TeX."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from PIL import Image

from tasks.compare.report import plot_grids
from tasks.extract.exemplars import Exemplar
from tasks.report.figures import plot_exemplars

MALFORMED = r"What does $\frac{ cost, in $ and ^_^?"


def _exemplars(question: str, tokens: list[str]) -> dict:
    attention = np.random.default_rng(0).random((len(tokens), len(tokens)))
    return {0: [(Exemplar(attention, tokens, question), "layer 0 head 1")]}


def _ink(png: bytes) -> int:
    """Dark pixels: how much text and lines the figure holds."""
    return int((np.asarray(Image.open(io.BytesIO(png)).convert("L")) < 128).sum())


def test_malformed_tex_in_a_question_or_a_token_draws_as_text():
    chart = plot_exemplars(_exemplars(MALFORMED, ["[CLS]", "$", r"\frac{", "$x^", "[SEP]"]), "kmeans")
    assert chart.png.startswith(b"\x89PNG")


def test_a_well_formed_dollar_pair_shows_its_dollars_not_maths():
    tokens = ["[CLS]", "x", "[SEP]"]
    dollars = plot_exemplars(_exemplars("Is $x$ big?", tokens), "kmeans").png
    bare = plot_exemplars(_exemplars("Is x big?", tokens), "kmeans").png
    assert _ink(dollars) > _ink(bare) + 20  # two dollar signs drawn; as maths, only an italic x


def test_a_statistic_name_with_tex_in_it_draws_in_the_comparison_grids():
    heads = pd.DataFrame({"layer": [0, 0, 1, 1], "head": [0, 1, 0, 1], "delta_cost": [0.1, -0.2, 0.3, 0.0]})
    chart = plot_grids(heads, {"delta_cost": f"{MALFORMED}: B minus A"}, 2, 2, "statistics", "change")
    assert chart.png.startswith(b"\x89PNG")
