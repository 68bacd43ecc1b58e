"""SQuAD v2 in: load and validate, features and shard plans, post-processing, the official metrics.

The public face of the stage: other stages and the flows import only these names, from `tasks.squad`;
each is imported from its module when first used."""

from tasks.exports import public_face

__all__, __getattr__, __dir__ = public_face(__name__, {
    "features": ["Features", "ShardPlan", "check_windows", "plan_shards", "shard_features", "tokenize"],
    "load": ["Example", "SquadFile", "cached_squad", "check_answers", "gold_span"],
    "metrics": ["question_scores", "squad_v2_metrics"],
    "postprocess": ["predict_answers"],
})
