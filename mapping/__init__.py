"""PyTorch in, transactions out: graph capture, lowering to vector-MAC layers, tiling, schedule."""
