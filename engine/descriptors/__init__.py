"""From feature maps to one vector per photo: pooling, activations, whitening and the methods."""
