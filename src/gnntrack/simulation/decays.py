"""Long-lived strange hadrons that decay in flight inside the tracker (not in the generator).

Pythia is told not to decay these (``mayDecay = off``) so that their decay vertices lie along
their flight path, tens of mm to metres from the beam line, and the daughters become
Geant4-style secondaries (barcode >= 200000, production radius > 0), which is what V0 and
hyperon tracks look like in real data. Only the dominant two-body channels are kept
(PDG 2024 branching fractions, renormalised); momenta in GeV, lengths in mm.
"""

from __future__ import annotations

import numpy as np

#: PDG masses (GeV) of the particles that take part in the decays below.
MASS = {
    111: 0.1349768,
    211: 0.13957039,
    321: 0.493677,
    310: 0.497611,
    2212: 0.93827209,
    2112: 0.93956542,
    3122: 1.115683,
    3222: 1.18937,
    3112: 1.197449,
    3322: 1.31486,
    3312: 1.32171,
    3334: 1.67245,
}

#: proper decay length c*tau (mm)
CTAU = {310: 26.844, 3122: 78.9, 3222: 24.04, 3112: 44.34, 3322: 87.1, 3312: 49.1, 3334: 24.61}

#: two-body channels of the particle (not antiparticle): (BR, daughter1, daughter2)
CHANNELS = {
    310: [(0.6920, 211, -211), (0.3069, 111, 111)],
    3122: [(0.641, 2212, -211), (0.359, 2112, 111)],
    3222: [(0.5157, 2212, 111), (0.4831, 2112, 211)],
    3112: [(1.0, 2112, -211)],
    3322: [(1.0, 3122, 111)],
    3312: [(1.0, 3122, -211)],
    3334: [(0.678, 3122, -321), (0.236, 3322, -211), (0.086, 3312, 111)],
}

SELF_CONJUGATE = {111, 310}

LONG_LIVED = tuple(CTAU)


def mass_of(pdg: np.ndarray) -> np.ndarray:
    """Mass (GeV) of |pdg| in MASS (0 for unknown ids: only used where the table applies)."""
    a = np.abs(np.asarray(pdg))
    out = np.zeros(len(a))
    for k, m in MASS.items():
        out[a == k] = m
    return out


def is_long_lived(pdg: np.ndarray) -> np.ndarray:
    return np.isin(np.abs(pdg), LONG_LIVED)


def decay_length(pdg: np.ndarray, p: np.ndarray, mass: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sampled lab-frame decay length (mm): exponential with mean (p/m) c*tau; inf if stable."""
    a = np.abs(pdg)
    ctau = np.full(len(a), np.inf)
    for k, v in CTAU.items():
        ctau[a == k] = v
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(np.isfinite(ctau), p / np.maximum(mass, 1e-9) * ctau, np.inf)
    u = rng.random(len(a))
    return np.where(np.isfinite(mean), -np.log1p(-u) * np.where(np.isfinite(mean), mean, 0.0), np.inf)


def _conjugate(pdg: np.ndarray, anti: np.ndarray) -> np.ndarray:
    """Charge-conjugate the daughters of antiparticle parents (pi0 and K0S are their own)."""
    flip = anti & ~np.isin(pdg, list(SELF_CONJUGATE))
    return np.where(flip, -pdg, pdg)


def two_body_decay(
    pdg: np.ndarray, p4: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decay each parent (pdg, lab 4-momentum (N, 4) = px,py,pz,E) into two daughters.

    Returns (parent index (2M,), daughter pdg (2M,), daughter momentum (2M, 3)): the channel is
    sampled from the branching fractions, the direction is isotropic in the parent rest frame.
    """
    n = len(pdg)
    d1 = np.zeros(n, np.int64)
    d2 = np.zeros(n, np.int64)
    anti = pdg < 0
    u = rng.random(n)
    for k, chans in CHANNELS.items():
        sel = np.abs(pdg) == k
        if not sel.any():
            continue
        brs = np.array([c[0] for c in chans])
        cum = np.cumsum(brs / brs.sum())
        which = np.minimum(np.searchsorted(cum, u[sel]), len(chans) - 1)
        a1 = np.array([c[1] for c in chans])[which]
        a2 = np.array([c[2] for c in chans])[which]
        d1[sel] = _conjugate(a1, anti[sel])
        d2[sel] = _conjugate(a2, anti[sel])
    m0 = np.sqrt(np.maximum(p4[:, 3] ** 2 - (p4[:, :3] ** 2).sum(1), 0.0))
    m1, m2 = mass_of(d1), mass_of(d2)
    pstar = np.sqrt(np.maximum((m0**2 - (m1 + m2) ** 2) * (m0**2 - (m1 - m2) ** 2), 0.0)) / (2.0 * m0)
    cost = rng.uniform(-1.0, 1.0, n)
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    sint = np.sqrt(1.0 - cost**2)
    dirs = np.stack([sint * np.cos(phi), sint * np.sin(phi), cost], axis=1)
    beta = p4[:, :3] / p4[:, 3:4]
    out = []
    for sign, m in ((1.0, m1), (-1.0, m2)):
        pr = sign * pstar[:, None] * dirs
        e = np.sqrt(m**2 + pstar**2)
        out.append(_boost(pr, e, beta))
    parent = np.concatenate([np.arange(n), np.arange(n)])
    return parent, np.concatenate([d1, d2]), np.concatenate(out)


def _boost(p: np.ndarray, e: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Momentum (N, 3) after boosting (p, e) by velocity ``beta`` (N, 3)."""
    b2 = (beta**2).sum(1)
    gamma = 1.0 / np.sqrt(np.maximum(1.0 - b2, 1e-300))
    bp = (beta * p).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        coef = np.where(b2 > 0, (gamma - 1.0) * bp / b2, 0.0)
    return p + (coef + gamma * e)[:, None] * beta
