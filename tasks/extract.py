"""One shard of extraction: features -> attention maps -> scaled maps -> embeddings + statistics -> rows."""

from __future__ import annotations

import functools
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from prefect import task
from tqdm.auto import tqdm

from tasks.attention import STATISTICS, QAModel, attention_maps, head_statistics, load_qa_model, scale_maps
from tasks.config import ExtractConfig, fingerprint
from tasks.errors import InputError
from tasks.encode import EMBEDDING_DIM, InferenceEncoder, build_encoder, default_batches, resolve_precision
from tasks.squad import Features, ShardPlan, SquadFile, load_squad, plan_shards, shard_features, tokenize
from tasks.storage import RETRIES, Location, is_transient, storage_options
from tasks.store import (
    ShardError,
    ensure_dataset_record,
    published_manifest,
    published_manifests,
    publish_shard,
    remove_stale_staging,
    row_schema,
    rows_table,
    shard_name,
    staging_dir,
)

FORMAT = "squad-attention-atlas/1"
log = logging.getLogger(__name__)
_loading = threading.Lock()  # models and inputs load once per process, also when shard tasks run in threads
_compute_slots: dict[str, threading.Lock] = {}


@dataclass
class Models:
    """What a worker process holds for the whole run: the QA model, the encoder and their device."""

    qa: QAModel
    encoder: InferenceEncoder
    device: torch.device


@dataclass(frozen=True)
class ExtractionPlan:
    """The dataset record (written to dataset.json) and the shards that make the dataset."""

    record: dict
    shards: list[ShardPlan]

    @property
    def fingerprint(self) -> str:
        return self.record["fingerprint"]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@functools.lru_cache(maxsize=2)
def _qa_model(model: str, revision: str | None, seed: int, device: str, credentials: str | None) -> QAModel:
    qa = load_qa_model(model, revision, seed, storage_options(model, credentials))
    qa.model.to(resolve_device(device))
    return qa


@functools.lru_cache(maxsize=2)
def _load_models(model: str, revision: str | None, weights: str, sha256: str | None, seed: int,
                 bn_mode: str, scaling: str, device: str, compile_batch: int | None, credentials: str | None
                 ) -> Models:
    encoder = build_encoder(weights, sha256, seed, bn_mode, normalise=scaling == "map")
    target = resolve_device(device)
    qa = _qa_model(model, revision, seed, device, credentials)
    return Models(qa, InferenceEncoder(encoder, target, compile_batch), target)


def models_for(cfg: ExtractConfig) -> Models:
    """The models for `cfg`, loaded once per process."""
    with _loading:
        return _load_models(cfg.model, cfg.model_revision, cfg.encoder_weights, cfg.encoder_sha256, cfg.seed,
                            cfg.bn_mode, cfg.scaling, cfg.device, cfg.encoder_batch if cfg.compile == "on" else None,
                            cfg.credentials)


def compute_slot(device: torch.device) -> threading.Lock:
    """The lock that lets one shard at a time compute on `device` (and use the shared tokenizer), while the
    shards around it upload."""
    with _loading:
        return _compute_slots.setdefault(str(device), threading.Lock())


@functools.lru_cache(maxsize=2)
def _squad_file(source: str, credentials: str | None, max_context_chars: int) -> SquadFile:
    return load_squad(source, storage_options(source, credentials), max_context_chars)


def squad_file(cfg: ExtractConfig) -> SquadFile:
    """The validated SQuAD file of `cfg`, read once per process."""
    with _loading:
        return _squad_file(cfg.source, cfg.credentials, cfg.max_context_chars)


def resolve(cfg: ExtractConfig) -> ExtractConfig:
    """`cfg` with the device's choices made concrete: precision ('auto', recorded in the dataset) and the batch
    sizes left unset."""
    device = resolve_device(cfg.device)
    bert_batch, encoder_batch = default_batches(device, cfg.max_length)
    return cfg.model_copy(update={"precision": resolve_precision(cfg.precision, device),
                                  "bert_batch": cfg.bert_batch or bert_batch,
                                  "encoder_batch": cfg.encoder_batch or encoder_batch})


COMPILE_MIN_CPU_MAPS = 10_000  # compiling costs ~30 s on 2 cores; a CPU run gains 0.04-0.07 s a map after


def resolve_compile(cfg: ExtractConfig, maps_to_compute: int) -> ExtractConfig:
    """`cfg` with compile 'auto' decided: on GPUs, and on CPUs for runs long enough to repay the compiling."""
    if cfg.compile != "auto":
        return cfg
    on = resolve_device(cfg.device).type == "cuda" or maps_to_compute >= COMPILE_MIN_CPU_MAPS
    return cfg.model_copy(update={"compile": "on" if on else "off"})


def plan_extraction(cfg: ExtractConfig) -> ExtractionPlan:
    """Reads and tokenizes the whole input, loads the models, and builds the dataset record and shard plan.
    Every input error (bad file, unknown model, bad weights) surfaces here, before anything is written.
    `cfg` must be resolved (see `resolve`)."""
    if cfg.precision == "auto":
        raise ValueError("plan_extraction needs a resolved config: call resolve(cfg) first")
    squad = squad_file(cfg)
    models = models_for(cfg)
    features = tokenize(squad.examples, models.qa.tokenizer, cfg.max_length, cfg.doc_stride, cfg.max_query_length)
    shards = plan_shards(features, cfg.shard_size)
    model = {**models.qa.identity, "layers": models.qa.n_layers, "heads": models.qa.n_heads}
    encoder = {**models.encoder.identity, "dim": EMBEDDING_DIM}
    config = cfg.content()
    source = {"location": config.pop("source"), "sha256": squad.sha256,
              "examples": len(squad.examples), "features": len(features)}
    identity = {"config": config, "source_sha256": squad.sha256, "model": model, "encoder": encoder}
    record = {
        "format": FORMAT,
        "fingerprint": fingerprint(identity),
        "config": config,
        "source": source,
        "model": model,
        "encoder": encoder,
        "statistics": list(STATISTICS),
        "shards": {"count": len(shards), "size": cfg.shard_size, "rows_per_feature": model["layers"] * model["heads"]},
    }
    if cfg.shards is not None:
        unknown = sorted(set(cfg.shards) - {p.index for p in shards})
        if unknown:
            raise InputError(f"shards: {unknown} do not exist (the input makes shards 0..{len(shards) - 1})")
        shards = [p for p in shards if p.index in set(cfg.shards)]
    return ExtractionPlan(record, shards)


def _batches(features: Features, size: int) -> Iterator[Features]:
    for start in range(0, len(features), size):
        yield features.take(slice(start, start + size))


def embed_features(batch: Features, models: Models, cfg: ExtractConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings (features * layers * heads, 2048) and statistics (features, layers, heads, n) of a batch, on
    the device: the maps never leave it."""
    device = models.device
    ids = torch.from_numpy(batch.input_ids).long().to(device)
    mask = torch.from_numpy(batch.attention_mask).long().to(device)
    types = torch.from_numpy(batch.token_type_ids).long().to(device)
    maps = attention_maps(models.qa.model, ids, mask, types)
    tokenizer = models.qa.tokenizer
    stats = head_statistics(maps, ids, mask, tokenizer.cls_token_id, tokenizer.sep_token_id)
    flat = maps.flatten(0, 2)
    embeddings = torch.cat([
        models.encoder(scale_maps(chunk, cfg.scaling), cfg.precision)
        for chunk in flat.split(cfg.encoder_batch)
    ])
    return embeddings, stats


class ShardWriter:
    """Writes batches of rows to a Parquet file on a background thread (device-to-host copy, Arrow conversion,
    zstd encoding), so that the device computes the next batch meanwhile. One batch waits at most."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.schema = schema
        self.file = pq.ParquetWriter(path, schema, compression="zstd")
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-writer")
        self.pending: Future | None = None

    def _write(self, batch: Features, embeddings: torch.Tensor, stats: torch.Tensor) -> None:
        self.file.write_table(rows_table(self.schema, batch.feature_id, batch.question_id, batch.span,
                                         embeddings.cpu().numpy(), stats.cpu().numpy()))

    def _wait(self) -> None:
        if self.pending is not None:
            self.pending.result()
            self.pending = None

    def write(self, batch: Features, embeddings: torch.Tensor, stats: torch.Tensor) -> None:
        self._wait()
        self.pending = self.thread.submit(self._write, batch, embeddings, stats)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        try:
            if exc[0] is None:
                self._wait()
        finally:
            self.thread.shutdown(wait=True)
            self.file.close()


def _publish(dest: Location, plan: ShardPlan, local, schema, rows: int, manifest: dict) -> dict:
    """Publishes a staged shard; a permanent storage fault becomes a clear error, a transient one is raised as
    it is, for the task's retries."""
    try:
        return publish_shard(dest, plan.index, local, schema, rows, manifest)
    except ShardError:
        raise
    except Exception as exc:
        if is_transient(exc):
            raise
        raise dest.fault(f"publish {shard_name(plan.index)}", exc) from None


def extract_shard(cfg: ExtractConfig, plan: ShardPlan, record: dict, show_progress: bool = True) -> dict:
    """Computes one shard's rows into a local Parquet file, then verifies and publishes it; returns the
    manifest. The computing holds the device's compute slot; the upload does not, so that the next shard
    computes meanwhile."""
    dest = Location.at(cfg.dest, cfg.credentials)
    squad = squad_file(cfg)
    if squad.sha256 != record["source"]["sha256"]:
        raise InputError(f"{cfg.source}: the file changed since the dataset was planned")
    models = models_for(cfg)
    schema = row_schema(EMBEDDING_DIM, cfg.dtype, STATISTICS)
    rows = plan.n_features * models.qa.n_layers * models.qa.n_heads
    with staging_dir(dest) as staging:
        local = staging / f"{shard_name(plan.index)}.parquet"
        with compute_slot(models.device):
            started = time.perf_counter()
            features = shard_features(squad.examples, plan, models.qa.tokenizer, cfg.max_length, cfg.doc_stride,
                                      cfg.max_query_length)
            bar = tqdm(total=len(features), desc=shard_name(plan.index), unit="feature", disable=not show_progress)
            with ShardWriter(local, schema) as writer, bar:
                for batch in _batches(features, cfg.bert_batch):
                    writer.write(batch, *embed_features(batch, models, cfg))
                    bar.update(len(batch))
            seconds = time.perf_counter() - started
        manifest = _publish(dest, plan, local, schema, rows, {
            "fingerprint": record["fingerprint"],
            "features": [plan.feature_start, plan.feature_stop],
            "examples": [plan.example_start, plan.example_stop],
            "first_span": plan.first_span,
            "seconds": round(seconds, 3),
            "maps_per_second": round(rows / seconds, 2),
        })
    log.info("%s: %d rows published to %s (%.1f maps/s)", shard_name(plan.index), manifest["rows"],
             cfg.dest, manifest["maps_per_second"])
    return manifest


def prepare_destination(cfg: ExtractConfig, plan: ExtractionPlan) -> tuple[str, dict[int, dict]]:
    """Writes or checks dataset.json (a new version where asked), clears what killed runs left, and returns
    where the dataset goes and its published manifests."""
    target = ensure_dataset_record(Location.at(cfg.dest, cfg.credentials), plan.record, cfg.new_version)
    remove_stale_staging(target)
    return target.url, published_manifests(target, plan.fingerprint)


def _published_shard_key(context: Any, inputs: dict[str, Any]) -> str | None:
    """Prefect cache key of a shard task: (fingerprint, shard, manifest hash) once the shard is published in
    the destination, none before. The destination stays the truth: a shard deleted there runs again."""
    cfg, plan, record = inputs["cfg"], inputs["plan"], inputs["record"]
    manifest = published_manifest(Location.at(cfg.dest, cfg.credentials), plan.index, record["fingerprint"])
    if manifest is None:
        return None
    return f"{record['fingerprint']}-{shard_name(plan.index)}-{manifest['sha256'][:16]}"


@task(name="extract-shard", task_run_name="shard-{plan.index}", cache_key_fn=_published_shard_key,
      persist_result=True, result_serializer="json", **RETRIES)
def extract_shard_task(cfg: ExtractConfig, plan: ShardPlan, record: dict) -> dict:
    """Prefect task of one shard; a shard already published in the destination is not recomputed."""
    published = published_manifest(Location.at(cfg.dest, cfg.credentials), plan.index, record["fingerprint"])
    return published or extract_shard(cfg, plan, record)


@task(name="check-destination", **RETRIES)
def check_destination_task(cfg: ExtractConfig) -> None:
    """Prefect task: fail at once where the destination cannot be written, before any model loads."""
    Location.at(cfg.dest, cfg.credentials).check_writable()


@task(name="plan-extraction", **RETRIES)
def plan_extraction_task(cfg: ExtractConfig) -> tuple[ExtractionPlan, str, dict[int, dict]]:
    """Prefect task: plan the dataset and prepare the destination; returns the plan, where the dataset goes
    and what is published there."""
    plan = plan_extraction(cfg)
    return plan, *prepare_destination(cfg, plan)


def config_of(record: dict, dataset: str, credentials: str | None = None) -> ExtractConfig:
    """The extraction config a dataset was made with, as its dataset.json records it."""
    return ExtractConfig(**record["config"], source=record["source"]["location"], dest=dataset,
                         credentials=credentials)


def recompute_maps(record: dict, dataset: str, credentials: str | None, feature_ids: list[int], layers: list[int],
                   heads: list[int]) -> list[np.ndarray]:
    """Attention maps of (feature, layer, head) triples, recomputed with the dataset's model and cropped to
    the feature's real (non-padding) tokens."""
    cfg = config_of(record, dataset, credentials)
    squad = squad_file(cfg)
    if squad.sha256 != record["source"]["sha256"]:
        raise InputError(f"{cfg.source}: differs from the file the dataset {dataset} was made from")
    with _loading:
        qa = _qa_model(cfg.model, cfg.model_revision, cfg.seed, cfg.device, cfg.credentials)
    manifests = published_manifests(Location.at(dataset, credentials), record["fingerprint"]).values()
    wanted = set(feature_ids)
    rows: dict[int, tuple] = {}
    for manifest in manifests:
        start, stop = manifest["features"]
        if any(start <= f < stop for f in wanted):
            plan = ShardPlan.from_manifest(manifest)
            shard = shard_features(squad.examples, plan, qa.tokenizer, cfg.max_length, cfg.doc_stride,
                                   cfg.max_query_length)
            for f in wanted & set(range(start, stop)):
                i = f - start
                rows[f] = (shard.input_ids[i], shard.attention_mask[i], shard.token_type_ids[i])
    order = sorted(rows)
    device = next(qa.model.parameters()).device
    stacked = [torch.from_numpy(np.stack([rows[f][j] for f in order])).long().to(device) for j in range(3)]
    maps = attention_maps(qa.model, *stacked).float().cpu().numpy()
    position = {f: i for i, f in enumerate(order)}
    lengths = {f: int(rows[f][1].sum()) for f in order}
    return [maps[position[f], layer, head, : lengths[f], : lengths[f]]
            for f, layer, head in zip(feature_ids, layers, heads)]
