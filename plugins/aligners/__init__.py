"""Built-in aligners: progressive (the paper's method) and its baselines clip, imagebind, codi,
direct (non-progressive), vicreg and byol."""

from t2vkit import hookimpl


@hookimpl
def register_aligners(register):
    from .baselines import BYOL, CLIPBased, CoDiBased, Direct, ImageBindBased, VICReg
    from .progressive import Progressive

    register("progressive", Progressive)
    register("clip", CLIPBased)
    register("imagebind", ImageBindBased)
    register("codi", CoDiBased)
    register("direct", Direct)
    register("vicreg", VICReg)
    register("byol", BYOL)
