"""The feed-forward stylizer network.

The layout follows Johnson et al. 2016 ("Perceptual Losses for Real-Time Style Transfer"):
a wide first convolution, two stride-2 convolutions, residual blocks at 1/4 resolution,
and a decoder of nearest-neighbour upsampling followed by a convolution, which avoids the
checkerboard artefacts of transposed convolutions (Odena et al. 2016, "Deconvolution and
Checkerboard Artifacts"). Every convolution uses reflection padding and is followed by an
affine instance norm (Ulyanov et al. 2016). With one set of norm scales and shifts per
style this is the conditional-instance-norm network of Dumoulin et al. 2017 ("A Learned
Representation for Artistic Style"): many styles share all conv weights and differ only in
the norm parameters, which is how the built-in styles are stored (see `styles.py`).

Pixels are RGB in 0..1 in and out (a sigmoid closes the net), which keeps activations in
fp16 range, unlike Johnson's 0..255 convention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .spec import BUILTIN_SPECS, SIZE_MULTIPLE, NetworkSpec  # noqa: F401  (re-exported)


class ConvNorm(nn.Module):
    """Optional 2x nearest upsampling, reflection-padded conv, affine instance norm.

    `norm=False`: a conv with a bias and no norm instead (the arbitrary network's encoder).
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, upsample: bool = False,
                 norm: bool = True):
        super().__init__()
        self.upsample = upsample
        self.conv = nn.Conv2d(
            cin, cout, kernel, stride=stride, padding=kernel // 2, padding_mode="reflect", bias=not norm
        )
        self.norm = nn.InstanceNorm2d(cout, affine=True, eps=1e-5) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.norm(self.conv(x))


class ResidualBlock(nn.Module):
    """conv-norm-relu-conv-norm plus identity (He et al. 2016), no activation after the sum."""

    def __init__(self, channels: int):
        super().__init__()
        self.first = ConvNorm(channels, channels, 3)
        self.second = ConvNorm(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.second(F.relu(self.first(x)))


class StyleNet(nn.Module):
    """Image transformation network: (N, 3, H, W) RGB 0..1 -> (N, 3, H, W) RGB 0..1, any H and W."""

    def __init__(self, spec: NetworkSpec):
        super().__init__()
        self.spec = spec
        c0, c1, c2 = spec.contract
        normed = spec.contract_norm
        self.contract = nn.ModuleList([ConvNorm(3, c0, spec.outer_kernel, norm=normed),
                                       ConvNorm(c0, c1, 3, stride=2, norm=normed),
                                       ConvNorm(c1, c2, 3, stride=2, norm=normed)])
        self.res = nn.ModuleList([ResidualBlock(c2) for _ in range(spec.res_blocks)])
        widths = (c2, *spec.expand)
        self.expand = nn.ModuleList(
            [ConvNorm(cin, cout, 3, upsample=True) for cin, cout in zip(widths[:-1], widths[1:])]
        )
        self.output = ConvNorm(widths[-1], 3, spec.outer_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2], x.shape[-1]
        x = self.transform(pad_to_multiple(x, 4))  # 4 == SIZE_MULTIPLE; TorchScript cannot read globals
        return x[..., :height, :width]

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """The network proper, for inputs whose sides are multiples of SIZE_MULTIPLE.

        Compiled backends export this alone and pad outside: shape arithmetic inside a
        traced or exported graph would be frozen to the example's size.
        """
        for layer in self.contract:
            x = F.relu(layer(x))
        for block in self.res:
            x = block(x)
        for layer in self.expand:
            x = F.relu(layer(x))
        return torch.sigmoid(self.output(x))


class PaddedStyleNet(nn.Module):
    """`StyleNet.transform` as a module's forward, for exporters that take one."""

    def __init__(self, net: StyleNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.transform(x)


def pad_to_multiple(x: torch.Tensor, multiple: int, min_side: int = 16) -> torch.Tensor:
    """Pad the bottom and right edges so both sides are multiples of `multiple` and at least `min_side`.

    Reflection matches what the convolutions do at the borders; inputs too small to reflect
    (a few pixels) are replicated instead.
    """
    height, width = x.shape[-2], x.shape[-1]
    pad_h = max(min_side, -(-height // multiple) * multiple) - height
    pad_w = max(min_side, -(-width // multiple) * multiple) - width
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
