"""Which heads matter for answering: heads masked in a QA model's forward, their gradient importance (Michel et
al. 2019), each head's ablation against the official SQuAD v2 metric with bootstrap intervals, and the pruning
curve; each unit kept as it finishes, so that a killed run resumes.

The public face of the stage: other stages and the flows import only these names, from `tasks.importance`;
each is imported from its module when first used."""

from tasks.exports import public_face

__all__, __getattr__, __dir__ = public_face(__name__, {
    "gradient": ["gradient_importance", "per_layer_normalised"],
    "heads": ["chosen_heads"],
    "masking": ["attention_projections", "head_mask"],
    "progress": ["GradientRecord", "Progress", "ScoresRecord", "progress_root", "weights_sha256"],
    "pruning": ["IMPORTANCE_ORDER", "PruningStep", "mask_of", "pruning_steps"],
    "reading": ["check_importance_grid", "read_importance"],
    "report": ["importance_sections", "write_importance"],
    "scoring": ["Questions", "Scores", "chosen_questions", "drop", "score"],
    "tables": ["ImportanceFinding", "importance_findings", "importance_table", "pruning_table"],
    "units": ["ablated", "gradient", "pruned", "unmasked"],
})
