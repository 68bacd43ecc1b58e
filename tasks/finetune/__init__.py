"""Fine-tuning and evaluation of a QA model on SQuAD v2: data, the resumable Trainer run, the official metrics.

The public face of the stage: other stages and the flows import only these names, from `tasks.finetune`;
each is imported from its module when first used."""

from tasks.exports import public_face

__all__, __getattr__, __dir__ = public_face(__name__, {
    "data": ["QADataset", "answer_positions", "labelled_features"],
    "evaluate": ["evaluate", "predict_logits"],
    "train": ["TrainingResult", "save_model", "train"],
})
