"""One simulated event end to end, and a shard of them written as a GNN4ITk ROOT file.

generation (Pythia: hard scatter + pile-up, beam spot) -> propagation of charged particles
(helices, multiple scattering, loopers) -> decays in flight of strange hadrons, whose daughters
are propagated in turn -> hit efficiency -> digitisation (clusters, spacepoints, noise) ->
GNN4ITk in-memory dict (MeV, mm; dtypes of ``io/gnn4itk_schema.py``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from gnntrack.config import from_dict
from gnntrack.io.errors import InputError
from gnntrack.io.gnn4itk_schema import (
    CLUSTER_BRANCHES,
    EVENT_BRANCHES,
    JET_BRANCHES,
    PARTICLE_BRANCHES,
    SECONDARY_BARCODE,
    SPACEPOINT_BRANCHES,
)
from gnntrack.progress import progress
from gnntrack.simulation.config import SimulationConfig
from gnntrack.simulation.decays import decay_length, is_long_lived, mass_of, two_body_decay
from gnntrack.simulation.digitisation import Deposits, Digitiser
from gnntrack.simulation.generator import (
    HARD_PROCESSES,
    Particles,
    PythiaSource,
    concat,
    final_state,
    gun_particles,
    particle_gun,
    truth_jets,
)
from gnntrack.simulation.geometry import Geometry, load_geometry
from gnntrack.simulation.propagation import Crossings, TrackState, propagate

log = logging.getLogger(__name__)

_SOURCES: dict[tuple, PythiaSource] = {}
_GEOMETRIES: dict[str, Geometry] = {}
_REPO_ROOT = Path(__file__).resolve().parents[3]

#: ATLAS-like production-vertex status of in-flight decays (Geant4 "Decay" process)
DECAY_VERTEX_STATUS = 201


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _add(timing: dict, phase: str, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Accumulate wall-clock (``phase``) and CPU (``cpu_<phase>``) seconds: on a loaded machine the
    CPU time is the fair per-core cost."""
    timing[phase] = timing.get(phase, 0.0) + end[0] - start[0]
    timing[f"cpu_{phase}"] = timing.get(f"cpu_{phase}", 0.0) + end[1] - start[1]


def event_seed(campaign_seed: int, event_number: int) -> int:
    """Seed of one event: depends only on (campaign seed, event number)."""
    return int(
        np.random.SeedSequence([int(campaign_seed), int(event_number)]).generate_state(1)[0] & 0x7FFFFFFF
    )


def resolve_detector(path: str | Path) -> Path:
    """Detector file as given, else relative to the repository (for runs from another directory)."""
    p = Path(path)
    if p.exists() or p.is_absolute():
        return p
    alt = _REPO_ROOT / p
    return alt if alt.exists() else p


def _source(process: str, cfg: SimulationConfig) -> PythiaSource:
    extra = list(cfg.pythia_settings)
    if cfg.mpi_cache:
        extra += [
            "MultipartonInteractions:reuseInit = 3",
            f"MultipartonInteractions:initFile = {cfg.mpi_cache}.{process}",
        ]
    key = (process, cfg.ecm, tuple(extra))
    if key not in _SOURCES:
        _SOURCES[key] = PythiaSource(HARD_PROCESSES[process], cfg.ecm, extra)
    return _SOURCES[key]


def init_generators(cfg: SimulationConfig | dict) -> None:
    """Initialise the Pythia instances ``cfg`` needs now (otherwise the first event pays it)."""
    cfg = from_dict(SimulationConfig, cfg) if isinstance(cfg, dict) else cfg
    if cfg.hard_process in HARD_PROCESSES:
        _source(cfg.hard_process, cfg)
    if cfg.mu > 0:
        _source("minbias", cfg)


def _table(p: Particles) -> dict[str, np.ndarray]:
    """Particle columns (GeV, mm) of the stored particles, with in-flight decay bookkeeping."""
    n = len(p)
    return {
        "subevent": p.subevent.astype(np.int32),
        "barcode": p.barcode.astype(np.int32),
        "pdg": p.pdg.astype(np.int64),
        "px": p.px,
        "py": p.py,
        "pz": p.pz,
        "e": p.e,
        "mass": p.mass,
        "charge": p.charge,
        "vx": p.vx,
        "vy": p.vy,
        "vz": p.vz,
        "status": np.ones(n, np.int32),
        "passed": np.zeros(n, np.int32),
        "vprod_nin": np.where(p.mother > 0, 1, 0).astype(np.int32),
        "vprod_nout": p.n_siblings.astype(np.int32),
        "vprod_status": np.zeros(n, np.int32),
        "vprod_barcode": (-(p.mother + 1)).astype(np.int32),
    }


def _append(t: dict, new: dict) -> None:
    for k in t:
        t[k] = np.concatenate([t[k], new[k]])


def _beam_spot(cfg: SimulationConfig, rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3) interaction vertices (mm)."""
    xy, z = cfg.beam_spot_sigma_xy, cfg.beam_spot_sigma_z
    return np.stack([rng.normal(0.0, xy, n), rng.normal(0.0, xy, n), rng.normal(0.0, z, n)], axis=1)


def simulate_event(
    cfg: SimulationConfig | dict,
    geometry: Geometry,
    run_number: int,
    event_number: int,
    seed: int,
    timing: dict | None = None,
) -> dict:
    """Generate, propagate and digitise one event -> GNN4ITk in-memory dict (MeV, mm).

    The result depends only on ``cfg``, ``geometry`` and ``seed``. ``timing`` (optional) receives
    seconds per phase: generation, propagation, digitisation.
    """
    cfg = from_dict(SimulationConfig, cfg) if isinstance(cfg, dict) else cfg
    t0 = _now()
    ss = np.random.SeedSequence(int(seed))
    s_hard, s_pu, s_rng = ss.generate_state(3)
    rng = np.random.default_rng(int(s_rng))
    pythia_seed = lambda s: int(s % 900_000_000) + 1  # noqa: E731 (Pythia accepts 1..900000000)

    # ---------------------------------------------------------------- generation
    parts = []
    if cfg.hard_process == "gun":
        parts.append(gun_particles(cfg.gun, np.random.default_rng(int(s_hard))))
    elif cfg.hard_process != "none":
        batch = _source(cfg.hard_process, cfg).generate(1, pythia_seed(s_hard))
        if batch is not None and len(batch):
            parts.append(final_state(_source(cfg.hard_process, cfg), batch, 0))
    n_pu = int(rng.poisson(cfg.mu)) if cfg.mu > 0 else 0
    if n_pu:
        pu = _source("minbias", cfg)
        batch = pu.generate(n_pu, pythia_seed(s_pu))
        parts.append(final_state(pu, batch, 1))
    if not parts:  # hard_process "none" and a Poisson draw of zero pile-up interactions
        parts.append(particle_gun(np.zeros(0), np.zeros(0), np.zeros(0)))
    p = concat(parts)
    n_sub = int(p.subevent.max()) + 1 if len(p) else 1
    vtx = _beam_spot(cfg, rng, n_sub)
    shift = vtx[p.subevent]
    if cfg.hard_process == "gun":  # every gun particle is an interaction of its own
        own = p.subevent == 0
        shift[own] = _beam_spot(cfg, rng, int(own.sum()))
    p.vx, p.vy, p.vz = p.vx + shift[:, 0], p.vy + shift[:, 1], p.vz + shift[:, 2]
    jets = truth_jets(p, cfg.jet_r, cfg.jet_pt_min / 1000.0)
    if timing is not None:
        _add(timing, "generation", t0, _now())
    return simulate_particles(cfg, geometry, p, rng, run_number, event_number, jets, timing)


def simulate_particles(
    cfg: SimulationConfig,
    geometry: Geometry,
    p: Particles,
    rng: np.random.Generator,
    run_number: int = 0,
    event_number: int = 0,
    jets=(),
    timing: dict | None = None,
) -> dict:
    """Detector simulation of given generator particles (GeV, mm) -> GNN4ITk in-memory dict.

    This is everything after the generator; a particle gun (tests, studies) calls it directly.
    """
    t1 = _now()
    keep = (p.charge != 0) | is_long_lived(p.pdg) | cfg.save_neutral
    p = Particles(**{f: getattr(p, f)[keep] for f in Particles.__dataclass_fields__})
    table = _table(p)

    # ---------------------------------------------------------------- propagation + decays
    crossings: list[Crossings] = []
    todo = np.arange(len(p))
    next_barcode = SECONDARY_BARCODE + 1
    next_vertex = 1
    for _generation in range(6):
        if len(todo) == 0:
            break
        px, py, pz = table["px"][todo], table["py"][todo], table["pz"][todo]
        pt = np.hypot(px, py)
        ptot = np.sqrt(pt**2 + pz**2)
        with np.errstate(divide="ignore", invalid="ignore"):
            eta = np.arcsinh(pz / pt)
        mass = table["mass"][todo]
        llp = is_long_lived(table["pdg"][todo]) & cfg.decays_in_flight
        dlen = np.where(llp, decay_length(table["pdg"][todo], ptot, mass, rng), np.inf)
        charged = table["charge"][todo] != 0
        prop = charged & (pt * 1000.0 > cfg.pt_min) & (np.abs(eta) < cfg.eta_max)
        table["passed"][todo[prop]] = 1
        sel = todo[prop]
        state = TrackState(
            index=sel,
            x=table["vx"][sel],
            y=table["vy"][sel],
            z=table["vz"][sel],
            px=table["px"][sel],
            py=table["py"][sel],
            pz=table["pz"][sel],
            charge=table["charge"][sel],
            mass=table["mass"][sel],
            decay_length=dlen[prop],
        )
        cr, dec = propagate(geometry, state, rng, cfg.max_turns, multiple_scattering=cfg.multiple_scattering)
        crossings.append(cr)
        # neutral long-lived particles fly straight; charged ones decayed inside `propagate`
        neu = llp & ~charged & np.isfinite(dlen)
        ni = todo[neu]
        u = np.stack([px[neu], py[neu], pz[neu]], axis=1) / np.maximum(ptot[neu], 1e-12)[:, None]
        pos = np.stack([table["vx"][ni], table["vy"][ni], table["vz"][ni]], axis=1) + u * dlen[neu][:, None]
        inside = (np.hypot(pos[:, 0], pos[:, 1]) < geometry.envelope_r) & (
            np.abs(pos[:, 2]) < geometry.envelope_z
        )
        d_index = np.concatenate([ni[inside], dec.index])
        d_pos = np.concatenate([pos[inside], np.stack([dec.x, dec.y, dec.z], axis=1)])
        d_mom = np.concatenate(
            [
                np.stack([px[neu], py[neu], pz[neu]], axis=1)[inside],
                np.stack([dec.px, dec.py, dec.pz], axis=1),
            ]
        )
        if len(d_index) == 0:
            break
        order = np.argsort(d_index, kind="stable")
        d_index, d_pos, d_mom = d_index[order], d_pos[order], d_mom[order]
        par_pdg = table["pdg"][d_index]
        e = np.sqrt((d_mom**2).sum(1) + mass_of(par_pdg) ** 2)
        parent, dpdg, dp = two_body_decay(par_pdg, np.concatenate([d_mom, e[:, None]], axis=1), rng)
        table["status"][d_index] = 2
        vbar = -(SECONDARY_BARCODE + next_vertex + np.arange(len(d_index)))
        next_vertex += len(d_index)
        m_d = mass_of(dpdg)
        nd = len(dpdg)
        new = {
            "subevent": table["subevent"][d_index][parent],
            "barcode": (next_barcode + np.arange(nd)).astype(np.int32),
            "pdg": dpdg,
            "px": dp[:, 0],
            "py": dp[:, 1],
            "pz": dp[:, 2],
            "e": np.sqrt((dp**2).sum(1) + m_d**2),
            "mass": m_d,
            "charge": _charge_of(dpdg),
            "vx": d_pos[parent, 0],
            "vy": d_pos[parent, 1],
            "vz": d_pos[parent, 2],
            "status": np.ones(nd, np.int32),
            "passed": np.zeros(nd, np.int32),
            "vprod_nin": np.ones(nd, np.int32),
            "vprod_nout": np.full(nd, 2, np.int32),
            "vprod_status": np.full(nd, DECAY_VERTEX_STATUS, np.int32),
            "vprod_barcode": vbar[parent].astype(np.int32),
        }
        next_barcode += nd
        start = len(table["pdg"])
        _append(table, new)
        todo = start + np.arange(nd)
    t2 = _now()

    # ---------------------------------------------------------------- digitisation
    cr = Crossings(
        **{k: np.concatenate([getattr(c, k) for c in crossings]) for k in Crossings.__dataclass_fields__}
    )
    surf_sensitive = geometry.sensitive[cr.surface]
    eff = geometry.efficiency[cr.surface]
    if cfg.hit_inefficiency is not None:
        eff = np.full(len(cr), 1.0 - cfg.hit_inefficiency)
    fired = surf_sensitive & (rng.random(len(cr)) < eff)
    pmag = np.sqrt(cr.px**2 + cr.py**2 + cr.pz**2)
    dig = Digitiser(geometry, cfg.noise_rate, cfg.strip_tolerance, cfg.strip_gap_tolerance)
    pi = cr.index[fired]
    dep = Deposits(
        surface=cr.surface[fired],
        subevent=table["subevent"][pi],
        barcode=table["barcode"][pi],
        x=cr.x[fired],
        y=cr.y[fired],
        z=cr.z[fired],
        dx=(cr.px / pmag)[fired],
        dy=(cr.py / pmag)[fired],
        dz=(cr.pz / pmag)[fired],
    )
    noise = dig.noise(rng)
    dep = Deposits(
        **{k: np.concatenate([getattr(dep, k), getattr(noise, k)]) for k in Deposits.__dataclass_fields__}
    )
    cl = dig.clusters(dep, rng)
    sp = dig.spacepoints(cl)
    t3 = _now()
    if timing is not None:
        _add(timing, "propagation", t1, t2)
        _add(timing, "digitisation", t2, t3)
    if len(jets) != 3:
        jets = (np.zeros(0), np.zeros(0), np.zeros(0))
    return _to_gnn4itk(run_number, event_number, table, cl, sp, jets)


def _charge_of(pdg: np.ndarray) -> np.ndarray:
    """Charge of the decay products that can occur in decays.py."""
    charge = {211: 1.0, 321: 1.0, 2212: 1.0, 3222: 1.0, 3112: -1.0, 3312: -1.0, 3334: -1.0}
    out = np.zeros(len(pdg))
    for k, q in charge.items():
        out[pdg == k] = q
        out[pdg == -k] = -q
    return out


def _to_gnn4itk(run_number, event_number, t: dict, cl: dict, sp: dict, jets) -> dict:
    pt = np.hypot(t["px"], t["py"])
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(pt > 0, np.arcsinh(t["pz"] / np.where(pt > 0, pt, 1.0)), np.sign(t["pz"]) * 1e3)
    part = {
        "Part_event_number": t["subevent"],
        "Part_barcode": t["barcode"],
        "Part_px": t["px"] * 1000.0,
        "Part_py": t["py"] * 1000.0,
        "Part_pz": t["pz"] * 1000.0,
        "Part_pt": pt * 1000.0,
        "Part_eta": eta,
        "Part_vx": t["vx"],
        "Part_vy": t["vy"],
        "Part_vz": t["vz"],
        "Part_radius": np.hypot(t["vx"], t["vy"]),
        "Part_status": t["status"],
        "Part_charge": t["charge"],
        "Part_pdg_id": t["pdg"],
        "Part_passed": t["passed"],
        "Part_vProdNin": t["vprod_nin"],
        "Part_vProdNout": t["vprod_nout"],
        "Part_vProdStatus": t["vprod_status"],
        "Part_vProdBarcode": t["vprod_barcode"],
    }
    out: dict = {"run_number": np.uint32(run_number), "event_number": np.uint64(event_number)}
    for name, dtype in PARTICLE_BRANCHES.items():
        out[name] = np.ascontiguousarray(part[name], dtype=dtype)
    for name, dtype in SPACEPOINT_BRANCHES.items():
        out[name] = np.ascontiguousarray(sp[name], dtype=dtype)
    n_cl = len(cl["CLx"])
    cl["CLindex"] = np.arange(n_cl)
    for name, dtype in CLUSTER_BRANCHES.items():
        out[name] = cl[name].astype(str) if dtype is str else np.ascontiguousarray(cl[name], dtype=dtype)
    # per-cluster link vectors as slices (views) of the flat arrays: np.split is 20x slower
    ends = np.cumsum(cl["_link_n"]).tolist()
    starts = [0, *ends[:-1]]
    sub, bc = cl["_link_sub"].astype(np.int32), cl["_link_bc"].astype(np.int32)
    out["CLparticleLink_eventIndex"] = [sub[a:b] for a, b in zip(starts, ends)]
    out["CLparticleLink_barcode"] = [bc[a:b] for a, b in zip(starts, ends)]
    for name, vals in zip(JET_BRANCHES, jets):
        scale = 1000.0 if name == "Jet_pt" else 1.0
        out[name] = np.asarray(vals, dtype=np.float64).astype(JET_BRANCHES[name]) * scale
    assert set(EVENT_BRANCHES) <= set(out)
    return out


def get_geometry(path: str | Path) -> Geometry:
    """Geometry of a detector file, loaded once per process."""
    p = resolve_detector(path)
    key = str(p.resolve()) if p.exists() else str(p)
    if key not in _GEOMETRIES:
        if not p.exists():
            raise InputError("detector description not found", file=p, field="simulation.detector")
        _GEOMETRIES[key] = load_geometry(p)
    return _GEOMETRIES[key]


def run_simulate(
    output: str | Path, cfg: SimulationConfig | dict, shard: int, timing: dict | None = None
) -> None:
    """Simulate the ``cfg.n_events`` events of ``shard`` and write them as one GNN4ITk ROOT file.

    Event numbers are ``shard * n_events + i``; each event's seed comes from (cfg.seed, event
    number), so any shard reproduces exactly, independently of the others. The file appears only
    when complete.
    """
    from gnntrack.io.root_writer import write_gnn4itk

    cfg = from_dict(SimulationConfig, cfg) if isinstance(cfg, dict) else cfg
    geo = get_geometry(cfg.detector)
    events = []
    for i in progress(range(cfg.n_events), desc=f"simulate shard {shard}", unit="events", logger=log):
        ev = int(shard) * cfg.n_events + i
        events.append(simulate_event(cfg, geo, cfg.run_number, ev, event_seed(cfg.seed, ev), timing=timing))
    t0 = _now()
    write_gnn4itk(output, events)
    if timing is not None:
        _add(timing, "writing", t0, _now())
