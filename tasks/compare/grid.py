"""Per-row measures of the paired rows laid out by feature and head, and their means over groups of heads
(a head, a layer, a third of the layers, everything) with feature-bootstrap intervals: each resample weights
whole features, so the rows of one context stay together."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.research import bootstrap_interval


@dataclass(frozen=True)
class FeatureGrid:
    """values[f, s, m]: measure m of feature f's row at head slot s; NaN where the row is missing or undefined."""

    values: np.ndarray  # float32 (features, slots, measures)
    columns: tuple[str, ...]

    @classmethod
    def of(cls, feature_id: np.ndarray, slot: np.ndarray, n_slots: int, values: np.ndarray, columns: list[str]
           ) -> FeatureGrid:
        """The grid of per-row `values` (rows, measures) at each row's feature and slot."""
        codes = np.unique(feature_id, return_inverse=True)[1].reshape(-1)
        grid = np.full((int(codes.max(initial=-1)) + 1, n_slots, values.shape[1]), np.nan, np.float32)
        grid[codes, slot] = values
        return cls(grid, tuple(columns))

    def _collapsed(self, groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
        """Per feature and group: the sum of the present values and their count, each (features, n_groups * m)."""
        present = ~np.isnan(self.values)
        members = np.zeros((self.values.shape[1], n_groups))
        members[np.arange(len(groups)), groups] = 1
        sums = np.einsum("fsm,sg->fgm", np.where(present, self.values, 0).astype(np.float64), members)
        counts = np.einsum("fsm,sg->fgm", present.astype(np.float64), members)
        return sums.reshape(len(sums), -1), counts.reshape(len(counts), -1)

    def group_means(self, groups: np.ndarray, n_groups: int, resamples: int, seed: int, combine=None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(estimate, low, high), each (n_groups, measures) or what `combine` makes of that array: the mean of
        each measure over the present cells of each group of slots (`groups`: a group index per slot)."""
        sums, counts = self._collapsed(np.asarray(groups), n_groups)
        shape = (n_groups, self.values.shape[2])

        def statistic(w: np.ndarray) -> np.ndarray:
            with np.errstate(invalid="ignore", divide="ignore"):
                means = ((w @ sums) / (w @ counts)).reshape(shape)
            return means if combine is None else combine(means)

        return bootstrap_interval(statistic, np.arange(len(sums)), resamples, seed)
