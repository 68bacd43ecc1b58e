"""What a run writes for people: tables, figures, sections, report.html, explorer.html, summary.json, and the
output folder replaced whole where that loses nothing.

The public face of the stage: other stages and the flows import only these names, from `tasks.report`;
each is imported from its module when first used."""

from tasks.exports import public_face

__all__, __getattr__, __dir__ = public_face(__name__, {
    "destination": ["output_folder"],
    "explorer": ["ExplorerData", "HEAD_FEATURES", "MapView", "explorer_data"],
    "figures": ["Chart", "PLAIN", "png_bytes"],
    "gallery": ["gallery_documents"],
    "head_map": ["head_map_caption", "head_map_sections"],
    "outputs": ["write_outputs"],
    "research": ["findings_section", "head_grid", "plot_heads_importance"],
    "sections": ["MapSource", "Section", "build_sections", "notes_section", "skipped_notes"],
    "staging": ["swapped_in", "write_pages", "write_tables"],
    "summary": ["ClusterSummary", "RunContext", "summarise"],
    "tables": ["sizes_table"],
})
