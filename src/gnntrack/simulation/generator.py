"""Event generation with Pythia 8: hard scatter + Poisson pile-up, beam spot, truth jets.

Pythia's ``init()`` costs seconds (minimum bias: cross-section and MPI tables), so the two
generators (hard process, pile-up) are created once per process and kept alive; every event
re-seeds their random engines from the event seed (``Rndm.init``), which makes one event depend
only on its seed, not on the events generated before it in the same process.

The event record is read with ``Pythia.nextBatch`` (awkward arrays filled in C++): a Python loop
over 10^5 ``Particle`` objects per event would cost more than the whole simulation.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import awkward as ak
import numpy as np

from gnntrack.config import ConfigError
from gnntrack.simulation.config import GUN_SPECIES, ParticleGunConfig
from gnntrack.simulation.decays import LONG_LIVED

HARD_PROCESSES = {
    "ttbar": ["Top:gg2ttbar = on", "Top:qqbar2ttbar = on"],
    "minbias": ["SoftQCD:inelastic = on"],
}

INVISIBLE = (12, 14, 16)


@dataclass
class Particles:
    """Generator-level final-state particles of one event (GeV, mm), flat arrays."""

    subevent: np.ndarray  # int32, 0 = hard scatter
    barcode: np.ndarray  # int32 (Pythia record index, < 200000)
    pdg: np.ndarray
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    e: np.ndarray
    mass: np.ndarray
    charge: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    vz: np.ndarray
    mother: np.ndarray  # Pythia index of the first mother (vertex identifier)
    n_siblings: np.ndarray  # daughters of the production vertex (vProdNout)

    def __len__(self) -> int:
        return len(self.pdg)


@contextlib.contextmanager
def _quiet_stdout():
    """Silence Pythia's C++ banner/initialisation printout (it writes to fd 1 directly)."""
    try:
        fd = os.dup(1)
    except OSError:  # no real stdout (e.g. captured): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(fd, 1)
        os.close(fd)


class PythiaSource:
    """One initialised Pythia instance producing events of one process."""

    def __init__(self, process: list[str], ecm: float, extra: list[str], seed: int = 1):
        import pythia8mc

        with _quiet_stdout():
            self.pythia = pythia8mc.Pythia("", False)
            settings = [
                f"Beams:eCM = {ecm}",
                "Print:quiet = on",
                "Next:numberCount = 0",
                "Random:setSeed = on",
                f"Random:seed = {seed}",
                # strange hadrons decay in flight in our own propagation (decays.py)
                *[f"{pdg}:mayDecay = off" for pdg in LONG_LIVED],
                *process,
                *extra,
            ]
            for s in settings:
                if not self.pythia.readString(s):
                    raise ConfigError(f"simulation.pythia_settings: Pythia rejected {s!r}")
            if not self.pythia.init():
                raise RuntimeError(f"Pythia initialisation failed for {process}")
        self._charge: dict[int, float] = {}
        self._mass: dict[int, float] = {}

    def generate(self, n: int, seed: int):
        """``n`` events as an awkward record array (fields of ``Pythia.nextBatch``)."""
        self.pythia.rndm.init(int(seed))
        if n <= 0:
            return None
        return self.pythia.nextBatch(int(n), "skip")

    def charge_mass(self, pdg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Charge (e) and mass (GeV) of each pdg id, looked up once per distinct id."""
        uniq, inv = np.unique(pdg, return_inverse=True)
        pd = self.pythia.particleData
        for u in uniq.tolist():
            if u not in self._charge:
                self._charge[u] = pd.charge(u)
                self._mass[u] = pd.m0(u)
        q = np.array([self._charge[u] for u in uniq.tolist()])[inv]
        m = np.array([self._mass[u] for u in uniq.tolist()])[inv]
        return q, m


def final_state(source: PythiaSource, batch, first_subevent: int) -> Particles:
    """Flatten the final-state particles of a batch of events into numpy arrays."""
    prt = batch.prt
    counts = ak.to_numpy(ak.num(prt))
    final = prt.status > 0
    kept = prt[final]
    index = ak.local_index(prt)[final]
    n_kept = ak.to_numpy(ak.num(kept))
    sub = np.repeat(np.arange(first_subevent, first_subevent + len(counts), dtype=np.int32), n_kept)

    def flat(a, dtype=np.float64):
        return np.asarray(ak.to_numpy(ak.flatten(a)), dtype=dtype)

    pdg = flat(kept.id, np.int64)
    vprod = kept.vProd
    vx = flat(ak.fill_none(vprod.px, 0.0))
    vy = flat(ak.fill_none(vprod.py, 0.0))
    vz = flat(ak.fill_none(vprod.pz, 0.0))
    mother = flat(kept.mother1, np.int64)
    # daughters of each mother = size of the production vertex (vProdNout)
    d1 = prt.daughter1
    d2 = prt.daughter2
    ndau = ak.where(d2 >= d1, d2 - d1 + 1, ak.where(d1 > 0, 1, 0))
    ndau_flat = flat(ndau, np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    event_of = np.repeat(np.arange(len(counts)), n_kept)
    n_siblings = ndau_flat[offsets[event_of] + mother]
    charge, mass = source.charge_mass(pdg)
    return Particles(
        subevent=sub,
        barcode=flat(index, np.int32),
        pdg=pdg,
        px=flat(kept.p.px),
        py=flat(kept.p.py),
        pz=flat(kept.p.pz),
        e=flat(kept.p.e),
        mass=mass,
        charge=charge,
        vx=vx,
        vy=vy,
        vz=vz,
        mother=mother,
        n_siblings=n_siblings,
    )


def concat(parts: list[Particles]) -> Particles:
    fields = Particles.__dataclass_fields__
    return Particles(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in fields})


def truth_jets(
    p: Particles, r: float = 0.4, pt_min: float = 20.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Anti-kt jets (pt GeV, eta, phi) of the hard scatter's stable visible particles."""
    import fastjet

    sel = (p.subevent == 0) & ~np.isin(np.abs(p.pdg), INVISIBLE)
    if not sel.any():
        return np.zeros(0), np.zeros(0), np.zeros(0)
    inputs = [
        fastjet.PseudoJet(float(a), float(b), float(c), float(d))
        for a, b, c, d in zip(p.px[sel], p.py[sel], p.pz[sel], p.e[sel])
    ]
    seq = fastjet.ClusterSequence(inputs, fastjet.JetDefinition(fastjet.antikt_algorithm, r))
    jets = fastjet.sorted_by_pt(seq.inclusive_jets(pt_min))
    pt = np.array([j.pt() for j in jets])
    eta = np.array([j.eta() for j in jets])
    phi = np.array([j.phi_std() for j in jets])
    return pt, eta, phi


def particle_gun(
    pt, eta, phi, charge=-1.0, pdg=13, mass=GUN_SPECIES[13][0], vertex=(0.0, 0.0, 0.0)
) -> Particles:
    """Single particles (GeV, rad) from ``vertex`` as one sub-event: tests and detector studies."""
    pt, eta, phi = np.broadcast_arrays(*(np.atleast_1d(np.asarray(a, np.float64)) for a in (pt, eta, phi)))
    n = len(pt)
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    m = np.full(n, mass)
    q = np.broadcast_to(np.asarray(charge, np.float64), (n,)).copy()
    ids = np.broadcast_to(np.asarray(pdg, np.int64), (n,)).copy()
    ids = np.where(q > 0, -np.abs(ids), np.abs(ids)) if abs(pdg) in (11, 13) else ids
    return Particles(
        subevent=np.zeros(n, np.int32),
        barcode=np.arange(1, n + 1, dtype=np.int32),
        pdg=ids,
        px=px,
        py=py,
        pz=pz,
        e=np.sqrt(px**2 + py**2 + pz**2 + m**2),
        mass=m,
        charge=q,
        vx=np.full(n, float(vertex[0])),
        vy=np.full(n, float(vertex[1])),
        vz=np.full(n, float(vertex[2])),
        mother=np.zeros(n, np.int64),
        n_siblings=np.full(n, n, np.int64),
    )


def gun_particles(cfg: ParticleGunConfig, rng: np.random.Generator) -> Particles:
    """One event of the ``gun`` hard process (GeV; vertices at the origin, set by the caller)."""
    n = cfg.n_particles
    inv_pt = rng.uniform(1e3 / cfg.pt_max, 1e3 / cfg.pt_min, n)  # 1/GeV
    sign = rng.choice(np.array([-1.0, 1.0]), n)
    eta = rng.uniform(-cfg.eta_max, cfg.eta_max, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    mass, positive_charge = GUN_SPECIES[abs(cfg.pdg)]
    p = particle_gun(1.0 / inv_pt, eta, phi, charge=sign * positive_charge, mass=mass)
    p.pdg = (sign * abs(cfg.pdg)).astype(np.int64)
    return p
