"""The module-map sample: particle-gun events simulated only to build the module map.

A data-driven module map is limited by the module pairs and bendings its training events happen
to contain: GNN4ITk builds it from ~10^5 tt̄ events, a laptop campaign has 80. The map needs
only target-particle crossings, not pile-up or noise, so a campaign on the built-in simulation
can add a cheap, dense sample: ``gun`` events (``ParticleGunConfig``) through the same detector
simulation as the campaign's events (benchmarks/module_map_coverage.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gnntrack.config import ConfigError, Count, NonNegativeInt, from_dict, to_dict
from gnntrack.simulation.config import ParticleGunConfig

#: simulation settings that choose what an event contains rather than how the detector responds;
#: the map sample sets its own (everything else is taken from the campaign's simulation section)
EVENT_CONTENT_KEYS = frozenset(
    {
        "mu",
        "n_events",
        "seed",
        "run_number",
        "hard_process",
        "ecm",
        "pythia_settings",
        "gun",
        "noise_rate",
        "jet_r",
        "jet_pt_min",
        "save_neutral",
        "mpi_cache",
    }
)


@dataclass
class MapSampleConfig:
    """The ``map_sample`` section: extra events that feed only the module map.

    Used when the campaign runs on the built-in simulation and builds its graphs with the module
    map; real-data campaigns ignore it (a gun sample needs the detector description).
    """

    shards: NonNegativeInt = 0  # 0 = no map sample
    n_events: Count = 500  # per shard
    seed: NonNegativeInt = 271828  # its own seed, so that its events are not copies of the campaign's
    run_number: NonNegativeInt = 1
    gun: ParticleGunConfig = field(default_factory=ParticleGunConfig)

    def __post_init__(self) -> None:
        if self.shards < 0:
            raise ConfigError(f"map_sample.shards: {self.shards!r} must be >= 0")
        if self.n_events < 1:
            raise ConfigError(f"map_sample.n_events: {self.n_events!r} must be >= 1")


def map_sample_simulation(simulation: dict, sample: MapSampleConfig | dict) -> dict:
    """The simulation section of the map sample: the campaign's detector response, gun events.

    Only detector-response settings come from the campaign, so changing its pile-up or seed
    does not re-simulate the map sample. No noise: noise hits carry no truth and the map ignores
    them.
    """
    sample = (
        sample if isinstance(sample, MapSampleConfig) else from_dict(MapSampleConfig, sample, "map_sample")
    )
    detector = {k: v for k, v in simulation.items() if k not in EVENT_CONTENT_KEYS}
    return {
        **detector,
        "hard_process": "gun",
        "mu": 0.0,
        "noise_rate": 0.0,
        "n_events": sample.n_events,
        "seed": sample.seed,
        "run_number": sample.run_number,
        "gun": to_dict(sample.gun),
    }
