"""Adapter math: LoRA and norm deltas, merge/unmerge, blending, strength, the file format."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lora_unfused import attach  # tools/, on the path from conftest
from torch import nn

from rtstyle.errors import AdapterError
from rtstyle.model.adapters import Adapter
from rtstyle.model.loader import BaseModel, adapter_layers, fuse, inject_adapter_layers, set_mix
from rtstyle.model.lora import LoRAConv2d
from rtstyle.model.network import NetworkSpec, StyleNet

TINY = NetworkSpec(contract=(8, 8, 8), res_blocks=1, expand=(4, 4), outer_kernel=3)
CONV_TARGETS = ["contract.1.conv", "res.0.first.conv", "res.0.second.conv", "expand.0.conv"]
NORM_TARGETS = ["res.0.first.norm", "output.norm"]


def tiny_base(seed: int = 0, base_id: str = "tiny") -> BaseModel:
    torch.manual_seed(seed)
    net = StyleNet(TINY)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return BaseModel(base_id, TINY, {k: v.clone() for k, v in net.state_dict().items()})


def random_adapter(base: BaseModel, name: str, seed: int, rank: int = 2, alpha: float = 4.0) -> Adapter:
    gen = torch.Generator().manual_seed(seed)
    net = base.build()
    lora = {}
    for target in CONV_TARGETS:
        conv = net.get_submodule(target)
        a = 0.3 * torch.randn(rank, conv.in_channels, *conv.kernel_size, generator=gen)
        b = 0.3 * torch.randn(conv.out_channels, rank, 1, 1, generator=gen)
        lora[target] = (a.numpy(), b.numpy())
    norm = {}
    for target in NORM_TARGETS:
        channels = net.get_submodule(target).num_features
        norm[target] = (0.2 * torch.randn(channels, generator=gen).numpy(),
                        0.2 * torch.randn(channels, generator=gen).numpy())
    return Adapter(name=name, base_id=base.base_id, base_hash=base.weight_hash, lora=lora, norm=norm, alpha=alpha)


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(2, 3, 37, 50, generator=torch.Generator().manual_seed(1))


def adapted(base: BaseModel, adapters: list[Adapter]) -> StyleNet:
    net = base.build()
    for adapter in adapters:
        attach(net, adapter)
    return net


def test_merged_output_equals_unmerged(images):
    base = tiny_base()
    net = adapted(base, [random_adapter(base, "a", 1)])
    set_mix(net, {"a": 1.0})
    with torch.no_grad():
        unmerged = net(images)
        for layer in adapter_layers(net).values():
            layer.merge()
        merged = net(images)
    assert (unmerged - merged).abs().max().item() <= 1e-5
    # ... and the adapter really changed the output.
    with torch.no_grad():
        assert (merged - base.build()(images)).abs().max().item() > 1e-2


def test_unmerged_layer_is_the_base_conv_plus_a_then_b():
    """The definition of LoRA on a conv: base(x) + w * alpha/r * B(A(x)), A with the base's stride and padding."""
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 5, 3, stride=2, padding=1, padding_mode="reflect", bias=False)
    layer = LoRAConv2d(conv)
    layer.add_adapter("a", rank=3, alpha=6.0)
    nn.init.normal_(layer.lora_B["a"].weight)
    layer.set_weights({"a": 0.7})
    x = torch.randn(2, 6, 17, 23)
    with torch.no_grad():
        expected = conv(x) + 0.7 * (6.0 / 3) * layer.lora_B["a"](layer.lora_A["a"](x))
        assert (layer(x) - expected).abs().max().item() <= 1e-5


def test_unmerge_restores_base_weights():
    base = tiny_base()
    net = adapted(base, [random_adapter(base, "a", 1)])
    set_mix(net, {"a": 0.7})
    layers = adapter_layers(net)
    before = {name: layer.base.weight.detach().clone() for name, layer in layers.items()}
    for layer in layers.values():
        layer.merge()
    assert any(not torch.equal(before[n], layer.base.weight) for n, layer in layers.items())
    for layer in layers.values():
        layer.unmerge()
    for name, layer in layers.items():
        torch.testing.assert_close(layer.base.weight, before[name], atol=1e-6, rtol=0)


def test_fused_equals_unmerged_mix(images):
    base = tiny_base()
    a, b = random_adapter(base, "a", 1), random_adapter(base, "b", 2)
    net = adapted(base, [a, b])
    set_mix(net, {"a": 0.3, "b": 0.5})
    with torch.no_grad():
        torch.testing.assert_close(fuse(base, [(a, 0.3), (b, 0.5)])(images), net(images), atol=1e-5, rtol=0)


def test_strength_zero_is_the_base(images):
    base = tiny_base()
    with torch.no_grad():
        out = fuse(base, [(random_adapter(base, "a", 1), 0.0)])(images)
        assert torch.equal(out, base.build()(images))


def test_blend_one_zero_equals_single_style(images):
    from rtstyle.model.styles import StyleChoice

    base = tiny_base()
    a, b = random_adapter(base, "a", 1), random_adapter(base, "b", 2)
    weights = StyleChoice({"a": 1.0, "b": 0.0}).weights()
    with torch.no_grad():
        blended = fuse(base, [(a, weights["a"]), (b, weights.get("b", 0.0))])(images)
        torch.testing.assert_close(blended, fuse(base, [(a, 1.0)])(images), atol=1e-6, rtol=0)


def test_blend_weights_are_normalised_and_scaled_by_strength():
    from rtstyle.model.styles import StyleChoice

    assert StyleChoice({"a": 3.0, "b": 1.0}, strength=0.5).weights() == {"a": 0.375, "b": 0.125}


def test_save_load_round_trip_is_exact(tmp_path, images):
    base = tiny_base()
    adapter = random_adapter(base, "round", 3)
    adapter.provenance = {"source": "test"}
    adapter.training = {"steps": 10}
    adapter.save(tmp_path / "round.safetensors")
    loaded = Adapter.load(tmp_path / "round.safetensors")
    assert (loaded.name, loaded.base_id, loaded.base_hash, loaded.rank, loaded.alpha) == (
        "round", "tiny", base.weight_hash, 2, 4.0)
    assert loaded.provenance == {"source": "test"} and loaded.training == {"steps": 10}
    for target, (a, b) in adapter.lora.items():
        assert np.array_equal(loaded.lora[target][0], a) and np.array_equal(loaded.lora[target][1], b)
    for target, (s, t) in adapter.norm.items():
        assert np.array_equal(loaded.norm[target][0], s) and np.array_equal(loaded.norm[target][1], t)
    assert all(x.dtype == np.float32 for pair in [*loaded.lora.values(), *loaded.norm.values()] for x in pair)
    with torch.no_grad():
        assert torch.equal(fuse(base, [(loaded, 1.0)])(images), fuse(base, [(adapter, 1.0)])(images))


def test_adapter_for_another_base_is_refused():
    base, other = tiny_base(0), tiny_base(1)
    adapter = random_adapter(other, "foreign", 1)
    with pytest.raises(AdapterError, match="was made for base"):
        fuse(base, [(adapter, 1.0)])


def test_adapter_with_wrong_shapes_is_refused():
    base = tiny_base()
    adapter = random_adapter(base, "a", 1)
    a, b = adapter.lora["res.0.first.conv"]
    adapter.lora["res.0.first.conv"] = (a[:, :3], b)
    with pytest.raises(AdapterError, match="do not fit"):
        fuse(base, [(adapter, 1.0)])


def test_adapter_for_missing_layer_is_refused():
    base = tiny_base()
    net = base.build()
    with pytest.raises(AdapterError, match="no layer"):
        inject_adapter_layers(net, ["res.7.first.conv"], [])


def test_corrupt_adapter_file_is_refused(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all")
    with pytest.raises(AdapterError, match="not a readable"):
        Adapter.load(path)


def test_lora_trains_only_adapter_parameters(images):
    """A fresh adapter starts as a no-op (B = 0) and only its tensors get gradients."""
    base = tiny_base()
    net = base.build()
    inject_adapter_layers(net, CONV_TARGETS, [])
    for layer in adapter_layers(net).values():
        layer.add_adapter("new", rank=2, alpha=2.0)
    set_mix(net, {"new": 1.0})
    with torch.no_grad():
        assert torch.equal(net(images), base.build()(images))
    net(images).mean().backward()
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
