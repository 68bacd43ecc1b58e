"""What a head-importance run has finished, kept as it goes in a local folder named after what the results depend
on, so that a killed run repeated resumes where it stopped: the unmasked scores, the gradient importance, each
head's ablation and each step of the pruning curves, one typed JSON record each, written whole or not at all."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from tasks.importance.scoring import Scores

R = TypeVar("R", bound=BaseModel)


class ScoresRecord(BaseModel):
    """The questions' scores with some heads masked (`name`: unmasked, a head, a pruning step), and how long
    scoring took."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    masked: list[tuple[int, int]]  # (layer, head)
    exact: list[float]
    f1: list[float]
    seconds: float

    @property
    def scores(self) -> Scores:
        return Scores(np.asarray(self.exact, np.float64), np.asarray(self.f1, np.float64))


class GradientRecord(BaseModel):
    """The gradient importance (layers x heads), per layer normalised and raw, and how long it took."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    importance: list[list[float]]
    raw: list[list[float]]
    examples: int
    seconds: float


def weights_sha256(model: Any) -> str:
    """sha256 of a torch model's parameters and buffers, in name order: the model, whatever it was loaded from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class Progress:
    """The folder `root`/`key` holding a run's finished records; `key` names what they depend on."""

    def __init__(self, root: Path, key: str) -> None:
        self.folder = Path(root) / key

    def _path(self, name: str) -> Path:
        return self.folder / f"{name}.json"

    def load(self, name: str, kind: type[R]) -> R | None:
        """The finished record `name`, or None where it is not there yet."""
        try:
            return kind.model_validate_json(self._path(name).read_bytes())
        except FileNotFoundError:
            return None

    def save(self, name: str, record: BaseModel) -> None:
        """Writes the record whole: a temporary file beside it, renamed over it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=f".{name}.", suffix=".partial")
        with os.fdopen(handle, "w") as file:
            json.dump(record.model_dump(mode="json"), file)
        os.replace(temporary, self._path(name))

    def finished(self) -> int:
        return sum(1 for _ in self.folder.glob("*.json")) if self.folder.is_dir() else 0

    def remove(self) -> None:
        """Removes the run's records once its outputs are written, and the root folder where that leaves it empty."""
        shutil.rmtree(self.folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.folder.parent.rmdir()


def progress_root(out: str, progress: str | None) -> Path:
    """Where a run keeps what it has finished: --progress, or .NAME.progress beside --out."""
    if progress is not None:
        return Path(progress)
    target = Path(out).expanduser().resolve()
    return target.with_name(f".{target.name}.progress")
