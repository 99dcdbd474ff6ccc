"""Built-in ITk-like simulation: Pythia 8 events through a silicon tracker.

Public API: ``SimulationConfig``, ``load_geometry(path)``, ``simulate_event(cfg, geometry,
run_number, event_number, seed)`` (one GNN4ITk in-memory event), ``run_simulate(output, cfg,
shard)`` (one shard -> ROOT file), ``simulate_particles`` (detector simulation of given particles,
e.g. a ``generator.particle_gun``) and ``simulation.summary.event_summary`` (validation numbers).
"""

from gnntrack.simulation.config import SimulationConfig
from gnntrack.simulation.event import (
    event_seed,
    get_geometry,
    init_generators,
    run_simulate,
    simulate_event,
    simulate_particles,
)
from gnntrack.simulation.geometry import Geometry, load_geometry

__all__ = [
    "Geometry",
    "SimulationConfig",
    "event_seed",
    "get_geometry",
    "init_generators",
    "load_geometry",
    "run_simulate",
    "simulate_event",
    "simulate_particles",
]
