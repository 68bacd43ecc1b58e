"""Head masking and gradient importance on a real BERT of transformers 5.x: a masked head is exactly the model
with that head's value weights zeroed; a mask of ones changes nothing; the gradient importance finds the one head
that carries the answer."""

from __future__ import annotations

import copy

import pytest
import torch

from tasks.extract.qa_model import TINY_RANDOM_MODEL, load_qa_model
from tasks.importance import head_mask


@pytest.fixture(scope="module")
def model():
    return load_qa_model(TINY_RANDOM_MODEL, seed=0).model.eval()


@pytest.fixture(scope="module")
def batch(model):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, model.config.vocab_size, (3, 24), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}


def _logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        out = model(**batch)
    return torch.cat([out.start_logits, out.end_logits])


def _without_values(model, layer: int, head: int):
    """A copy of `model` whose head's value weights and bias are zero."""
    changed = copy.deepcopy(model)
    value = changed.base_model.encoder.layer[layer].attention.self.value
    size = model.config.hidden_size // model.config.num_attention_heads
    with torch.no_grad():
        value.weight[head * size:(head + 1) * size] = 0
        value.bias[head * size:(head + 1) * size] = 0
    return changed


def _gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def test_a_masked_head_is_the_model_with_its_value_weights_zeroed(model, batch):
    layers, heads = model.config.num_hidden_layers, model.config.num_attention_heads
    mask = torch.ones(layers, heads)
    mask[1, 2] = 0
    with head_mask(model, mask):
        masked = _logits(model, batch)
    zeroed = _logits(_without_values(model, 1, 2), batch)
    torch.testing.assert_close(masked, zeroed, rtol=0, atol=1e-6)
    assert _gap(masked, _logits(model, batch)) > 1e-4, "the head changes the answer logits"
    assert _gap(masked, _logits(_without_values(model, 1, 1), batch)) > 1e-4, "another head is another model"


def test_ones_change_nothing_and_the_hooks_go_with_the_block(model, batch):
    plain = _logits(model, batch)
    with head_mask(model, torch.ones(model.config.num_hidden_layers, model.config.num_attention_heads)):
        torch.testing.assert_close(_logits(model, batch), plain, rtol=0, atol=0)
    with head_mask(model, torch.zeros(model.config.num_hidden_layers, model.config.num_attention_heads)):
        assert _gap(_logits(model, batch), plain) > 1e-4
    torch.testing.assert_close(_logits(model, batch), plain, rtol=0, atol=0)


def test_the_mask_gradient_is_one_number_per_head(model, batch):
    mask = torch.ones(model.config.num_hidden_layers, model.config.num_attention_heads, requires_grad=True)
    with head_mask(model, mask):
        out = model(**batch)
        (grad,) = torch.autograd.grad((out.start_logits.logsumexp(-1) + out.end_logits.logsumexp(-1)).sum(), mask)
    assert grad.shape == mask.shape and torch.isfinite(grad).all() and (grad != 0).all()


def test_a_mask_of_the_wrong_shape_is_named(model):
    with pytest.raises(ValueError, match=r"head mask of shape \(3, 4\); this model needs layers x heads = \(2, 4\)"):
        with head_mask(model, torch.ones(3, 4)):
            pass


def _qa_batches(model, n: int = 3):
    generator = torch.Generator().manual_seed(1)
    for _ in range(n):
        ids = torch.randint(5, model.config.vocab_size, (4, 24), generator=generator)
        starts = torch.randint(1, 20, (4,), generator=generator)
        yield {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids),
               "start_positions": starts, "end_positions": starts + 2}


def _only_head_left(model, layer: int, head: int):
    """A copy of `model` in which every other head's value weights are zero: one head carries the answer."""
    changed = model
    for other_layer in range(model.config.num_hidden_layers):
        for other in range(model.config.num_attention_heads):
            if (other_layer, other) != (layer, head):
                changed = _without_values(changed, other_layer, other)
    return changed


def test_gradient_importance_finds_the_one_head_that_carries_the_answer(model):
    from tasks.importance import gradient_importance, per_layer_normalised

    carrier = _only_head_left(model, 1, 3)
    raw = gradient_importance(carrier, _qa_batches(carrier))
    assert raw.shape == (2, 4) and int(raw.argmax()) == 1 * 4 + 3
    assert (raw.flatten()[torch.arange(8) != 7] == 0).all(), "a head whose values are zero has no gradient"
    model.zero_grad(set_to_none=True)
    wanted = [p.requires_grad for p in model.parameters()]
    normalised = per_layer_normalised(gradient_importance(model, _qa_batches(model)))
    torch.testing.assert_close(normalised.norm(dim=1), torch.ones(2, dtype=torch.float64))
    assert [p.requires_grad for p in model.parameters()] == wanted and all(p.grad is None for p in model.parameters())
