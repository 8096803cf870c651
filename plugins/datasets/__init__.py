"""Built-in data sets: syncdraw-mm, kth, tacos, folder."""

from t2vkit import hookimpl


@hookimpl
def register_datasets(register):
    from .syncdraw import SyncDrawMM

    register("syncdraw-mm", SyncDrawMM)
