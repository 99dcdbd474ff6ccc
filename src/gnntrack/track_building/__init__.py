"""Track building: track candidates from a scored edge graph (connected components, CC-and-walk)."""

from .build import TrackBuildingConfig, build_tracks
from .components import connected_components
from .tracks import Tracks

__all__ = ["TrackBuildingConfig", "Tracks", "build_tracks", "connected_components"]
