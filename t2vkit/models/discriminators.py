"""The two discriminators of the stage-1 video Wasserstein autoencoder (Appendix A.2 of seed 000).

- :class:`LatentDiscriminator` (D_z) tells prior samples z̃ ~ N(0, σ²I) from encoded videos E(x).
  Its hidden features give the feature-matching term (Eq. A.4), its logit the loss of Eq. A.5.
- :class:`PatchVideoDiscriminator` (D_v, "PatchHD-Video") tells real clips from reconstructions.
  Its intermediate features give the λ_f term of Eq. A.2, its logits the L_Dv term of Eq. A.3.

Both return their logits *and* their intermediate features, so one forward pass serves both uses.
Table A.2 gives only the sizes (D_z 133k parameters at d_z = 64, D_v 2.6M), not the layouts; the
defaults below are the layouts we chose to land on those sizes, and every size is a config field.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class LatentDiscriminator(nn.Module):
    """D_z: an MLP on flattened latents, ``[B, *latent_shape] -> (logit [B], features [B, hidden[-1]])``.

    Layout: the paper's base MLP (A.3.3: Linear → LayerNorm → activation per hidden layer, a plain
    Linear at the end), with LeakyReLU(0.2) as GAN discriminators usually have. LayerNorm rather
    than BatchNorm because the prior batch and the encoded batch go through D_z separately, and
    batch statistics would let D_z tell them apart by their statistics alone. With hidden widths
    (240, 240, 240), i.e. four linear layers, it has 132,961 parameters at d_z = 64 (Table A.2: 133k).
    """

    def __init__(self, in_dim: int, hidden: tuple[int, ...] = (240, 240, 240)) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("LatentDiscriminator needs at least one hidden layer (its features)")
        layers: list[nn.Module] = []
        dim = in_dim
        for width in hidden:
            layers += [nn.Linear(dim, width), nn.LayerNorm(width), nn.LeakyReLU(0.2)]
            dim = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(dim, 1)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(z.flatten(1))  # [B, hidden[-1]]
        return self.head(features).squeeze(1), features  # [B], [B, hidden[-1]]


class PatchDiscriminator3d(nn.Module):
    """One scale of D_v: Pix2PixHD's NLayerDiscriminator with 3D convolutions.

    conv(k4, s2) → LReLU, then ``layers - 1`` × [conv(k4, s2) → InstanceNorm → LReLU] doubling the
    width, one conv(k4, s1) → InstanceNorm → LReLU doubling it again, and a conv(k4, s1) to a
    1-channel patch map. Padding 2 as in Pix2PixHD, so even a short clip keeps a patch map.
    InstanceNorm (Pix2PixHD's default) keeps each clip's features independent of its batch, which
    matters because real and reconstructed clips are passed separately.
    """

    def __init__(self, channels: int, width: int = 18, layers: int = 3, max_width: int = 512) -> None:
        super().__init__()
        k, p = 4, 2
        widths = [min(width * 2**i, max_width) for i in range(layers + 1)]  # e.g. 18, 36, 72, 144
        blocks: list[nn.Module] = [nn.Sequential(nn.Conv3d(channels, widths[0], k, 2, p), nn.LeakyReLU(0.2))]
        for i in range(1, layers + 1):
            stride = 2 if i < layers else 1
            blocks.append(
                nn.Sequential(
                    nn.Conv3d(widths[i - 1], widths[i], k, stride, p),
                    nn.InstanceNorm3d(widths[i]),
                    nn.LeakyReLU(0.2),
                )
            )
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv3d(widths[-1], 1, k, 1, p)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return self.head(x), features  # [B, 1, t, h, w], layers + 1 maps


class PatchVideoDiscriminator(nn.Module):
    """D_v, "PatchHD-Video": Pix2PixHD's multi-scale patch discriminator for clips ``[B, C, T, H, W]``.

    Scale 0 sees the clip, scale i the clip average-pooled i times (kernel 3, stride 2 in T, H and W,
    as Pix2PixHD pools images). Returns, per scale, the patch logits ``[B, 1, t, h, w]`` and the
    intermediate feature maps. With Pix2PixHD's layout (3 scales, 3 strided layers, kernel 4) in 3D
    and base width 18 it has 2,644,653 parameters for 1-channel clips (Table A.2: 2.6M); Pix2PixHD's
    own width, 64, would give 33M in 3D.
    """

    def __init__(self, channels: int, width: int = 18, layers: int = 3, scales: int = 3) -> None:
        super().__init__()
        if scales < 1 or layers < 1:
            raise ValueError("PatchVideoDiscriminator needs at least one scale and one layer")
        self.scales = nn.ModuleList(PatchDiscriminator3d(channels, width, layers) for _ in range(scales))

    def forward(self, video: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        logits, features = [], []
        x = video
        for i, disc in enumerate(self.scales):
            if i > 0:
                x = downsample(x)
            logit, feats = disc(x)
            logits.append(logit)
            features.append(feats)
        return logits, features


def downsample(x: torch.Tensor) -> torch.Tensor:
    """Pix2PixHD's pooling between scales (kernel 3, stride 2, padding 1) over T, H and W; an axis
    shorter than the kernel (a clip of 2 frames) is left as it is rather than refused."""
    kernel = tuple(3 if n >= 3 else 1 for n in x.shape[2:])
    stride = tuple(2 if k == 3 else 1 for k in kernel)
    padding = tuple(k // 2 for k in kernel)
    return F.avg_pool3d(x, kernel, stride=stride, padding=padding, count_include_pad=False)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["LatentDiscriminator", "PatchDiscriminator3d", "PatchVideoDiscriminator", "count_parameters", "downsample"]
