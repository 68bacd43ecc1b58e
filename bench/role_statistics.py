"""The per-map role statistics on the GPU against the CPU on the same maps (bert-base-random, 384 tokens, the
embedded sample's features), and their time a map on the device.

    python bench/role_statistics.py 8      # features in the batch
"""
import sys
import time

import torch

from tasks.extract.maps import STATISTICS, attention_maps, head_statistics
from tasks.extract.qa_model import BASE_RANDOM_MODEL, load_qa_model
from tasks.extract.tokens import punctuation_ids, token_masks
from tasks.squad.features import tokenize
from tasks.squad.load import load_squad

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
features_n = int(sys.argv[1]) if len(sys.argv) > 1 else 8
squad = load_squad("embedded")
qa = load_qa_model(BASE_RANDOM_MODEL)
qa.model.to(device)
features = tokenize(squad.examples, qa.tokenizer, 384, 128, 64)
batch = features.take(slice(0, features_n))
ids, mask, types = (torch.from_numpy(a).long().to(device) for a in (batch.input_ids, batch.attention_mask, batch.token_type_ids))
punct = punctuation_ids(qa.tokenizer)
maps = attention_maps(qa.model, ids, mask, types)
masks = token_masks(batch, squad.examples, qa.tokenizer.cls_token_id, qa.tokenizer.sep_token_id, punct, device)
if device.type == "cuda":
    torch.cuda.synchronize()
started = time.perf_counter()
for _ in range(5):
    on_device = head_statistics(maps, masks)
if device.type == "cuda":
    torch.cuda.synchronize()
seconds = (time.perf_counter() - started) / 5
cpu_masks = token_masks(batch, squad.examples, qa.tokenizer.cls_token_id, qa.tokenizer.sep_token_id, punct, torch.device("cpu"))
on_cpu = head_statistics(maps.cpu(), cpu_masks)
diff = (on_device.cpu() - on_cpu).abs()
both_nan = on_device.cpu().isnan() == on_cpu.isnan()
print(f"device {device}: {features_n} features x {maps.shape[1]}x{maps.shape[2]} maps, head_statistics {seconds * 1e3:.2f} ms "
      f"a batch ({seconds / (features_n * maps.shape[1] * maps.shape[2]) * 1e6:.2f} us a map)")
print("NaN pattern equal:", bool(both_nan.all()), "; answers in windows:", int(masks.answer.any(-1).sum()))
for i, name in enumerate(STATISTICS):
    print(f"  {name:22s} max |gpu - cpu| {torch.nan_to_num(diff[..., i]).max().item():.2e}  mean {torch.nanmean(on_cpu[..., i]).item():.4f}")
