"""Planning an extraction: the device's choices made concrete, the dataset record and fingerprint, the shards,
and the destination prepared. Every input error surfaces here, before anything is computed or written."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from tasks.config import ExtractConfig, fingerprint
from tasks.device import default_batches, resolve_device, resolve_precision
from tasks.errors import InputError
from tasks.extract.descriptors import POOLED_SIZE
from tasks.extract.encoder import EMBEDDING_DIM
from tasks.extract.maps import STATISTICS
from tasks.extract.models import encoder_for, qa_model_for, squad_file
from tasks.squad import ShardPlan, check_answers, plan_shards, tokenize
from tasks.storage import (
    DatasetRecord, FORMAT, Location, Manifest, ensure_dataset_record, published_manifests, remove_stale_staging,
)

# Compiling costs tens of seconds on a small CPU; a CPU run repays it from about this many maps.
COMPILE_MIN_CPU_MAPS = 10_000


@dataclass(frozen=True)
class ExtractionPlan:
    """The dataset record (written to dataset.json) and the shards that make the dataset."""

    record: DatasetRecord
    shards: list[ShardPlan]

    @property
    def fingerprint(self) -> str:
        return self.record.fingerprint


@dataclass(frozen=True)
class Destination:
    """Where the dataset goes (the folder itself, or its new version) and the shards published there, by index:
    the one place that decides which shards are done."""

    url: str
    published: dict[int, Manifest]

    def todo(self, plan: ExtractionPlan) -> list[ShardPlan]:
        return [p for p in plan.shards if p.index not in self.published]


def resolve(cfg: ExtractConfig) -> ExtractConfig:
    """`cfg` with the device's choices made concrete: precision ('auto', recorded in the dataset) and the batch
    sizes left unset."""
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    bert_batch, encoder_batch = default_batches(device, cfg.max_length, precision)
    return cfg.model_copy(update={"precision": precision,
                                  "bert_batch": cfg.bert_batch or bert_batch,
                                  "encoder_batch": cfg.encoder_batch or encoder_batch})


def resolve_compile(cfg: ExtractConfig, maps_to_compute: int) -> ExtractConfig:
    """`cfg` with compile 'auto' decided: on GPUs, and on CPUs for runs long enough to repay the compiling."""
    if cfg.compile != "auto":
        return cfg
    on = resolve_device(cfg.device).type == "cuda" or maps_to_compute >= COMPILE_MIN_CPU_MAPS
    return cfg.model_copy(update={"compile": "on" if on else "off"})


def plan_extraction(cfg: ExtractConfig) -> ExtractionPlan:
    """Reads and tokenizes the whole input, loads the QA model and the encoder's weights, and builds the dataset
    record and shard plan. `cfg` must be resolved (see `resolve`)."""
    if cfg.precision == "auto":
        raise ValueError("plan_extraction needs a resolved config: call resolve(cfg) first")
    squad = squad_file(cfg)
    check_answers(squad, cfg.strict_answers)
    qa = qa_model_for(cfg)
    features = tokenize(squad.examples, qa.tokenizer, cfg.max_length, cfg.doc_stride, cfg.max_query_length)
    shards = plan_shards(features, cfg.shard_size)
    model = {**qa.identity, "layers": qa.n_layers, "heads": qa.n_heads}
    encoder = {**encoder_for(cfg).identity, "dim": EMBEDDING_DIM}
    config = cfg.content()
    source = {"location": config.pop("source"), "sha256": squad.sha256,
              "examples": len(squad.examples), "features": len(features)}
    identity = {"config": config, "source_sha256": squad.sha256, "model": model, "encoder": encoder,
                "statistics": list(STATISTICS), "pooled": POOLED_SIZE}
    record = DatasetRecord(
        format=FORMAT, fingerprint=fingerprint(identity), config=config, source=source, model=model,
        encoder=encoder, statistics=list(STATISTICS),
        shards={"count": len(shards), "size": cfg.shard_size, "rows_per_feature": qa.n_layers * qa.n_heads},
    )
    if cfg.shards is not None:
        unknown = sorted(set(cfg.shards) - {p.index for p in shards})
        if unknown:
            raise InputError(f"shards: {unknown} do not exist (the input makes shards 0..{len(shards) - 1})")
        shards = [p for p in shards if p.index in set(cfg.shards)]
    return ExtractionPlan(record, shards)


def prepare_destination(cfg: ExtractConfig, plan: ExtractionPlan) -> Destination:
    """Writes or checks dataset.json (a new version where asked), clears what killed runs left, and reads
    which shards are published there. The caller holds the destination's lease."""
    target = ensure_dataset_record(Location.at(cfg.dest, cfg.credentials), plan.record, cfg.new_version)
    remove_stale_staging(target)
    return Destination(target.url, published_manifests(target, plan.fingerprint))


class RecordConfigError(InputError):
    """A dataset.json's config that this version of the code cannot rebuild (written by an older or newer one)."""


def config_of(record: DatasetRecord, dataset: str, credentials: str | None = None) -> ExtractConfig:
    """The extraction config a dataset was made with, as its dataset.json records it; RecordConfigError, in one
    line naming each field this version cannot take, where it cannot be rebuilt."""
    try:
        return ExtractConfig(**record.config, source=record.source.location, dest=dataset, credentials=credentials)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
        raise RecordConfigError(f"{dataset}: the config in dataset.json cannot be rebuilt by this version of the "
                                f"code ({problems})") from None
