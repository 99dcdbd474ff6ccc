"""Settings of the built-in simulation (the ``simulation:`` section of a campaign file)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from gnntrack.config import ConfigError, Count, NonNegative, NonNegativeInt, Positive, Probability, one_of
from gnntrack.simulation.decays import MASS

HARD_PROCESS_NAMES = ("ttbar", "minbias", "gun", "none")

#: particles the gun can shoot: |pdg| -> (mass in GeV, charge of the positive-pdg particle)
GUN_SPECIES = {13: (0.1056584, -1.0), **{pdg: (MASS[pdg], 1.0) for pdg in (211, 321, 2212)}}
#: pdg ids the gun accepts: either sign of each species
GUN_PDG_IDS = tuple(sorted(sign * pdg for pdg in GUN_SPECIES for sign in (-1, 1)))


@dataclass
class ParticleGunConfig:
    """The ``gun`` hard process: single charged particles, each from its own beam-spot vertex.

    q/pT is flat (every track curvature between the limits equally often) and so are eta and
    phi, so that a few hundred events cross every module pair at every bending a target
    particle can have: the sample a module map needs, at a fraction of a Pythia event's cost.
    """

    n_particles: Count = 1000
    #: |pdg| of GUN_SPECIES; each particle's charge sign is drawn at random
    pdg: Annotated[int, one_of(GUN_PDG_IDS)] = 211
    pt_min: Positive = 1000.0  # MeV
    pt_max: Positive = 100000.0  # MeV
    eta_max: Positive = 4.0

    def __post_init__(self) -> None:
        checks = [
            ("n_particles", self.n_particles >= 1, "must be >= 1"),
            ("pdg", abs(self.pdg) in GUN_SPECIES, f"|pdg| must be one of {sorted(GUN_SPECIES)}"),
            ("pt_min", self.pt_min > 0, "must be > 0"),
            ("pt_max", self.pt_max >= self.pt_min, "must be >= pt_min"),
            ("eta_max", self.eta_max > 0, "must be > 0"),
        ]
        for name, ok, why in checks:
            if not ok:
                raise ConfigError(f"simulation.gun.{name}: {getattr(self, name)!r} {why}")


@dataclass
class SimulationConfig:
    """Defaults = the default laptop campaign. Momenta in MeV and lengths in mm, as in the ntuples."""

    mu: NonNegative = 50.0  # mean number of pile-up interactions (Poisson)
    n_events: Count = 10  # events per shard (event number = shard * n_events + i)
    seed: NonNegativeInt = 12345  # campaign seed; each event's seed is derived from (seed, event_number)
    run_number: NonNegativeInt = 0
    hard_process: Annotated[str, one_of(HARD_PROCESS_NAMES)] = "ttbar"
    gun: ParticleGunConfig = field(default_factory=ParticleGunConfig)  # used by hard_process gun
    ecm: Positive = 14000.0  # GeV
    pythia_settings: list[str] = field(default_factory=list)  # extra Pythia strings (both generators)
    detector: str = "config/detector/itk_like.yaml"
    beam_spot_sigma_z: NonNegative = 50.0
    beam_spot_sigma_xy: NonNegative = 0.01
    pt_min: Positive = 100.0  # MeV: charged particles below are not propagated
    eta_max: Positive = 4.5
    max_turns: Positive = 3.0  # loopers are followed for at most this many turns
    multiple_scattering: bool = True
    decays_in_flight: bool = True  # K0S, Lambda, Sigma, Xi, Omega decay in the tracker
    hit_inefficiency: Probability | None = None  # overrides every layer's (1 - efficiency) when set
    noise_rate: NonNegative = 0.002  # noise clusters per sensor per event
    strip_tolerance: NonNegative = 1.0  # mm beyond the strip ends accepted for strip spacepoints
    # strip spacepoints also accepted for track inclinations tan(alpha) up to this across the strips
    # (side gap correction; 0.15 keeps pT > ~1 GeV tracks at r = 400 mm, ~2 GeV at r = 1 m)
    strip_gap_tolerance: NonNegative = 0.15
    jet_r: Positive = 0.4
    jet_pt_min: NonNegative = 20000.0  # MeV
    save_neutral: bool = False  # also store stable neutral particles (photons, neutrons, ...)
    # file prefix to cache Pythia's MPI initialisation (init ~7 s -> ~1 s); written on first use,
    # so point concurrent jobs at a file that already exists (or leave unset)
    mpi_cache: str | None = None

    def __post_init__(self) -> None:
        checks = [
            ("mu", self.mu >= 0, "must be >= 0"),
            ("n_events", self.n_events >= 1, "must be >= 1"),
            (
                "hard_process",
                self.hard_process in HARD_PROCESS_NAMES,
                f"must be one of {list(HARD_PROCESS_NAMES)}",
            ),
            ("hard_process", self.hard_process != "none" or self.mu > 0, "'none' needs pile-up (mu > 0)"),
            ("pt_min", self.pt_min > 0, "must be > 0"),
            ("eta_max", self.eta_max > 0, "must be > 0"),
            ("max_turns", self.max_turns > 0, "must be > 0"),
            ("noise_rate", self.noise_rate >= 0, "must be >= 0"),
            ("beam_spot_sigma_z", self.beam_spot_sigma_z >= 0, "must be >= 0"),
            ("beam_spot_sigma_xy", self.beam_spot_sigma_xy >= 0, "must be >= 0"),
            (
                "hit_inefficiency",
                self.hit_inefficiency is None or 0.0 <= self.hit_inefficiency <= 1.0,
                "must be in [0, 1]",
            ),
        ]
        for name, ok, why in checks:
            if not ok:
                raise ConfigError(f"simulation.{name}: {getattr(self, name)!r} {why}")
