"""Shipped config presets: paper.toml (the paper's hyperparameters) and quick.toml (a 2-core CPU)."""
