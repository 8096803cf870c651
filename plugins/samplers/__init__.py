"""Built-in samplers: direct (an aligner's deterministic mapping), diffusion (a text-conditioned
space-time UNet denoising in a spatial video latent or in pixel space) and prior (diffusion over a
stage-1 latent vector)."""

from t2vkit import hookimpl


@hookimpl
def register_samplers(register):
    from .diffusion import DiffusionSampler
    from .direct import DirectSampler
    from .prior import PriorSampler

    register("direct", DirectSampler)
    register("diffusion", DiffusionSampler)
    register("prior", PriorSampler)
