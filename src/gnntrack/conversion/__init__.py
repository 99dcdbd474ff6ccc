"""Conversion: ATLAS GNN4ITk ROOT ntuples (TTree or RNTuple) or TrackML CSV events -> the events
HDF5 shards every later stage reads, with truth (target particles, truth edges) attached."""
