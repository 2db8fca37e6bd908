"""Training loops for lverse's modules (ordinary PyTorch loops)."""
