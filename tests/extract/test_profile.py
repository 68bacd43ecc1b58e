"""The profile of a shard's batches (tasks/extract/phases.py, bench/profile_extract.py) and the writer's
device-to-host copies (tasks/extract/transfer.py): labels that cover each batch, the device's idle time, rows that
the copies leave unchanged."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from tasks.config import ExtractConfig
from tasks.extract.encoder import EMBEDDING_DIM
from tasks.extract.maps import STATISTICS
from tasks.extract.phases import BATCH, PHASES, device_idle, device_work, phase_times
from tasks.extract.plan import plan_extraction, resolve
from tasks.extract.shard import BatchRows, ShardWriter, extract_shard
from tasks.extract.transfer import HostCopier
from tasks.squad.features import Features
from tasks.storage.rows import row_schema
from tasks.storage.writer import ShardFileWriter


def test_the_labelled_phases_cover_each_batch(tmp_path):
    cfg = resolve(ExtractConfig(model="tiny-random-bert", max_length=48, doc_stride=24, shard_size=5, shards=[0],
                                precision="fp32", compile="off", bert_batch=2, encoder_batch=6,
                                device="cpu", dest=str(tmp_path / "dataset")))
    plan = plan_extraction(cfg)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        extract_shard(cfg, plan.shards[0], plan.record, show_progress=False)
    times = phase_times(prof.events())
    assert set(times) == {BATCH, *PHASES}
    assert times[BATCH].count == times["bert"].count == times["writer_wait"].count == 3  # 5 features, 2 a batch
    assert times["encoder"].count == times["scaling"].count == 3 + 3 + 2  # 16, 16 and 8 maps, 6 at a time
    labelled = sum(times[name].host_us for name in PHASES)
    assert 0.9 * times[BATCH].host_us < labelled <= times[BATCH].host_us
    assert times["encoder"].host_us > times["copy"].host_us
    assert device_work(prof.events()) == []  # a CPU run: no device activity, no device times
    assert all(t.device_us == 0 for t in times.values())


def test_device_idle_counts_overlapping_work_once_and_the_gaps_between():
    idle = device_idle([(10, 20), (15, 25), (30, 40), (32, 35), (50, 51)])
    assert (idle.span_us, idle.busy_us, idle.idle_us) == (41, 26, 15)
    assert device_idle([]).span_us == 0


def _batch(first: int, n: int, layers: int = 2, heads: int = 3) -> tuple[Features, BatchRows]:
    generator = torch.Generator().manual_seed(first)
    features = Features(
        input_ids=np.zeros((n, 4), np.int64), attention_mask=np.ones((n, 4), np.int64),
        token_type_ids=np.zeros((n, 4), np.int64), offsets=np.zeros((n, 4, 2), np.int64),
        example_index=np.arange(n), feature_id=np.arange(first, first + n), question_id=[f"q{first + i}" for i in range(n)],
        span=np.zeros(n, np.int64))
    statistics = torch.rand(n, layers, heads, len(STATISTICS), generator=generator)
    statistics[0, 0, 0, -1] = torch.nan  # a statistic with no value: written as null
    embeddings = torch.rand(n * layers * heads, EMBEDDING_DIM, generator=generator)
    pooled = torch.rand(n * layers * heads, 256, generator=generator).half()
    return features, BatchRows(embeddings, statistics, pooled, torch.zeros(layers * heads, layers * heads))


def test_the_writer_with_its_host_copies_writes_the_rows_it_is_given(tmp_path):
    schema = row_schema(EMBEDDING_DIM, "float32", STATISTICS, pooled=256)
    batches = [_batch(0, 3), _batch(3, 2), _batch(5, 4)]
    with ShardWriter(tmp_path / "writer.parquet", schema, torch.device("cpu")) as writer:
        for features, rows in batches:
            writer.write(features, rows)
    direct = ShardFileWriter(tmp_path / "direct.parquet", schema)
    for features, rows in batches:
        direct.write(features.feature_id, features.question_id, features.span, rows.embeddings.numpy(),
                     rows.statistics.numpy(), rows.pooled.numpy())
    assert writer.row_groups == direct.close()
    written = pq.read_table(tmp_path / "writer.parquet")
    assert written.num_rows == 9 * 6 and written.equals(pq.read_table(tmp_path / "direct.parquet"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_the_copies_from_a_gpu_land_in_pinned_memory_unchanged():
    device = torch.device("cuda")
    source = [torch.rand(1000, 2048, device=device), torch.rand(8, 12, 12, 3, device=device)]
    expected = [tensor.cpu().numpy() for tensor in source]
    copy = HostCopier(device).start(*source)
    del source  # the copy stream holds the memory until the copy ends
    torch.cuda.empty_cache()
    assert all(tensor.is_pinned() for tensor in copy.tensors)
    for got, want in zip(copy.arrays(), expected):
        np.testing.assert_array_equal(got, want)
