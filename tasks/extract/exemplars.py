"""Attention maps of chosen rows, recomputed with the dataset's own model: for the report's exemplars."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from tasks.errors import InputError
from tasks.extract.maps import attention_maps
from tasks.extract.models import qa_model_for, squad_file
from tasks.extract.plan import RecordConfigError, config_of
from tasks.squad import ShardPlan, shard_features
from tasks.storage import DatasetRecord, Location, manifest_listing


class Exemplar(NamedTuple):
    """A recomputed attention map cropped to its feature's real tokens, with those tokens and the question."""

    attention: np.ndarray  # (tokens, tokens), rows are queries
    tokens: list[str]
    question: str


def exemplars_unavailable(record: DatasetRecord, dataset: str, credentials: str | None) -> str | None:
    """Why this version cannot recompute the dataset's maps (its recorded config cannot be rebuilt), or None."""
    try:
        config_of(record, dataset, credentials)
    except RecordConfigError as exc:
        return str(exc)
    return None


def attention_maps_of(record: DatasetRecord, dataset: str, credentials: str | None,
                      keys: Sequence[tuple[int, int, int]], batch: int = 8) -> list[Exemplar]:
    """The attention map of each (feature, layer, head) in `keys`, recomputed with the dataset's model and input,
    `batch` features per forward, cropped to the feature's real (non-padding) tokens."""
    cfg = config_of(record, dataset, credentials)
    squad = squad_file(cfg)
    if squad.sha256 != record.source.sha256:
        raise InputError(f"{cfg.source}: differs from the file the dataset {dataset} was made from")
    qa = qa_model_for(cfg)
    wanted = {feature for feature, _, _ in keys}
    inputs: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    questions: dict[int, str] = {}
    for manifest in manifest_listing(Location.at(dataset, credentials), record.fingerprint)[0].values():
        start, stop = manifest.features
        inside = sorted(f for f in wanted if start <= f < stop)
        if inside:
            shard = shard_features(squad.examples, ShardPlan.from_manifest(manifest), qa.tokenizer, cfg.max_length,
                                   cfg.doc_stride, cfg.max_query_length)
            for f in inside:
                inputs[f] = (shard.input_ids[f - start], shard.attention_mask[f - start], shard.token_type_ids[f - start])
                questions[f] = squad.examples[shard.example_index[f - start]].question
    missing = wanted - set(inputs)
    if missing:
        raise InputError(f"{dataset}: features {sorted(missing)[:5]} are in no published shard")
    device = next(qa.model.parameters()).device
    maps: dict[tuple[int, int, int], Exemplar] = {}
    order = sorted(wanted)
    for i in range(0, len(order), batch):
        features = order[i:i + batch]
        stacked = [torch.from_numpy(np.stack([inputs[f][j] for f in features])).long().to(device) for j in range(3)]
        attention = attention_maps(qa.model, *stacked).float().cpu().numpy()
        for position, f in enumerate(features):
            length = int(inputs[f][1].sum())
            tokens = qa.tokenizer.convert_ids_to_tokens(inputs[f][0][:length].tolist())
            for key in (k for k in keys if k[0] == f):
                maps[key] = Exemplar(attention[position, key[1], key[2], :length, :length], tokens, questions[f])
    return [maps[key] for key in keys]
