"""Two datasets of the same features compared head by head: alignment, paired rows on one joint PCA, shift,
migration, role changes, findings, report and the explorer's diff page.

The public face of the stage: other stages and the flows import only these names, from `tasks.compare`;
each is imported from its module when first used."""

from tasks.exports import public_face

__all__, __getattr__, __dir__ = public_face(__name__, {
    "alignment": ["Pair", "check_first_rows", "open_pair"],
    "demo": ["compared_folders", "demo_configs"],
    "explorer": ["diff_explorer", "maps_unavailable"],
    "findings": ["compare_findings"],
    "outputs": ["write_compare_outputs"],
    "paired": ["PairedRows", "read_pairs"],
    "report": ["compare_sections"],
    "summary": ["CompareSummary", "summarise"],
    "tables": ["Comparison", "compare_rows"],
})
