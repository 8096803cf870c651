"""Networks and losses shared by plugins: discriminators, perceptual features, training objectives."""
