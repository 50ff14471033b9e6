"""The shape of a stylizer network, apart from the network itself.

Kept free of torch so that code which only reads weights (the lean ONNX Runtime path, the
fusion in `weights.py`) can name and compare networks without importing it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

#: The network halves the resolution twice, so inputs are padded to a multiple of this.
SIZE_MULTIPLE = 4
#: The names of the graph's input and output in every ONNX graph of a stylizer (exported, template, tiles).
INPUT, OUTPUT = "image", "stylized"


@dataclass(frozen=True)
class NetworkSpec:
    """Shape of a stylizer. Two specs are the same network iff they compare equal."""

    contract: tuple[int, ...] = (32, 32, 32)  # first conv, then the two stride-2 convs
    res_blocks: int = 6
    expand: tuple[int, ...] = (8, 4)  # upsample+conv stages
    outer_kernel: int = 9  # kernel of the first and the last conv
    #: False: the contract convs carry a bias and no norm (Ghiasi et al.'s arbitrary network,
    #: whose encoder had batch norms folded into its convs); only the later norms take a style.
    contract_norm: bool = True

    def to_json(self) -> str:
        fields = asdict(self)
        if self.contract_norm:  # the default is left out, so older specs keep their JSON (and hashes)
            del fields["contract_norm"]
        return json.dumps(fields, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> NetworkSpec:
        raw = json.loads(text)
        return cls(
            contract=tuple(raw["contract"]),
            res_blocks=int(raw["res_blocks"]),
            expand=tuple(raw["expand"]),
            outer_kernel=int(raw["outer_kernel"]),
            contract_norm=bool(raw.get("contract_norm", True)),
        )


def is_norm_key(key: str) -> bool:
    """Whether a state-dict key is an instance norm's weight or bias: the parameters a style sets."""
    return ".norm." in key


#: The networks the project ships. The quality spec matches the Magenta multi-style network
#: the built-in styles come from; the fast spec is narrower with fewer blocks; the arbitrary spec
#: is the transformer of Ghiasi et al. 2017, whose norms are set from any picture (arbitrary.py).
BUILTIN_SPECS: dict[str, NetworkSpec] = {
    "quality": NetworkSpec(contract=(32, 32, 32), res_blocks=6, expand=(8, 4), outer_kernel=9),
    "fast": NetworkSpec(contract=(16, 32, 32), res_blocks=3, expand=(8, 4), outer_kernel=5),
    "arbitrary": NetworkSpec(contract=(8, 16, 32), res_blocks=5, expand=(16, 8), outer_kernel=9,
                             contract_norm=False),
}
