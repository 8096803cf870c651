"""The typed interface of each plugin kind.

A plugin registers a *class* (the factory) that subclasses one of these. Every factory carries a
``Config`` dataclass; t2vkit builds it from presets, config files and ``--set`` overrides and
calls ``Factory(config)``. Tensor shapes use B = batch, L = tokens, C = channels, T = frames.

This module must stay importable without torch (``t2vkit --help`` and plugin discovery use it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np
    import torch

KINDS = ("encoder", "decoder", "aligner", "sampler", "dataset")


@dataclass
class NoConfig:
    """The config of a plugin that takes no options."""


# --------------------------------------------------------------------------- encoders


@dataclass
class TextEmbedding:
    """What a text encoder returns for a batch of texts."""

    pooled: torch.Tensor  # [B, d]   one vector per text
    tokens: torch.Tensor  # [B, L, d] token states, for cross-attention
    mask: torch.Tensor  # [B, L]    bool, True on real tokens

    def __len__(self) -> int:
        return self.pooled.shape[0]


class TextEncoder(ABC):
    """A frozen text encoder. Subclasses usually also subclass ``torch.nn.Module``."""

    Config: ClassVar[type] = NoConfig
    dim: int  # size of the pooled embedding and of each token state
    max_length: int  # longest input in tokens; longer texts are truncated with a warning

    @property
    @abstractmethod
    def identity(self) -> str:
        """A stable string naming the encoder *and its weights*; keys the embedding cache."""

    @abstractmethod
    def encode(self, texts: Sequence[str]) -> TextEmbedding:
        """Embed a batch of texts (no gradients; the encoder is frozen)."""


# --------------------------------------------------------------------------- decoders


class VideoAutoencoder(ABC):
    """A video autoencoder: E_v (``encode``) and G (``decode``). Generation uses ``decode``.

    Videos are float ``[B, C, T, H, W]`` in [-1, 1]; ``latent_shape`` excludes the batch axis.
    Subclasses are ``torch.nn.Module``s. Their ``Config`` has the fields ``channels``, ``frames``
    and ``size``, which t2vkit fills from the data set (the constructor refuses a clip shape it
    cannot take, with a :class:`t2vkit.errors.ConfigError`).
    """

    Config: ClassVar[type] = NoConfig

    @property
    @abstractmethod
    def latent_shape(self) -> tuple[int, ...]: ...

    @abstractmethod
    def encode(self, video: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def decode(self, z: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def objective(self) -> VideoObjective:
        """The losses (and auxiliary networks) that train this autoencoder in stage 1."""


class VideoObjective(ABC):
    """How stage 1 trains a :class:`VideoAutoencoder`.

    Each training step, the engine calls :meth:`forward` once, then (if there are auxiliary
    networks) :meth:`auxiliary_loss` on the detached outputs and steps the auxiliary optimizer,
    then :meth:`autoencoder_loss` and steps the autoencoder's optimizer. Losses are returned as
    named, already weighted terms; the engine sums, logs and checks each (a NaN names its term).
    """

    def auxiliaries(self) -> dict[str, torch.nn.Module]:
        """Networks trained alongside the autoencoder (discriminators); saved with the run."""
        return {}

    def forward(self, model: VideoAutoencoder, video: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the losses need: at least the latent ``z`` and the reconstruction ``recon``."""
        z = model.encode(video)
        return {"z": z, "recon": model.decode(z)}

    @abstractmethod
    def autoencoder_loss(self, video: torch.Tensor, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    def auxiliary_loss(self, video: torch.Tensor, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Losses of the auxiliary networks; ``out`` is detached from the autoencoder."""
        return {}


# --------------------------------------------------------------------------- aligners


@dataclass
class AlignBatch:
    """One stage-2 training batch: texts, their clips and the frozen stage-1 networks' view of them."""

    text: torch.Tensor  # [B, d_t]  pooled embedding of the clean caption
    text_aug: torch.Tensor  # [B, d_t]  the caption with a noise word inserted (or the clean one)
    latent: torch.Tensor  # [B, *latent_shape]  z_v = E_v(video), from the frozen stage-1 encoder
    video: torch.Tensor  # [B, C, T, H, W] in [-1, 1]
    bucket: torch.Tensor  # [B] long: clips with one bucket id share their semantics
    decode: Callable[[torch.Tensor], torch.Tensor]  # the frozen decoder G; gradients reach its input


class Aligner(ABC):
    """Maps pooled text embeddings ``[B, d_t]`` to video latents ``[B, *latent_shape]``.

    Subclasses are ``torch.nn.Module``s. Their ``Config`` has the fields ``text_dim`` and
    ``latent_shape``, which t2vkit fills from the text encoder and the stage-1 run.
    """

    Config: ClassVar[type] = NoConfig

    @abstractmethod
    def text_to_latent(self, text: torch.Tensor) -> torch.Tensor:
        """The generation path: ``[B, d_t]`` → ``[B, *latent_shape]``."""

    @abstractmethod
    def objective(self) -> AlignObjective:
        """The losses (and auxiliary networks) that train this aligner in stage 2."""

    def text_to_shared(self, text: torch.Tensor) -> torch.Tensor | None:
        """Text in the shared semantic space (M(z_t)), for latent-space figures; None without one."""
        return None

    def latent_to_shared(self, latent: torch.Tensor) -> torch.Tensor | None:
        """Video latents in the shared space (E_s(z_v)); None without one."""
        return None


class AlignObjective(ABC):
    """How stage 2 trains an :class:`Aligner`; the engine drives it like a :class:`VideoObjective`:
    :meth:`forward` once per step, :meth:`auxiliary_loss` on detached outputs (auxiliary optimizer),
    :meth:`aligner_loss` (the aligner's optimizer), then :meth:`after_step` (e.g. an EMA update)."""

    def auxiliaries(self) -> dict[str, torch.nn.Module]:
        return {}

    @abstractmethod
    def forward(self, aligner: Aligner, batch: AlignBatch) -> dict[str, torch.Tensor]: ...

    @abstractmethod
    def aligner_loss(self, batch: AlignBatch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    def auxiliary_loss(self, batch: AlignBatch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {}

    def after_step(self) -> None:  # noqa: B027  (optional hook; most objectives need nothing here)
        """Called after both updates of a step."""


# --------------------------------------------------------------------------- samplers


class Sampler(ABC):
    """Draws video latents for texts: ``sample(text, n, seed) -> [B * n, *latent_shape]``.

    A sampler draws with the network a training stage exports: ``stage`` names that stage ("align"
    for an aligner, "diffusion" for a denoiser), ``model_section`` the run-config section (and
    checkpoint name) describing it, and :meth:`build_model` rebuilds it from that section. A
    sampler whose network t2vkit trains (stage "diffusion") also has a ``Model`` class, an
    ``nn.Module`` with a ``Config`` and an ``objective()`` returning a :class:`DenoiserObjective`.
    Its ``Config`` holds the sampling options (steps, guidance, ...).
    """

    Config: ClassVar[type] = NoConfig
    stage: ClassVar[str]
    model_section: ClassVar[str]

    @classmethod
    @abstractmethod
    def build_model(cls, section: dict[str, Any]) -> torch.nn.Module:
        """The network described by a run config's ``model_section`` (weights not loaded)."""

    @abstractmethod
    def __init__(self, config: Any, model: torch.nn.Module) -> None: ...

    @abstractmethod
    def sample(self, text: TextEmbedding, n: int = 1, seed: int | None = None) -> torch.Tensor:
        """Latents for each text, ``n`` per text, grouped by text (text 0's n first)."""


@dataclass
class DenoiserBatch:
    """One training batch of a denoiser: clean latents and the captions' token states."""

    latent: torch.Tensor  # [B, C, T, H, W]  x_0, scaled to about unit variance
    tokens: torch.Tensor  # [B, L, d]  text token states
    mask: torch.Tensor  # [B, L] bool
    null_tokens: torch.Tensor  # [1, L0, d]  the empty caption's states, for caption dropout (CFG)
    null_mask: torch.Tensor  # [1, L0] bool


class DenoiserObjective(ABC):
    """How stage "diffusion" trains a sampler's ``Model``: named, weighted loss terms per batch."""

    @abstractmethod
    def loss(self, model: torch.nn.Module, batch: DenoiserBatch) -> dict[str, torch.Tensor]: ...


# --------------------------------------------------------------------------- data sets


class ClipSink(ABC):
    """Where a :class:`DatasetBuilder` puts its clips (t2vkit's prepared-data writer)."""

    @abstractmethod
    def start(self, description: str, total: int | None) -> None:
        """Announce a phase of work of ``total`` steps (for the progress bar)."""

    @abstractmethod
    def advance(self, steps: int = 1) -> None: ...

    @abstractmethod
    def add(
        self,
        clip: np.ndarray,
        caption: str,
        bucket: str,
        split: str,
        attributes: dict[str, Any] | None = None,
        source: str = "",
    ) -> None:
        """Store one clip, uint8 ``[T, H, W, C]``; ``bucket`` names the clip's semantic group."""

    @abstractmethod
    def skip(self, reason: str) -> None:
        """Count a source item that was left out (a video too short, a file missing...)."""


class DatasetBuilder(ABC):
    """Builds a prepared data set (clips, captions, buckets, splits) from raw files."""

    Config: ClassVar[type] = NoConfig
    version: ClassVar[str] = "1"  # bump when the same inputs would give different clips

    def __init__(self, config: Any) -> None:
        self.config = config

    @abstractmethod
    def sources(self) -> dict[str, Path]:
        """The raw files this build reads, by a short name; checked and checksummed first.

        Raise :class:`t2vkit.errors.DataError` naming the missing path and how to provide it.
        """

    @abstractmethod
    def build(self, sink: ClipSink) -> None:
        """Write every clip into ``sink``."""
