"""Typed records for datasets that tests write by hand (no extraction behind them)."""

from __future__ import annotations

from collections.abc import Sequence

from tasks.storage.records import FORMAT, DatasetRecord


def synthetic_record(fingerprint: str = "fp", layers: int = 2, heads: int = 4, statistics: Sequence[str] = (),
                     shards: int = 1, config: dict | None = None) -> DatasetRecord:
    """dataset.json of a hand-made dataset: no real model or input behind it."""
    return DatasetRecord(
        format=FORMAT, fingerprint=fingerprint, config=config or {}, statistics=list(statistics),
        source={"location": "none", "sha256": "0" * 64, "examples": 0, "features": 0},
        model={"model": "none", "layers": layers, "heads": heads},
        encoder={"encoder": "none", "weights": "none", "bn_mode": "eval", "normalise": True, "dim": 0},
        shards={"count": shards, "size": 1, "rows_per_feature": layers * heads},
    )


def shard_details(fingerprint: str = "fp", features: tuple[int, int] = (0, 1)) -> dict:
    """The manifest fields that describe how a hand-made shard was made."""
    return {"fingerprint": fingerprint, "features": features, "examples": features, "first_span": 0,
            "seconds": 0.0, "maps_per_second": 0.0}
