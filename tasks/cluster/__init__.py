"""The clustering: the sample read on Dask workers, PCA, KMeans with its k search, DBSCAN (exact or
DBSCAN++) with its grid, re-clustering, behind one backend protocol (CPU, GPU).

The public face of the stage: other stages and the flows import only these names, from `tasks.cluster`;
each is imported from its module when first used."""

from tasks.exports import public_face

__all__, __getattr__, __dir__ = public_face(__name__, {
    "backend": ["ClusterBackend"],
    "clusterings": ["Clustering", "is_kmeans", "reclustered"],
    "cpu": ["CpuBackend"],
    "dbscan": ["DbscanMethod", "DensitySettings"],
    "density": ["seeded_rows"],
    "gpu": ["GpuBackend"],
    "kmeans": ["capped_rows", "kmeans_fit"],
    "labels": ["NOISE", "cluster_sizes", "nearest_centre", "nearest_to_centre"],
    "reducer": ["Reducer", "capped_components", "fit_reducer"],
    "refit": ["RefitSettings", "refit_clusterings"],
    "resources": ["MemoryBudget", "timed"],
    "run": ["ClusteringRun", "run_clustering"],
    "sample": ["Sample", "SampleSpec", "fit_groups", "fit_vectors", "load_sample", "sampled_rows", "slot_uniform"],
})
