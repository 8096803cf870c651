"""Built-in samplers: direct (an aligner's deterministic mapping)."""

from t2vkit import hookimpl


@hookimpl
def register_samplers(register):
    from .direct import DirectSampler

    register("direct", DirectSampler)
