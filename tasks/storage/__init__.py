"""Where bytes live and the dataset format: locations and credentials, faults and retries, records, rows,
shards written, published, leased and read back verified.

The public face of the stage: other stages and the flows import only these names, from `tasks.storage`;
each is imported from its module when first used."""

from tasks.exports import public_face

__all__, __getattr__, __dir__ = public_face(__name__, {
    "credentials": ["protocol_of", "storage_options"],
    "dataset": ["dataset_record", "ensure_dataset_record", "newest_complete"],
    "faults": ["StorageError", "is_disk_full", "is_transient", "retrying"],
    "lease": ["check_free", "destination_lease"],
    "location": ["Location", "cache_dir"],
    "reading": ["BytesRead", "read_rows"],
    "records": ["DatasetRecord", "FORMAT", "Manifest", "RowGroupRecord", "head_js_sum"],
    "rows": ["KEY_COLUMNS", "POOLED", "embedding_matrix", "pooled_matrix", "row_schema"],
    "shards": [
        "ShardError", "manifest_listing", "publish_shard", "published_manifests", "readable_manifests",
        "remove_stale_staging", "select_manifests", "shard_name", "staging_dir",
    ],
    "writer": ["ShardFileWriter", "file_sha256"],
})
