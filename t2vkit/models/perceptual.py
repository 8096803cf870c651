"""VGG19 features for the perceptual term of the stage-1 cost (λ_p in Eq. A.2 of seed 000).

The paper takes the layers ``block4_conv3`` and ``block5_conv4`` (Keras names) of an ImageNet VGG19:
in torchvision's ``vgg19().features`` those are the outputs of the ReLUs after ``features[23]`` and
``features[34]``. The network is rebuilt here layer for layer (torchvision is not a dependency) with
the same module indices, so that torchvision's weights load by name.

The weights come only from a ``.safetensors`` file the user names (never from a pickle): the keys
``features.N.weight`` / ``features.N.bias`` of torchvision's layout; other keys (``classifier.*``) are
ignored. To convert torchvision's checkpoint once, on a machine that has torchvision::

    python -c "import torchvision; from safetensors.torch import save_file; \\
      m = torchvision.models.vgg19(weights='IMAGENET1K_V1'); \\
      save_file({'features.' + k: v.contiguous() for k, v in m.features.state_dict().items()}, 'vgg19.safetensors')"

(or, from the downloaded ``vgg19-dcbb9e9d.pth``: ``torch.load(path, weights_only=True)``, keep the
``features.*`` keys, ``save_file`` them). Then ``--set decoder.vgg19=vgg19.safetensors``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from t2vkit.errors import CheckpointError

# torchvision's VGG19 ("E") up to block5: conv widths, "M" = max-pool.
_VGG19 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512)
# Keras name → index (in ``features``) of the ReLU that follows the conv.
LAYERS = {"block4_conv3": 24, "block5_conv4": 35}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG19Features(nn.Module):
    """Frozen VGG19 ``features[:36]``; ``forward(video)`` gives the two perceptual feature maps per frame.

    ``video`` is ``[B, C, T, H, W]`` in [-1, 1] with C = 1 (repeated to RGB) or 3; each frame is
    mapped to [0, 1] and normalised with ImageNet's statistics, as torchvision's weights expect.
    Returns ``[B*T, 512, H/8, W/8]`` (block4_conv3) and ``[B*T, 512, H/16, W/16]`` (block5_conv4).
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for v in _VGG19:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(in_ch, int(v), 3, padding=1), nn.ReLU(inplace=False)]
                in_ch = int(v)
        self.features = nn.Sequential(*layers)  # indices 0..35, as torchvision's vgg19().features[:36]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG19Features:
        return super().train(False)  # always frozen, whatever the caller's mode

    @classmethod
    def from_safetensors(cls, path: str | Path) -> VGG19Features:
        """Load torchvision-layout weights; a missing or mis-shaped tensor is one error naming its key."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        model = cls()
        expected = model.features.state_dict()  # "0.weight", "0.bias", "2.weight", ...
        if not path.is_file():
            raise CheckpointError(f"VGG19 weights not found: {path}")
        state = {}
        try:
            with safe_open(str(path), framework="pt") as fh:
                keys = set(fh.keys())
                for name, tensor in expected.items():
                    key = f"features.{name}"
                    if key not in keys:
                        raise CheckpointError(
                            f"{path}: tensor {key!r} is missing; expected torchvision's vgg19 layout "
                            "(see t2vkit.models.perceptual for the conversion)"
                        )
                    value = fh.get_tensor(key)
                    if tuple(value.shape) != tuple(tensor.shape):
                        raise CheckpointError(
                            f"{path}: tensor {key!r} has shape {tuple(value.shape)}, "
                            f"VGG19 expects {tuple(tensor.shape)}"
                        )
                    state[name] = value.float()
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from None
        model.features.load_state_dict(state, strict=True)
        return model

    def forward(self, video: torch.Tensor) -> list[torch.Tensor]:
        b, c, t, h, w = video.shape
        frames = video.transpose(1, 2).reshape(b * t, c, h, w)  # [B*T, C, H, W]
        if c == 1:
            frames = frames.expand(-1, 3, -1, -1)
        elif c != 3:
            raise ValueError(f"VGG19 perceptual features need 1 or 3 channels, got {c}")
        x = ((frames + 1) / 2 - self.mean) / self.std
        out = []
        last = max(LAYERS.values())
        for i, layer in enumerate(self.features[: last + 1]):
            x = layer(x)
            if i in LAYERS.values():
                out.append(x)
        return out


def perceptual_distance(vgg: VGG19Features, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Σ over the two layers of the mean squared difference of features; ``x`` is the target (no grad)."""
    with torch.no_grad():
        target = vgg(x)
    return torch.stack([(a - b).pow(2).mean() for a, b in zip(target, vgg(y), strict=True)]).sum()
