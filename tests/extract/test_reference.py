"""The pipeline's fast path (maps kept on the device, fused BatchNorm, one-channel stem, batches, background
writer) against the original's method run step by step (tasks.extract.reference, which bench/extract.py times), end to end
on the same models and features, in every scaling and BatchNorm mode, in float32 on the CPU."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.config import ExtractConfig
from tasks.extract.models import qa_model_for, squad_file
from tasks.extract.plan import plan_extraction, resolve
from tasks.extract.reference import compare, seed_style_reference
from tasks.extract.shard import extract_shard
from tasks.squad.features import shard_features
from tasks.storage.location import Location
from tasks.storage.reading import read_shard
from tasks.storage.rows import embedding_matrix


@pytest.mark.parametrize("scaling", ["map", "faithful"])
@pytest.mark.parametrize("bn_mode", ["eval", "faithful"])
def test_the_pipeline_computes_what_the_originals_method_computes(scaling, bn_mode, tmp_path):
    cfg = resolve(ExtractConfig(model="tiny-random-bert", max_length=48, doc_stride=24, shard_size=3, shards=[0],
                                scaling=scaling, bn_mode=bn_mode, precision="fp32", compile="off",
                                encoder_batch=5, dest=str(tmp_path / "dataset")))
    plan = plan_extraction(cfg)
    extract_shard(cfg, plan.shards[0], plan.record, show_progress=False)
    pipeline = embedding_matrix(read_shard(Location.open(cfg.dest), 0))
    features = shard_features(squad_file(cfg).examples, plan.shards[0], qa_model_for(cfg).tokenizer,
                              cfg.max_length, cfg.doc_stride, cfg.max_query_length)
    reference, _ = seed_style_reference(cfg, features, tmp_path / "reference.csv")
    assert pipeline.shape == reference.shape == (3 * 8, 2048)
    comparison = compare(pipeline, reference)
    # per-map BatchNorm statistics amplify float32 rounding; eval mode keeps it at rounding level
    assert comparison["relative_error"] < (1e-2 if bn_mode == "faithful" else 1e-4), comparison
    assert comparison["min_cosine"] > 0.9999, comparison
    assert not np.allclose(pipeline[0], pipeline[1]), "distinct maps, distinct embeddings"
