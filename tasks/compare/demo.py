"""The offline demo's inputs: MiniLM-L6 (the default extraction) against the same model after a short
fine-tune on the embedded sample, each extracted with the default extraction config."""

from __future__ import annotations

from tasks.config import CompareConfig, ExtractConfig, FinetuneConfig

DEMO_MODEL = "outputs/finetune"
DEMO_B = "outputs/dataset-finetuned"


def demo_configs(cfg: CompareConfig) -> tuple[ExtractConfig, FinetuneConfig, str]:
    """(extraction of A, the fine-tune, where B goes): B is A's extraction with the fine-tuned model. A
    destination holding another config's dataset gets a new version beside it rather than a refusal."""
    return ExtractConfig(new_version=True), FinetuneConfig(max_steps=cfg.demo_steps, out=DEMO_MODEL), DEMO_B


def compared_folders(cfg: CompareConfig) -> list[str]:
    """The folders a comparison reads, and the demo writes: --a and --b, or the demo's two datasets and model."""
    if cfg.a is not None:
        return [cfg.a, cfg.b]
    extraction, tuning, dest_b = demo_configs(cfg)
    return [extraction.dest, dest_b, tuning.out]
