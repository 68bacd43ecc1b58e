"""Head importance beside the atlas, on planted heads tables: the join on (layer, head), the rank correlation with
consistency, the rank-biserial correlation per pattern and role, the dominant cluster's heads against the rest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.errors import InputError
from tasks.importance import check_importance_grid, read_importance
from tasks.research.heads import Resampling
from tasks.research.importance import importance_findings, with_importance

RESAMPLING = Resampling(bootstrap=200, permutations=10, seed=0)


def _heads(n_layers: int = 3, n_heads: int = 4) -> pd.DataFrame:
    n = n_layers * n_heads
    return pd.DataFrame({"layer": np.arange(n) // n_heads, "head": np.arange(n) % n_heads,
                         "consistency_dbscan": np.linspace(0.1, 0.9, n),
                         "dominant_dbscan": np.where(np.arange(n) < 8, 0, 1),
                         "dominant_share_dbscan": np.full(n, 0.8),
                         "pattern": np.where(np.arange(n) % 2 == 0, "vertical", "diagonal"),
                         "roles": np.where(np.arange(n) % 4 == 0, "[CLS]", "")})


def _importance(n: int = 12) -> pd.DataFrame:
    table = pd.DataFrame({"layer": np.arange(n) // 4, "head": np.arange(n) % 4,
                          "importance": np.linspace(0, 1, n) ** 2, "importance_raw": np.arange(n, dtype=float),
                          "f1_drop": np.where(np.arange(n) < 8, 0.5, 3.0)})
    return table.sample(frac=1, random_state=1)  # the join does not depend on the order


def test_the_join_keeps_each_head_with_its_own_numbers():
    joined = with_importance(_heads(), _importance())
    assert list(joined["layer"]) == list(_heads()["layer"])
    assert np.allclose(joined["importance_raw"], np.arange(12))


def test_importance_findings_read_the_planted_relations():
    heads = with_importance(_heads(), _importance())
    labels = np.repeat([0, 0, 0, 1, -1], 10)  # cluster 0 is the largest
    findings = {f.key: f for f in importance_findings(heads, labels, RESAMPLING)}
    assert list(findings) == ["importance-consistency", "importance-roles", "importance-dominant"]
    consistency = findings["importance-consistency"]
    assert consistency.value == pytest.approx(1.0) and consistency.low <= 1.0 <= consistency.high + 1e-12
    roles = findings["importance-roles"]
    assert "pattern diagonal (6 heads)" in roles.text and "role [CLS] (3 heads)" in roles.text
    # the odd heads are each a little more important than the even one before them
    assert roles.text.index("pattern diagonal (6 heads) +0.17") >= 0
    dominant = findings["importance-dominant"]
    assert "The 8 heads" in dominant.text and dominant.value == pytest.approx(0.5 - 3.0)
    assert dominant.low <= dominant.value <= dominant.high


def test_findings_need_what_they_read():
    heads = _heads().assign(importance=np.nan, f1_drop=np.nan)
    assert importance_findings(heads, np.zeros(10, int), RESAMPLING) == []


def test_an_importance_table_is_read_and_checked_in_one_line(tmp_path):
    _importance().to_parquet(tmp_path / "importance.parquet")
    table = read_importance(str(tmp_path))
    check_importance_grid(table, 3, 4, str(tmp_path), "m")
    with pytest.raises(InputError, match=r"are not the 2 x 4 heads of the dataset's model m"):
        check_importance_grid(table, 2, 4, str(tmp_path), "m")
    with pytest.raises(InputError, match=r"--importance .*missing: not found \(give the --out of `atlas importance`"):
        read_importance(str(tmp_path / "missing"))
    _importance().drop(columns=["f1_drop"]).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(InputError, match=r"bad.parquet: field 'f1_drop' is missing"):
        read_importance(str(tmp_path / "bad.parquet"))
    (tmp_path / "text.parquet").write_text("not parquet")
    with pytest.raises(InputError, match=r"text.parquet: not a readable Parquet file"):
        read_importance(str(tmp_path / "text.parquet"))
