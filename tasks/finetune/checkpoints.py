"""The checkpoints folder of a fine-tune: where it is, and the claim that ties it to one training config."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

from tasks.config import FinetuneConfig, fingerprint
from tasks.errors import InputError
from tasks.storage import cache_dir, protocol_of

RUN_RECORD = "finetune.json"  # in the checkpoints folder: the config that its checkpoints belong to


CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


class CheckpointMismatchError(InputError):
    """The checkpoints folder holds a run made with another config."""


def checkpoints_dir(cfg: FinetuneConfig) -> Path:
    """Where the Trainer keeps checkpoints: the configured folder, OUT/checkpoints for a local OUT, or a
    cache folder named after a remote OUT."""
    if cfg.checkpoints:
        return Path(cfg.checkpoints)
    if protocol_of(cfg.out) == "file":
        return Path(cfg.out.removeprefix("file://")) / "checkpoints"
    return cache_dir() / "finetune" / hashlib.sha256(cfg.out.encode()).hexdigest()[:16] / "checkpoints"


def claim_checkpoints(folder: Path, cfg: FinetuneConfig, train_sha256: str) -> Path | None:
    """Prepares `folder` for this run: records the run's config there, or checks that the checkpoints in it
    belong to the same run; removes checkpoints left half-written by a killed run. Returns the last complete
    checkpoint to resume from, or None."""
    record = {"training": cfg.training_content(), "train_sha256": train_sha256}
    record["fingerprint"] = fingerprint(record)
    existing = folder / RUN_RECORD
    if existing.exists():
        previous = json.loads(existing.read_text())
        if previous.get("fingerprint") != record["fingerprint"]:
            changed = sorted(k for k in {**previous["training"], **record["training"]}
                             if previous["training"].get(k) != record["training"].get(k))
            if previous.get("train_sha256") != train_sha256:
                changed.append("train (file contents)")
            raise CheckpointMismatchError(
                f"{folder}: holds checkpoints of another fine-tune (differs in {', '.join(changed)}); "
                "use another --checkpoints or --out, or remove the folder")
    folder.mkdir(parents=True, exist_ok=True)
    existing.write_text(json.dumps(record, indent=2, sort_keys=True))
    complete = []
    for checkpoint in folder.iterdir():
        match = CHECKPOINT_NAME.match(checkpoint.name)
        if match and (checkpoint / "trainer_state.json").exists():  # the Trainer writes it last
            complete.append((int(match.group(1)), checkpoint))
        elif match:
            shutil.rmtree(checkpoint)
    return max(complete)[1] if complete else None
