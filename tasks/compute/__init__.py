"""Where the work runs: a Dask client attached to a scheduler, or a LocalCUDACluster (one worker per GPU) or
LocalCluster started for the run, for extraction and clustering alike; which backend the GPUs and extras allow.

The public face of the stage: other stages and the flows import only these names, from `tasks.compute`;
each is imported from its module when first used."""

from tasks.exports import public_face

__all__, __getattr__, __dir__ = public_face(__name__, {
    "clusters": ["Compute", "dask_cluster", "local_processes"],
    "gpus": ["Backend", "choose_backend", "visible_gpus"],
})
