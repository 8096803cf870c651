"""Built-in samplers: direct (an aligner's deterministic mapping) and diffusion (a text-conditioned
space-time UNet denoising in a spatial video latent or in pixel space)."""

from t2vkit import hookimpl


@hookimpl
def register_samplers(register):
    from .diffusion import DiffusionSampler
    from .direct import DirectSampler

    register("direct", DirectSampler)
    register("diffusion", DiffusionSampler)
