"""Track building: track candidates from a scored edge graph (connected components, CC-and-walk)."""

from ..tracks import Tracks
from .build import TrackBuildingConfig, build_tracks
from .components import connected_components

__all__ = ["TrackBuildingConfig", "Tracks", "build_tracks", "connected_components"]
