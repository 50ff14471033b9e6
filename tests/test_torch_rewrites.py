"""The space-to-depth form of StyleNet's outer convs (tools/torch_rewrites.py, an experiment): the same output."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch_rewrites import SpaceToDepthConv, outer_convs_space_to_depth  # tools/ (a build-time experiment)

from rtstyle.model.loader import fuse, load_base
from rtstyle.model.styles import StyleChoice


@pytest.mark.parametrize("block", [2, 4])
@pytest.mark.parametrize("model", ["quality", "fast", "arbitrary"])
def test_space_to_depth_outer_convs_leave_the_output_alone(model, block):
    net = load_base(model).build().eval()
    rewritten = outer_convs_space_to_depth(net, block)
    assert isinstance(rewritten.contract[0].conv, SpaceToDepthConv)
    assert isinstance(rewritten.output.conv, SpaceToDepthConv)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for shape in [(2, 3, 68, 100), (1, 3, 30, 17)]:  # StyleNet.forward pads the second to multiples of 4
            x = torch.rand(shape, generator=generator)
            assert (rewritten(x) - net(x)).abs().max().item() < 1e-5, shape


def test_a_conv_that_cannot_be_rewritten_is_refused():
    with pytest.raises(ValueError, match="cannot rewrite"):
        SpaceToDepthConv(nn.Conv2d(4, 3, 9, padding=4, padding_mode="zeros"), 4)
    with pytest.raises(ValueError, match="cannot rewrite"):
        SpaceToDepthConv(nn.Conv2d(4, 3, 7, padding=3, padding_mode="reflect"), 4)


@pytest.mark.gpu
def test_compiled_space_to_depth_matches_the_compiled_network_on_cuda():
    from rtstyle.backends.base import create_engine
    from rtstyle.config import EngineConfig

    net = fuse(load_base("quality"), StyleChoice({"mosaic": 1.0}).resolve("quality"))
    config = EngineConfig(backend="compile", device="cuda", precision="fp16")
    plain, rewritten = create_engine(net, config), create_engine(outer_convs_space_to_depth(net), config)
    x = torch.rand(2, 3, 272, 480, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    difference = (plain(x).float() - rewritten(x).float()).abs()
    assert difference.max().item() < 3e-2 and difference.mean().item() < 2e-3
