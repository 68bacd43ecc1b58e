"""ResNet-50 encoder: weights loading and verification, input preparation, faithful BatchNorm."""

from __future__ import annotations

import functools
import hashlib

import pytest
import torch
from torch import nn
from torchvision.models import resnet18, resnet50

from tasks.device import gpu_batches, resolve_precision
from tasks.extract.encoder import (
    EMBEDDING_DIM,
    IMAGENET_MEAN,
    IMAGENET_STD,
    WeightsError,
    build_encoder,
    reference_embed,
    to_images,
)
from tasks.extract.inference import InferenceEncoder


@pytest.fixture(scope="module")
def backbone_file(tmp_path_factory):
    """A ResNet-50 state dict with non-trivial BatchNorm parameters and statistics, plus a classifier."""
    torch.manual_seed(1)
    model = resnet50(weights=None)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("weights") / "resnet50.pth"
    torch.save(model.state_dict(), path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def scaled_maps():
    generator = torch.Generator().manual_seed(0)
    return torch.rand(3, 64, 64, generator=generator) * 255


def _reference(path) -> nn.Module:
    model = resnet50(weights=None)
    model.load_state_dict(torch.load(path, weights_only=True))
    model.fc = nn.Identity()
    return model


def test_eval_mode_equals_torchvision_with_the_same_weights(backbone_file, scaled_maps):
    path, digest = backbone_file
    encoder = build_encoder(str(path), sha256=digest)
    assert encoder.identity["sha256"] == digest
    images = to_images(scaled_maps, normalise=True)
    expected = _reference(path).eval()(images)
    actual = reference_embed(encoder, scaled_maps)
    assert actual.shape == (3, EMBEDDING_DIM)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


def test_faithful_batchnorm_equals_the_originals_train_mode_forward_one_map_at_a_time(backbone_file, scaled_maps):
    """Compared in float64: the equivalence is exact, float32 would only add rounding."""
    path, _ = backbone_file
    encoder = build_encoder(str(path), bn_mode="faithful", normalise=False).module.double()
    reference = _reference(path).double().train()
    images = to_images(scaled_maps.double(), normalise=False)
    with torch.no_grad():
        expected = torch.cat([reference(image[None]) for image in images])
        actual = encoder(images)
        eval_mode = build_encoder(str(path), normalise=False).module.double()(images)
    torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-9)
    assert not torch.allclose(eval_mode, expected, rtol=1e-2), "the two bn modes really differ"


def test_per_sample_batchnorm_is_instance_norm_on_every_device_path():
    """The CPU path (training-mode BatchNorm one sample at a time) and the GPU path (instance_norm) agree."""
    import torch.nn.functional as F

    from tasks.extract.encoder import PerSampleBatchNorm2d

    bn = nn.BatchNorm2d(6).double()
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-0.5, 0.5)
    x = torch.randn(3, 6, 5, 7, dtype=torch.float64) * 4 + 2
    expected = F.instance_norm(x, weight=bn.weight, bias=bn.bias, eps=bn.eps)
    for layout in (torch.contiguous_format, torch.channels_last):
        torch.testing.assert_close(PerSampleBatchNorm2d(bn)(x.contiguous(memory_format=layout)), expected,
                                   rtol=1e-12, atol=1e-12)


def test_input_images_replicate_the_map_with_or_without_imagenet_normalisation(scaled_maps):
    raw = to_images(scaled_maps, normalise=False)
    assert raw.shape == (3, 3, 64, 64)
    for channel in range(3):
        assert torch.equal(raw[:, channel], scaled_maps)
    normalised = to_images(scaled_maps, normalise=True)
    for channel in range(3):
        expected = (scaled_maps / 255 - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel]
        torch.testing.assert_close(normalised[:, channel], expected)


def test_random_weights_are_seeded_and_named():
    a, b, c = build_encoder(seed=3), build_encoder(seed=3), build_encoder(seed=4)
    assert a.identity["weights"] == "random-seed3"
    first = lambda e: next(e.module.parameters())  # noqa: E731
    assert torch.equal(first(a), first(b))
    assert not torch.equal(first(a), first(c))


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.double() - expected.double()).norm() / expected.double().norm())


@pytest.mark.parametrize("bn_mode", ["eval", "faithful"])
@pytest.mark.parametrize("normalise", [True, False], ids=["map-scaling", "faithful-scaling"])
def test_inference_encoder_computes_the_reference_function(backbone_file, bn_mode, normalise):
    """Folded BatchNorm and the one-channel stem are exact rewrites: built and run in float64, the two paths
    agree to rounding, at any map size (the stem's border offset depends on the size). In float32 the fast
    path is as close to that exact function as the reference path itself is."""
    exact_encoder = build_encoder(str(backbone_file[0]), bn_mode=bn_mode, normalise=normalise)
    exact_encoder.module.double()
    folded = InferenceEncoder(exact_encoder, torch.device("cpu")).module
    encoder = build_encoder(str(backbone_file[0]), bn_mode=bn_mode, normalise=normalise)
    fast = InferenceEncoder(encoder, torch.device("cpu"))
    generator = torch.Generator().manual_seed(2)
    for size in (64, 40, 64):
        maps = torch.rand(4, size, size, generator=generator) * 255
        with torch.inference_mode():
            exact = exact_encoder.module(to_images(maps.double(), normalise))
            assert _relative_error(folded(maps.double()[:, None]), exact) < 1e-11
        assert _relative_error(fast(maps), exact) <= 2 * _relative_error(reference_embed(encoder, maps), exact)
    if bn_mode == "eval":
        assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.module.modules()), "every BatchNorm folded"
    assert fast.module.conv1.conv.in_channels == 1
    assert next(encoder.module.parameters()).shape[1] == 3, "the reference module is left as built"


@pytest.mark.parametrize("graphs", [False, True])  # CUDA graphs: the same code path up to the capture
def test_the_compiled_encoder_computes_the_same_function_for_full_and_short_batches(backbone_file, graphs):
    encoder = build_encoder(str(backbone_file[0]))
    eager = InferenceEncoder(encoder, torch.device("cpu"))
    compiled = InferenceEncoder(encoder, torch.device("cpu"), compile_batch=4, graphs=graphs)
    torch._dynamo.reset()  # another test's compiled encoder is another module: its first call here compiles
    generator = torch.Generator().manual_seed(5)
    for n in (4, 3, 4):  # a short batch is padded to the compiled shape, not recompiled
        maps = torch.rand(n, 48, 48, generator=generator) * 255
        expected = eager(maps)
        with torch._dynamo.config.patch(error_on_recompile=True):  # a recompile costs up to a minute
            actual = compiled(maps)
        assert actual.shape == (n, EMBEDDING_DIM)
        assert _relative_error(actual, expected) < 1e-4
    assert compiled.compiled, "it really ran compiled (no fallback to eager)"


@pytest.mark.parametrize("device, maps, expected", [("cpu", 1_728, "off"), ("cpu", 50_000, "on"),
                                                    ("cuda", 10, "on")])
def test_compile_auto_is_on_for_gpus_and_long_cpu_runs(device, maps, expected):
    from tasks.config import ExtractConfig
    from tasks.extract.plan import resolve_compile

    assert resolve_compile(ExtractConfig(device=device), maps).compile == expected
    assert resolve_compile(ExtractConfig(device=device, compile="off"), maps).compile == "off"


@pytest.mark.parametrize("bn_mode", ["eval", "faithful"])
def test_bf16_drift_is_small_and_leaves_the_fp32_encoder_alone(backbone_file, bn_mode):
    """At the real map size: per-sample BatchNorm over the last blocks' 2x2 maps of a 64x64 input amplifies
    bf16 rounding (cosine 0.97, with autocast too), over their 12x12 maps at 384x384 it does not."""
    fast = InferenceEncoder(build_encoder(str(backbone_file[0]), bn_mode=bn_mode), torch.device("cpu"))
    maps = torch.rand(2, 384, 384, generator=torch.Generator().manual_seed(0)) * 255
    before = fast(maps, "fp32")
    bf16 = fast(maps, "bf16")
    assert bf16.dtype == torch.float32
    assert torch.cosine_similarity(bf16, before).min() > 0.999
    assert torch.equal(fast(maps, "fp32"), before), "the bf16 copy is a copy"


@pytest.mark.parametrize("flags, expected", [("fpu avx512f avx512_bf16 amx_bf16 amx_tile", "bf16"),
                                             ("fpu avx512f avx512_bf16", "fp32"), ("fpu sse2", "fp32"), ("", "fp32")])
def test_auto_precision_on_cpu_is_bf16_only_with_amx(flags, expected):
    assert resolve_precision("auto", torch.device("cpu"), flags) == expected
    assert resolve_precision("fp16", torch.device("cpu"), flags) == "fp16"


def test_gpu_batches_are_the_measured_ones_on_large_gpus_and_shrink_with_memory():
    gib = 2**30
    assert gpu_batches(80 * gib, 384, "bf16") == gpu_batches(141 * gib, 384, "fp32") == (32, 256)
    assert gpu_batches(80 * gib, 192, "bf16") == (32, 1024)  # a batch's activations the same size
    assert gpu_batches(16 * gib, 384, "fp32") == (9, 113)  # a quarter of 16 GiB: 453 MB a feature, 38 MB a map
    assert gpu_batches(16 * gib, 384, "bf16")[1] == 227
    assert gpu_batches(gib // 4, 384, "fp32") == (1, 1)


def test_wrong_sha256_is_refused(backbone_file):
    path, _ = backbone_file
    with pytest.raises(WeightsError, match=r"resnet50.pth: sha256 is [0-9a-f]{64}, expected 00ff"):
        build_encoder(str(path), sha256="00ff")


def test_other_architecture_is_refused(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18(weights=None).state_dict(), path)
    with pytest.raises(WeightsError, match="resnet18.pth: not a ResNet-50 backbone"):
        build_encoder(str(path))


def test_pickled_code_is_never_executed(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": functools.partial(print, "side effect")}, path)
    with pytest.raises(WeightsError, match="evil.pth: not a loadable tensor file"):
        build_encoder(str(path))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(WeightsError, match="nothing.pth: no such file"):
        build_encoder(str(tmp_path / "nothing.pth"))


def test_url_weights_are_downloaded_once_verified_and_cached(backbone_file, http_folder, tmp_path, monkeypatch):
    path, digest = backbone_file
    folder, base_url, requested = http_folder
    (folder / "resnet50.pth").write_bytes(path.read_bytes())
    monkeypatch.setenv("ATLAS_CACHE", str(tmp_path / "cache"))
    url = f"{base_url}/resnet50.pth"
    first = build_encoder(url, sha256=digest)
    downloads = requested.count("/resnet50.pth")
    second = build_encoder(url, sha256=digest)
    assert requested.count("/resnet50.pth") == downloads, "the second load used the cache"
    with pytest.raises(WeightsError, match="sha256 is"):
        build_encoder(url, sha256="0" * 64)
    assert first.identity == second.identity
    assert first.identity["weights"] == url
    assert torch.equal(next(first.module.parameters()), next(_reference(path).parameters()))
    assert not list((tmp_path / "cache").rglob(".resnet50.pth.*")), "no partial download left behind"


def test_unreachable_url_is_a_clear_error(http_folder, tmp_path, monkeypatch):
    _, base_url, _ = http_folder
    monkeypatch.setenv("ATLAS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(WeightsError, match=f"{base_url}/missing.pth: download failed"):
        build_encoder(f"{base_url}/missing.pth")
    assert not list((tmp_path / "cache").rglob("*.pth*"))
