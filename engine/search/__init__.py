"""Finding the nearest descriptors: exact and ANN indexes, re-ranking, spatial verification."""
