"""Built-in text encoders: minilm (offline default), clip."""
