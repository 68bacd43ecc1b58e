"""Attention maps to embeddings: the QA model and its maps, scaling, per-map statistics, pooled maps and head
divergences, the encoder, one shard end to end, the plan of an extraction and exemplar maps recomputed for
reports.

The public face of the stage: other stages and the flows import only these names, from `tasks.extract`;
each is imported from its module when first used."""

from tasks.exports import public_face

__all__, __getattr__, __dir__ = public_face(__name__, {
    "exemplars": ["Exemplar", "attention_maps_of", "exemplars_unavailable"],
    "models": ["squad_file"],
    "plan": [
        "Destination", "ExtractionPlan", "config_of", "plan_extraction", "prepare_destination", "resolve",
        "resolve_compile",
    ],
    "qa_model": ["QAModel", "load_qa_model", "load_tokenizer"],
    "shard": ["extract_shard"],
})
