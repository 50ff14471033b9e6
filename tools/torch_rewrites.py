"""The full-resolution convs of a StyleNet in space-to-depth form, for the GPU (an experiment).

On an H100 the profile of the compiled quality model (benchmarks/results/gpu/run1/profile_compile.txt)
put 37% of its GPU time in cuDNN's kernel for the first 9x9 conv (3 input channels) and 13% in the
last one (3 output channels): tensor cores want channel counts in multiples of 8. In space-to-depth
form by 4 the first conv takes 48 channels to 512 with a 3x3 kernel at 1/16 of the pixels, and the
last 64 to 48: 1.8x the multiply-adds in shapes tensor cores take whole. The output is the same up
to float rounding (see onnx_rewrites.py, which does the same for ONNX Runtime's CPU kernels).

Not measured on a GPU yet: `benchmarks/gpu_bench.py` times `compile` with and without it, so the
next device session can decide whether the compiled engine should use it.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from kernel_tables import space_to_depth_select, space_to_depth_taps
from torch import nn

from rtstyle.model.network import StyleNet


class SpaceToDepthConv(nn.Module):
    """A stride-1, reflect-padded k x k conv, computed as pixel_unshuffle -> conv -> pixel_shuffle.

    The input's sides must be multiples of `block` (StyleNet pads its input to multiples of 4,
    and its last conv runs after two 2x upsamplings).
    """

    def __init__(self, conv: nn.Conv2d, block: int):
        super().__init__()
        kernel = conv.kernel_size[0]
        if (conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1 or conv.padding_mode != "reflect"
                or conv.kernel_size != (kernel, kernel) or (kernel - 1) % block):
            raise ValueError(f"cannot rewrite {conv} in space-to-depth form by {block}")
        self.block, self.pad = block, kernel // 2
        out_channels, in_channels = conv.out_channels, conv.in_channels
        taps = space_to_depth_taps(kernel, block)
        select = torch.from_numpy(space_to_depth_select(kernel, block)).to(conv.weight)
        # pixel_unshuffle orders channels (c, v, w) and pixel_shuffle reads (o, r, q).
        weight = torch.einsum("ocij,rvui,qwxj->orqcvwux", conv.weight.detach(), select, select)
        shape = (out_channels * block * block, in_channels * block * block, taps, taps)
        self.weight = nn.Parameter(weight.reshape(shape), requires_grad=False)
        bias = None if conv.bias is None else conv.bias.detach().repeat_interleave(block * block)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.pad,) * 4, mode="reflect")
        x = F.conv2d(F.pixel_unshuffle(x, self.block), self.weight, self.bias)
        return F.pixel_shuffle(x, self.block)


def outer_convs_space_to_depth(net: StyleNet, block: int = 4) -> StyleNet:
    """A copy of `net` whose first and last convs run in space-to-depth form by `block`."""
    net = copy.deepcopy(net)
    first, last = net.contract[0], net.output
    first.conv = SpaceToDepthConv(first.conv, block)
    last.conv = SpaceToDepthConv(last.conv, block)
    return net
