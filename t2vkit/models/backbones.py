"""The ImageNet backbones of the perceptual metrics, rebuilt layer for layer with torchvision's module
indices (torchvision is not a dependency), so that torchvision's checkpoints load by name:

- AlexNet ``features`` (LPIPS, net='alex'): https://download.pytorch.org/models/alexnet-owt-7be5be79.pth
- VGG16 ``features`` (DISTS): https://download.pytorch.org/models/vgg16-397923af.pth

The 8 hex digits in each file name are the start of the file's SHA-256 (torchvision's convention,
checked by its downloader), so ``sha256sum`` confirms a copy. Either file loads as it is (read with
``torch.load(weights_only=True)``), or converted once to ``.safetensors`` with its ``features.*`` keys,
which is smaller and faster to load::

    python -c "import torch; from safetensors.torch import save_file; \\
      s = torch.load('vgg16-397923af.pth', weights_only=True); \\
      save_file({k: v for k, v in s.items() if k.startswith('features.')}, 'vgg16.safetensors')"

Keys other than ``features.*`` (the classifier) are ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn as nn

from t2vkit.models.weight_files import WeightFile

ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
# torchvision's VGG16 ("D") up to relu5_3: conv widths, "M" = the 2×2 max-pool (DISTS swaps in its L2 pooling).
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


class Backbone(nn.Module):
    """A frozen torchvision ``features`` stack that returns the activations after the modules in ``taps``."""

    def __init__(self, features: nn.Sequential, taps: Sequence[int], name: str) -> None:
        super().__init__()
        self.features = features
        self.taps = tuple(taps)
        self.name = name  # "AlexNet", for messages
        self.requires_grad_(False)
        self.eval()

    def load_torchvision(self, path: str | Path, weights: WeightFile) -> None:
        """Copy torchvision's ``features.N.weight`` / ``features.N.bias`` tensors in; one error per bad file."""
        path = Path(path)
        state = weights.read(path)
        wanted = self.features.state_dict()  # "0.weight", "0.bias", "3.weight", ...
        self.features.load_state_dict(
            {name: weights.tensor(state, f"features.{name}", tuple(t.shape), path) for name, t in wanted.items()}
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features[: self.taps[-1] + 1]):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out


def alexnet() -> Backbone:
    """AlexNet ``features[:12]`` tapped after its five ReLUs (LPIPS' relu1 … relu5): 64, 192, 384, 256 and
    256 channels at about H/4, H/8, H/16, H/16, H/16 (a 64×64 frame gives 15², 7², 3², 3², 3²)."""
    features = nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(),  # 0, 1
        nn.MaxPool2d(3, 2),  # 2
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),  # 3, 4
        nn.MaxPool2d(3, 2),  # 5
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),  # 6, 7
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),  # 8, 9
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),  # 10, 11
    )  # fmt: skip
    return Backbone(features, taps=(1, 4, 7, 9, 11), name="AlexNet")


def vgg16(pool: Callable[[int], nn.Module] | None = None) -> Backbone:
    """VGG16 ``features[:30]`` tapped at relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3 (indices 3, 8, 15,
    22, 29); ``pool(channels)`` builds each of the four pooling layers (torchvision's 2×2 max-pool by default)."""
    layers: list[nn.Module] = []
    in_ch = 3
    for v in _VGG16:
        if v == "M":
            layers.append(pool(in_ch) if pool else nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(in_ch, int(v), 3, padding=1), nn.ReLU()]
            in_ch = int(v)
    return Backbone(nn.Sequential(*layers), taps=(3, 8, 15, 22, 29), name="VGG16")
