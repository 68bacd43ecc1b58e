"""Which heads matter for answering: heads masked in a QA model's forward (and, to come, their gradient importance,
ablation against the SQuAD v2 metric and the pruning curve).

The public face of the stage: other stages and the flows import only these names, from `tasks.importance`;
each is imported from its module when first used."""

from tasks.exports import public_face

__all__, __getattr__, __dir__ = public_face(__name__, {
    "gradient": ["gradient_importance"],
    "masking": ["attention_projections", "head_mask"],
})
