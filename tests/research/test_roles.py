"""Role rules on hand-made maps, through the extraction's own statistics: a map with all its mass on [CLS] is
vertical and a [CLS] map, a shifted identity is a previous-token map, a block-diagonal map is block."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from tasks.extract.maps import STATISTICS, TokenMasks, head_statistics
from tasks.research.roles import PATTERNS, RoleRules, head_roles, map_roles, pattern_codes

N = 40  # [CLS] q x 9 [SEP] c x 28 [SEP]; segment A is 0..10


def _masks() -> TokenMasks:
    def mask(positions) -> torch.Tensor:
        out = torch.zeros(1, N, dtype=torch.bool)
        out[0, list(positions)] = True
        return out

    return TokenMasks(real=mask(range(N)), cls=mask([0]), sep=mask([10, 39]), punct=mask([]), question=mask(range(1, 10)),
                      context=mask(range(11, 39)), segment_a=mask(range(11)), answer=mask([16, 17]))


def _statistics(*maps: torch.Tensor) -> pd.DataFrame:
    values = head_statistics(torch.stack(maps)[None, None], _masks())[0, 0]
    return pd.DataFrame(values.numpy(), columns=list(STATISTICS))


def _patterns(stats: pd.DataFrame) -> list[str]:
    return [PATTERNS[c] for c in pattern_codes(stats, RoleRules())]


def test_hand_made_maps_get_their_roles_and_patterns():
    on_cls = torch.zeros(N, N)
    on_cls[:, 0] = 1
    previous = torch.zeros(N, N)
    previous[0, 0] = 1
    previous[torch.arange(1, N), torch.arange(N - 1)] = 1
    block = torch.zeros(N, N)
    block[:11, 1:10] = 1 / 9  # segment A's rows on the question words
    block[11:, 11:39] = 1 / 28  # segment B's rows on the context words
    uniform = torch.full((N, N), 1 / N)
    mixed = 0.45 * on_cls + 0.45 * torch.eye(N) + 0.1 * uniform
    stats = _statistics(on_cls, previous, block, uniform, mixed)
    assert _patterns(stats) == ["vertical", "diagonal", "block", "heterogeneous", "vertical+diagonal"]
    roles = map_roles(stats, RoleRules())
    assert roles.loc[0, "[CLS]"] and not roles.loc[0, "previous token"]
    assert roles.loc[1, "previous token"] and not roles.loc[1, "[CLS]"]
    assert not roles.loc[3].any() and not roles.loc[4].any()  # uniform, and mixed: no target takes half
    assert stats.loc[2, "question_to_context"] == pytest.approx(0) and stats.loc[2, "segment_focus"] == pytest.approx(1)


def test_thresholds_are_configurable_and_head_roles_follow_mean_masses():
    means = pd.DataFrame({"cls_mass": [0.6, 0.45], "prev_mass": [0.1, 0.5001], "sep_mass": [0.0, 0.0]})
    assert head_roles(means, RoleRules()).tolist() == ["[CLS]", "previous token"]
    assert head_roles(means, RoleRules(role_threshold=0.4)).tolist() == ["[CLS]", "[CLS], previous token"]
    stats = _statistics(0.3 * torch.eye(N) + 0.7 * torch.full((N, N), 1 / N))
    assert _patterns(stats) == ["heterogeneous"]
    assert [PATTERNS[c] for c in pattern_codes(stats, RoleRules(role_threshold=0.3))] == ["diagonal"]
