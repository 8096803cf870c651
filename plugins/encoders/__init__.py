"""Built-in text encoders: minilm (offline default), clip."""

from t2vkit import hookimpl


@hookimpl
def register_encoders(register):
    from .clip import CLIP
    from .minilm import MiniLM

    register("minilm", MiniLM)
    register("clip", CLIP)
