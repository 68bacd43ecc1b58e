"""One shard end to end: features -> attention maps -> scaled maps -> embeddings + statistics + pooled maps + head
divergences -> a verified, published Parquet file and its manifest."""

from __future__ import annotations

import logging
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from tasks.config import ExtractConfig
from tasks.errors import InputError
from tasks.extract.descriptors import POOLED_SIZE, head_divergence, pooled_maps
from tasks.extract.encoder import EMBEDDING_DIM
from tasks.extract.maps import STATISTICS, attention_maps, head_statistics, scale_maps
from tasks.extract.models import Models, compute_slot, models_for, squad_file
from tasks.extract.phases import BATCH, phase
from tasks.extract.tokens import punctuation_ids, token_masks
from tasks.extract.transfer import HostCopier, HostCopy
from tasks.interrupt import raise_if_interrupted
from tasks.squad import Example, Features, ShardPlan, shard_features
from tasks.storage import (
    DatasetRecord, Location, Manifest, RowGroupRecord, ShardFileWriter, is_disk_full, publish_shard, retrying,
    row_schema, shard_name, staging_dir,
)

log = logging.getLogger(__name__)


def _batches(features: Features, size: int) -> Iterator[Features]:
    for start in range(0, len(features), size):
        yield features.take(slice(start, start + size))


@dataclass
class BatchRows:
    """What a batch of features adds to its shard, on the device: `embeddings` (features * layers * heads, 2048),
    `statistics` (features, layers, heads, n), `pooled` maps (features * layers * heads, POOLED_SIZE^2) float16,
    and `head_js`, the sum over the batch's features of the heads' divergences ((layers * heads)^2 float64)."""

    embeddings: torch.Tensor
    statistics: torch.Tensor
    pooled: torch.Tensor
    head_js: torch.Tensor


def embed_features(batch: Features, examples: list[Example], punctuation: np.ndarray, models: Models,
                   cfg: ExtractConfig) -> BatchRows:
    """A batch's rows, computed on the device: the maps never leave it. `punctuation`: a bool per vocabulary id."""
    device = models.device
    with phase("bert"):
        ids = torch.from_numpy(batch.input_ids).long().to(device)
        mask = torch.from_numpy(batch.attention_mask).long().to(device)
        types = torch.from_numpy(batch.token_type_ids).long().to(device)
        maps = attention_maps(models.qa.model, ids, mask, types)
    tokenizer = models.qa.tokenizer
    with phase("statistics"):
        stats = head_statistics(maps, token_masks(batch, examples, tokenizer.cls_token_id, tokenizer.sep_token_id,
                                                  punctuation, device))
    embedded = []
    for chunk in maps.flatten(0, 2).split(cfg.encoder_batch):
        with phase("scaling"):
            scaled = scale_maps(chunk, cfg.scaling)
        with phase("encoder"):
            embedded.append(models.encoder(scaled, cfg.precision))
    with phase("descriptors"):
        lengths = batch.attention_mask.sum(1)  # real tokens come first
        pooled = pooled_maps(maps, torch.from_numpy(lengths).to(device))
        head_js = head_divergence(maps, lengths.tolist(), compiled=cfg.compile in ("on", "graphs"))
    return BatchRows(torch.cat(embedded), stats, pooled, head_js)


class ShardWriter:
    """Writes batches of rows on a background thread (Arrow conversion, zstd encoding, row groups of whole
    features), so that the device computes the next batch meanwhile; the device-to-host copies start here and
    do not hold the device (see `HostCopier`). One batch waits at most."""

    def __init__(self, path: Path, schema: pa.Schema, device: torch.device) -> None:
        self.file = ShardFileWriter(path, schema)
        self.copier = HostCopier(device)
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-writer")
        self.pending: Future | None = None
        self.row_groups: list[RowGroupRecord] = []

    def _write(self, batch: Features, outputs: HostCopy) -> None:
        self.file.write(batch.feature_id, batch.question_id, batch.span, *outputs.arrays())

    def _wait(self) -> None:
        if self.pending is not None:
            self.pending.result()
            self.pending = None

    def write(self, batch: Features, rows: BatchRows) -> None:
        """A batch's rows from the device (embeddings, statistics, pooled maps), written meanwhile."""
        with phase("writer_wait"):
            self._wait()
        with phase("copy"):
            copy = self.copier.start(rows.embeddings, rows.statistics, rows.pooled)
        self.pending = self.thread.submit(self._write, batch, copy)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, kind, *_) -> None:
        """Waits for the last batch and writes the footer; after a failure (here or on the writer thread) closes
        the file without caring whether the footer can be written, so that only the failure is reported."""
        failed = kind is not None
        try:
            if not failed:
                self._wait()
        except BaseException:
            failed = True
            raise
        finally:
            self.thread.shutdown(wait=True)
            if failed:
                self.file.discard()
            else:
                self.row_groups = self.file.close()


@contextmanager
def _named_if_disk_full(dest: Location, name: str) -> Iterator[None]:
    """A full disk while a shard is staged or published: one clear error naming the destination (and for an object
    store the local folder it is staged in) and the shard."""
    try:
        yield
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        raise dest.fault(f"write {name}" if dest.is_local else f"stage {name} in {tempfile.gettempdir()}",
                         exc) from None


# A staged shard's upload is retried on its own, 5 s, 10 s and 20 s apart as flows/retries.py spaces a task's
# retries: a transient fault never makes the task run again, which would compute the shard again.
PUBLISH_ATTEMPTS, PUBLISH_DELAY = 4, 5.0


def _publish(dest: Location, plan: ShardPlan, local: Path, schema: pa.Schema, rows: int, details: dict) -> Manifest:
    """Publishes a staged shard, tried again after a transient fault; a fault that outlasts the retries, or a
    permanent one, becomes one clear error naming the destination and the shard."""
    name = shard_name(plan.index)
    try:
        return retrying(publish_shard, dest, plan.index, local, schema, rows, details, attempts=PUBLISH_ATTEMPTS,
                        delay=PUBLISH_DELAY, what=f"publishing {name} to {dest.url}")
    except InputError:
        raise
    except Exception as exc:
        raise dest.fault(f"publish {name}", exc) from None


def extract_shard(cfg: ExtractConfig, plan: ShardPlan, record: DatasetRecord, show_progress: bool = True) -> Manifest:
    """Computes one shard's rows into a local Parquet file, then verifies and publishes it; returns the
    manifest. The computing holds the device's compute slot; the upload does not, so that the next shard
    computes meanwhile. The upload is retried here, on its own: an upload fault never computes the shard again."""
    dest = Location.at(cfg.dest, cfg.credentials)
    squad = squad_file(cfg)
    if squad.sha256 != record.source.sha256:
        raise InputError(f"{cfg.source}: the file changed since the dataset was planned")
    models = models_for(cfg)
    if models.qa.identity.get("commit") != (record.model.model_extra or {}).get("commit"):
        raise InputError(f"model '{cfg.model}': revision {cfg.model_revision!r} now resolves to commit "
                         f"{models.qa.identity.get('commit')}, the dataset was planned with another")
    schema = row_schema(EMBEDDING_DIM, cfg.dtype, STATISTICS, POOLED_SIZE * POOLED_SIZE)
    rows = plan.n_features * models.qa.n_layers * models.qa.n_heads
    with _named_if_disk_full(dest, shard_name(plan.index)), staging_dir(dest) as staging:
        local = staging / f"{shard_name(plan.index)}.parquet"
        with compute_slot(models.device):
            started = time.perf_counter()
            features = shard_features(squad.examples, plan, models.qa.tokenizer, cfg.max_length, cfg.doc_stride,
                                      cfg.max_query_length)
            bar = tqdm(total=len(features), desc=shard_name(plan.index), unit="feature", disable=not show_progress)
            punctuation = punctuation_ids(models.qa.tokenizer)
            head_js = 0.0
            with ShardWriter(local, schema, models.device) as writer, bar:
                for batch in _batches(features, cfg.bert_batch):
                    raise_if_interrupted()  # a worker thread: no signal reaches it
                    with phase(BATCH):
                        computed = embed_features(batch, squad.examples, punctuation, models, cfg)
                        writer.write(batch, computed)
                    head_js = head_js + computed.head_js
                    bar.update(len(batch))
            seconds = time.perf_counter() - started
        log.info("%s: %d rows computed in %.1f s", shard_name(plan.index), rows, seconds)
        manifest = _publish(dest, plan, local, schema, rows, {
            "fingerprint": record.fingerprint,
            "features": [plan.feature_start, plan.feature_stop],
            "examples": [plan.example_start, plan.example_stop],
            "first_span": plan.first_span,
            "seconds": round(seconds, 3),
            "maps_per_second": round(rows / seconds, 2),
            "row_groups": writer.row_groups,
            "head_js": head_js.cpu().tolist(),
            "head_js_features": len(features),
        })
    log.info("%s: %d rows published to %s (%.1f maps/s)", shard_name(plan.index), manifest.rows,
             cfg.dest, manifest.maps_per_second)
    return manifest
