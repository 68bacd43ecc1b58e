"""What the clusters mean: the heads table, roles and patterns, agreement, the original's findings as numbers
with intervals, stability, and the statistics behind them.

The public face of the stage: other stages and the flows import only these names, from `tasks.research`;
each is imported from its module when first used."""

from tasks.exports import public_face

__all__, __getattr__, __dir__ = public_face(__name__, {
    "findings": ["Finding"],
    "heads": ["cluster_share_grid", "head_clusters_table"],
    "roles": ["PATTERNS", "RoleRules", "available_roles", "has_patterns", "head_roles", "pattern_codes"],
    "source": ["feature_facts", "feature_questions"],
    "statistics": ["benjamini_hochberg", "bootstrap_interval", "swap_signs"],
    "study": ["Study", "StudySettings", "run_study"],
})
