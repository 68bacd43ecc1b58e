"""Checks of a flow's inputs in the command-line process, before any Prefect server, model or Dask cluster
starts: each raises InputError with one line naming the file or flag and what is wrong."""

from __future__ import annotations

from tasks.compute import choose_backend, visible_gpus
from tasks.compare import check_first_rows, compared_folders, demo_configs, open_pair
from tasks.config import ClusterConfig, CompareConfig, ExtractConfig, FinetuneConfig, ImportanceConfig
from tasks.errors import InputError
from tasks.importance import check_importance_grid, read_importance
from tasks.report import output_folder
from tasks.squad import cached_squad, check_answers, check_windows
from tasks.storage import (
    DatasetRecord, Location, check_free, dataset_record, is_transient, readable_manifests, retrying,
)


def check_extract(cfg: ExtractConfig) -> None:
    """The SQuAD source reads and validates (kept for the flow: this process reads it once), with no mismatched
    answer under --strict-answers; the destination can be written and, unless told to wait, no other live run
    holds it; every question fits the windows with the model's tokenizer (loaded alone, after the storage checks;
    a model at a URL is checked when its features are tokenized); Dask shard workers fit the GPUs."""
    if cfg.runner == "dask":
        check_backend(cfg.scheduler, cfg.backend, cfg.n_workers)
    squad = cached_squad(cfg.source, cfg.credentials, cfg.max_context_chars)
    if cfg.strict_answers:
        check_answers(squad, strict=True)  # else the flow warns, in its log
    dest = Location.at(cfg.dest, cfg.credentials)
    check_writable(dest)
    if not cfg.wait:
        check_free(dest)
    from tasks.extract import load_tokenizer

    tokenizer = load_tokenizer(cfg.model, cfg.model_revision)
    if tokenizer is not None:
        check_windows(squad.examples, tokenizer, cfg.max_length, cfg.doc_stride, cfg.max_query_length)


def check_writable(dest: Location) -> None:
    """`dest` can be written (transient faults retried; one that outlasts the retries is named like any other)."""
    try:
        retrying(dest.check_writable, what=f"{dest.url}: writability check")
    except Exception as exc:
        if is_transient(exc):
            raise dest.fault("write", exc) from None
        raise


def check_backend(scheduler: str | None, backend: str, n_workers: int | None) -> None:
    """A local cluster's backend: 'gpu' has GPUs, and a GPU backend ('gpu', or 'auto' where GPUs are visible) has
    no more --n-workers than GPUs."""
    if scheduler is None and backend != "cpu":
        choose_backend(backend, visible_gpus(), n_workers)


def check_cluster(cfg: ClusterConfig) -> None:
    """--out may be replaced and is not the dataset or above it; the dataset has a dataset.json, the asked shards
    are published (with readable manifests, unless bad shards are skipped), the QA statistic exists; --importance
    reads and holds the model's heads; a GPU backend has GPUs."""
    output_folder(cfg.out, [cfg.dataset])
    check_backend(cfg.compute.scheduler, cfg.compute.backend, cfg.compute.n_workers)
    importance = read_importance(cfg.importance) if cfg.importance else None
    if cfg.newest:
        return  # the dataset is chosen among versions when the flow runs
    dataset = Location.at(cfg.dataset, cfg.credentials)
    record = dataset_record(dataset)
    check_statistic(cfg, record, dataset.url)
    if importance is not None:
        check_importance_grid(importance, record.model.layers, record.model.heads, cfg.importance, record.model.model)
    readable_manifests(dataset, record, cfg.shards, cfg.on_bad_shard)


def check_statistic(cfg: ClusterConfig, record: DatasetRecord, url: str) -> None:
    if cfg.qa_statistic not in record.statistics:
        raise InputError(f"--qa-statistic: {cfg.qa_statistic!r} is not a statistic of {url} "
                         f"({', '.join(record.statistics)})")


def check_full(extraction: ExtractConfig, clustering: ClusterConfig) -> None:
    """--out may be replaced and is not the extraction's destination or above it; the source reads; a GPU
    backend has GPUs."""
    output_folder(clustering.out, [extraction.dest])
    if clustering.importance:
        read_importance(clustering.importance)  # its heads are checked against the model once extracted
    check_extract(extraction)
    check_backend(clustering.compute.scheduler, clustering.compute.backend, clustering.compute.n_workers)


def check_finetune(cfg: FinetuneConfig) -> None:
    """The evaluation file and, unless only evaluating, the training file read and validate; under
    --strict-answers the training file has no mismatched answer (the evaluation scores answers by their text)."""
    for source in [cfg.dev] + ([] if cfg.evaluate_only else [cfg.train]):
        cached_squad(source, cfg.credentials)
    if cfg.strict_answers and not cfg.evaluate_only:
        check_answers(cached_squad(cfg.train, cfg.credentials), strict=True)


def importance_folders(cfg: ImportanceConfig) -> list[str]:
    """The folders a head-importance run reads or writes besides --out: the model, or the demo's fine-tuned one."""
    return [cfg.model or cfg.demo_model]


def check_importance(cfg: ImportanceConfig) -> None:
    """--out may be replaced and is not the model's folder or above it; the SQuAD file reads, with no mismatched
    answer under --strict-answers; with no --model, the demo's fine-tune inputs read."""
    output_folder(cfg.out, importance_folders(cfg))
    squad = cached_squad(cfg.dev, cfg.credentials)
    if cfg.strict_answers:
        check_answers(squad, strict=True)
    if cfg.model is None:
        check_finetune(cfg.demo_tuning())


def check_compare(cfg: CompareConfig) -> None:
    """--out may be replaced and is none of the compared folders or above one; both datasets hold the same
    features and grid (records, shards, the first rows' keys); with neither given, the demo's SQuAD inputs
    read."""
    output_folder(cfg.out, compared_folders(cfg))
    if cfg.a is None:
        extraction, tuning, _ = demo_configs(cfg)
        check_extract(extraction)
        check_finetune(tuning)
        return
    check_first_rows(open_pair(cfg.a, cfg.b, cfg.credentials, cfg.shards))
