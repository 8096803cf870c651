"""Built-in data sets: syncdraw-mm, kth, tacos, folder."""

from t2vkit import hookimpl


@hookimpl
def register_datasets(register):
    from .folder import Folder
    from .kth import Kth
    from .syncdraw import SyncDrawMM
    from .tacos import Tacos

    register("syncdraw-mm", SyncDrawMM)
    register("kth", Kth)
    register("tacos", Tacos)
    register("folder", Folder)
