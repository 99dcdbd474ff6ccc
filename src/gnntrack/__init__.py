"""gnntrack: GNN-based charged-particle track reconstruction for ITk-like trackers."""

__version__ = "0.1.0"
