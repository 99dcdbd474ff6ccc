"""ITk-like detector description: layers, module tiling, ATLAS-style identifiers, local frames.

The detector is a set of *surfaces*: ideal cylinders (barrel layers, passive supports) and planar
disks (endcap layers), each tiled into modules. Propagation only needs the surface shapes (radii,
z positions, extents, material), digitisation needs the module a crossing falls in and its local
frame. All lookups are vectorised over many crossings of one surface at a time.

Local frames (ATLAS-like): ``u`` ~ loc_phi (along phi), ``v`` ~ loc_eta (along z in the barrel,
radial in the endcaps), ``n`` the sensor normal. Barrel ``u`` is the arc length at the layer
radius from the module centre, so a module is an exact patch of its cylinder; endcap modules are
planar, ``(u, v)`` the coordinates in the disk plane rotated to the module centre.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gnntrack.config import ConfigError, load_yaml

TWO_PI = 2.0 * np.pi

HARDWARE_CODE = {"PIXEL": 0, "STRIP": 1}

#: pseudo surface index of the outer envelope cylinder (propagation stops there)
ENVELOPE = -2


@dataclass
class Surface:
    """One sensitive (or passive) surface with its module tiling and sensor properties."""

    index: int
    kind: str  # "cylinder" | "disk"
    hardware: str  # "PIXEL" | "STRIP" | "PASSIVE"
    barrel_endcap: int  # 0 barrel, -2 / +2 endcap at -z / +z
    layer_disk: int
    side: int  # strip sensor side (0/1); 0 for pixels
    r: float = 0.0  # cylinder radius
    u_radius: float = 0.0  # radius at which barrel u (arc length) is measured; 0: r
    half_z: float = 0.0  # cylinder half length
    z: float = 0.0  # disk position (signed)
    r_min: float = 0.0  # disk inner radius
    r_max: float = 0.0  # disk outer radius
    x0: float = 0.0  # x/X0 at normal incidence
    efficiency: float = 1.0
    thickness: float = 0.0
    pitch_u: float = 0.0  # pixel pitch along u, strip pitch across the strips
    pitch_v: float = 0.0  # pixel pitch along v (0 for strips)
    stereo: float = 0.0  # strip rotation of this side (rad)
    n_phi: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # per ring (1 ring in barrel)
    ring_edges: np.ndarray = field(default_factory=lambda: np.zeros(0))  # disk ring radial edges
    n_z: int = 0  # barrel modules along z
    module_offset: int = 0  # first dense module index of this surface
    partner: int = -1  # strip: surface index of the other side
    pair_layer: int = -1  # strip: index of the double-sided layer (for spacepoint pairing)

    @property
    def ur(self) -> float:
        """Barrel u scale: both sides of a strip module measure u at the module's mid radius, so a
        straight track from the beam line has the same u on both sides (like the vertex-pointing
        correction of the ATLAS strip spacepoint maker)."""
        return self.u_radius or self.r

    @property
    def sensitive(self) -> bool:
        return self.hardware != "PASSIVE"

    @property
    def n_modules(self) -> int:
        if not self.sensitive:
            return 0
        if self.kind == "cylinder":
            return int(self.n_phi[0]) * self.n_z
        return int(self.n_phi.sum())

    @property
    def is_strip(self) -> bool:
        return self.hardware == "STRIP"


@dataclass
class ModuleHits:
    """Module and local coordinates of crossings of one surface (arrays of equal length)."""

    module: np.ndarray  # dense module index (geometry-wide)
    eta_module: np.ndarray
    phi_module: np.ndarray
    u: np.ndarray
    v: np.ndarray
    # local axes at the crossing point (N, 3): used to express directions in the local frame
    e_u: np.ndarray
    e_v: np.ndarray
    e_n: np.ndarray


def module_id(hardware, barrel_endcap, layer_disk, eta_module, phi_module, side) -> np.ndarray:
    """Unique uint64 module identifier packed from the ATLAS-style fields.

    Bit layout (high to low): hardware 4 | barrel_endcap+2 4 | layer_disk 8 | eta_module+512 12 |
    phi_module 16 | side 4. Every field fits its width for this detector, so ids are unique.
    """
    hw = np.asarray(hardware, np.uint64)
    out = hw << np.uint64(48)
    out |= (np.asarray(barrel_endcap, np.int64) + 2).astype(np.uint64) << np.uint64(44)
    out |= np.asarray(layer_disk, np.int64).astype(np.uint64) << np.uint64(36)
    out |= (np.asarray(eta_module, np.int64) + 512).astype(np.uint64) << np.uint64(24)
    out |= np.asarray(phi_module, np.int64).astype(np.uint64) << np.uint64(8)
    out |= np.asarray(side, np.int64).astype(np.uint64)
    return out


class Geometry:
    """All surfaces of the detector, with flat arrays for the vectorised propagation."""

    def __init__(
        self, name: str, bfield: float, envelope_r: float, envelope_z: float, surfaces: list[Surface]
    ):
        self.name = name
        self.bfield = float(bfield)
        self.envelope_r = float(envelope_r)
        self.envelope_z = float(envelope_z)
        self.surfaces = surfaces
        offset = 0
        for s in surfaces:
            s.module_offset = offset
            offset += s.n_modules
        self.n_modules = offset
        cyl = [s for s in surfaces if s.kind == "cylinder"]
        disk = [s for s in surfaces if s.kind == "disk"]
        # the envelope is one more cylinder, index ENVELOPE: reaching it ends the propagation
        self.cyl_index = np.array([s.index for s in cyl] + [ENVELOPE], np.int64)
        self.cyl_r = np.array([s.r for s in cyl] + [self.envelope_r])
        self.cyl_half_z = np.array([s.half_z for s in cyl] + [np.inf])
        self.disk_index = np.array([s.index for s in disk], np.int64)
        self.disk_z = np.array([s.z for s in disk])
        self.disk_r_min = np.array([s.r_min for s in disk])
        self.disk_r_max = np.array([s.r_max for s in disk])
        self.x0 = np.array([s.x0 for s in surfaces])
        self.efficiency = np.array([s.efficiency for s in surfaces])
        self.sensitive = np.array([s.sensitive for s in surfaces])
        self.is_disk = np.array([s.kind == "disk" for s in surfaces])

    # ------------------------------------------------------------------ module lookup
    def locate(self, surface: Surface, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> ModuleHits:
        """Module indices and local (u, v) of points lying on ``surface``."""
        x, y, z = (np.asarray(a, dtype=np.float64) for a in (x, y, z))
        phi = np.arctan2(y, x)
        n = len(x)
        if surface.kind == "cylinder":
            nphi = int(surface.n_phi[0])
            dphi = TWO_PI / nphi
            j = np.minimum((np.mod(phi, TWO_PI) / dphi).astype(np.int64), nphi - 1)
            phi_c = (j + 0.5) * dphi
            length = 2.0 * surface.half_z / surface.n_z
            k = np.clip(((z + surface.half_z) / length).astype(np.int64), 0, surface.n_z - 1)
            z_c = -surface.half_z + (k + 0.5) * length
            dphi_loc = np.mod(phi - phi_c + np.pi, TWO_PI) - np.pi
            u = surface.ur * dphi_loc
            v = z - z_c
            cphi, sphi = np.cos(phi), np.sin(phi)
            e_u = np.stack([-sphi, cphi, np.zeros(n)], axis=1)
            e_v = np.tile([0.0, 0.0, 1.0], (n, 1))
            e_n = np.stack([cphi, sphi, np.zeros(n)], axis=1)
            module = surface.module_offset + k * nphi + j
            return ModuleHits(module, k - surface.n_z // 2, j, u, v, e_u, e_v, e_n)
        r = np.hypot(x, y)
        ring = np.clip(np.searchsorted(surface.ring_edges, r, side="right") - 1, 0, len(surface.n_phi) - 1)
        nphi = surface.n_phi[ring]
        dphi = TWO_PI / nphi
        j = np.minimum((np.mod(phi, TWO_PI) / dphi).astype(np.int64), nphi - 1)
        phi_c = (j + 0.5) * dphi
        r_c = 0.5 * (surface.ring_edges[ring] + surface.ring_edges[ring + 1])
        c, s = np.cos(phi_c), np.sin(phi_c)
        u = -s * x + c * y
        v = c * x + s * y - r_c
        e_u = np.stack([-s, c, np.zeros(n)], axis=1)
        e_v = np.stack([c, s, np.zeros(n)], axis=1)
        e_n = np.tile([0.0, 0.0, 1.0], (n, 1))
        ring_offset = np.concatenate([[0], np.cumsum(surface.n_phi)[:-1]])
        module = surface.module_offset + ring_offset[ring] + j
        return ModuleHits(module, ring, j, u, v, e_u, e_v, e_n)

    def module_centre(self, surface: Surface, module: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(phi_c, second coordinate) of dense module indices: z_c (barrel) or r_c (disk)."""
        local = np.asarray(module, np.int64) - surface.module_offset
        if surface.kind == "cylinder":
            nphi = int(surface.n_phi[0])
            j, k = local % nphi, local // nphi
            length = 2.0 * surface.half_z / surface.n_z
            return (j + 0.5) * TWO_PI / nphi, -surface.half_z + (k + 0.5) * length
        ring_offset = np.concatenate([[0], np.cumsum(surface.n_phi)])
        ring = np.searchsorted(ring_offset, local, side="right") - 1
        j = local - ring_offset[ring]
        r_c = 0.5 * (surface.ring_edges[ring] + surface.ring_edges[ring + 1])
        return (j + 0.5) * TWO_PI / surface.n_phi[ring], r_c

    def to_global(self, surface: Surface, module: np.ndarray, u: np.ndarray, v: np.ndarray, at=None):
        """Global (x, y, z) of local (u, v) on ``module``; ``at`` overrides the radius / z plane."""
        phi_c, w = self.module_centre(surface, module)
        if surface.kind == "cylinder":
            r = surface.r if at is None else at
            phi = phi_c + u / surface.ur
            return r * np.cos(phi), r * np.sin(phi), w + v
        zp = surface.z if at is None else at
        c, s = np.cos(phi_c), np.sin(phi_c)
        rad = w + v
        return c * rad - s * u, s * rad + c * u, np.full(len(u), zp)

    def module_normal(self, surface: Surface, module: np.ndarray) -> np.ndarray:
        phi_c, _ = self.module_centre(surface, module)
        n = len(phi_c)
        if surface.kind == "cylinder":
            return np.stack([np.cos(phi_c), np.sin(phi_c), np.zeros(n)], axis=1)
        return np.tile([0.0, 0.0, np.sign(surface.z)], (n, 1))

    def module_extent(
        self, surface: Surface, module: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(width along u, v_min, v_max) of modules, for noise placement and strip lengths."""
        local = np.asarray(module, np.int64) - surface.module_offset
        if surface.kind == "cylinder":
            nphi = int(surface.n_phi[0])
            half = surface.half_z / surface.n_z
            n = len(local)
            return np.full(n, TWO_PI * surface.ur / nphi), np.full(n, -half), np.full(n, half)
        ring_offset = np.concatenate([[0], np.cumsum(surface.n_phi)])
        ring = np.searchsorted(ring_offset, local, side="right") - 1
        lo, hi = surface.ring_edges[ring], surface.ring_edges[ring + 1]
        r_c = 0.5 * (lo + hi)
        return TWO_PI * r_c / surface.n_phi[ring], lo - r_c, hi - r_c

    # ------------------------------------------------------------------ whole-detector tables
    def modules(self) -> dict[str, np.ndarray]:
        """Table of every sensitive module: identifiers and centre position."""
        cols: dict[str, list] = {
            k: []
            for k in (
                "module",
                "surface",
                "hardware",
                "barrel_endcap",
                "layer_disk",
                "eta_module",
                "phi_module",
                "side",
            )
        }
        for s in self.surfaces:
            if not s.sensitive:
                continue
            local = np.arange(s.n_modules)
            module = s.module_offset + local
            if s.kind == "cylinder":
                nphi = int(s.n_phi[0])
                eta, phi = local // nphi - s.n_z // 2, local % nphi
            else:
                ring_offset = np.concatenate([[0], np.cumsum(s.n_phi)])
                eta = np.searchsorted(ring_offset, local, side="right") - 1
                phi = local - ring_offset[eta]
            n = len(local)
            cols["module"].append(module)
            cols["surface"].append(np.full(n, s.index))
            cols["hardware"].append(np.full(n, HARDWARE_CODE[s.hardware]))
            cols["barrel_endcap"].append(np.full(n, s.barrel_endcap))
            cols["layer_disk"].append(np.full(n, s.layer_disk))
            cols["eta_module"].append(eta)
            cols["phi_module"].append(phi)
            cols["side"].append(np.full(n, s.side))
        out = {k: np.concatenate(v).astype(np.int64) for k, v in cols.items()}
        out["module_id"] = module_id(
            out["hardware"],
            out["barrel_endcap"],
            out["layer_disk"],
            out["eta_module"],
            out["phi_module"],
            out["side"],
        )
        return out


# ---------------------------------------------------------------------- YAML loading
def _get(d: dict, key: str, default, where: str):
    if key in d:
        return d[key]
    if default is None:
        raise ConfigError(f"{where}: missing key {key!r}")
    return default


def load_geometry(path: str | Path) -> Geometry:
    """Build the detector from a ``config/detector/*.yaml`` description."""
    data = load_yaml(path)
    where = str(path)
    surfaces: list[Surface] = []

    def add(**kw) -> Surface:
        s = Surface(index=len(surfaces), **kw)
        surfaces.append(s)
        return s

    for i, p in enumerate(data.get("passive", []) or []):
        add(
            kind="cylinder",
            hardware="PASSIVE",
            barrel_endcap=0,
            layer_disk=i,
            side=0,
            r=float(p["r"]),
            half_z=float(p["half_z"]),
            x0=float(p.get("x0", 0.0)),
        )
    for hw in ("pixel", "strip"):
        det = data.get(hw)
        if not det:
            continue
        hardware = hw.upper()
        strip = hw == "strip"
        sides = 2 if strip else 1
        gap = float(det.get("side_gap", 0.0)) if strip else 0.0

        def common(layer: dict, w: str, det=det, strip=strip) -> dict:
            return dict(
                x0=float(layer.get("x0", _get(det, "x0", 0.0, w))),
                efficiency=float(layer.get("efficiency", _get(det, "efficiency", 1.0, w))),
                thickness=float(layer.get("thickness", _get(det, "thickness", None, w))),
                pitch_u=float(
                    layer.get("pitch" if strip else "pitch_u", det.get("pitch" if strip else "pitch_u"))
                ),
                pitch_v=0.0 if strip else float(layer.get("pitch_v", det.get("pitch_v"))),
            )

        for li, layer in enumerate(det.get("barrel", []) or []):
            w = f"{where}: {hw}.barrel[{li}]"
            pair = []
            for side in range(sides):
                offset = (side - 0.5) * gap if strip else 0.0
                stereo = float(layer.get("stereo", 0.0)) * (1 if side == 0 else -1)
                pair.append(
                    add(
                        kind="cylinder",
                        hardware=hardware,
                        barrel_endcap=0,
                        layer_disk=li,
                        side=side,
                        r=float(_get(layer, "r", None, w)) + offset,
                        u_radius=float(layer["r"]) if strip else 0.0,
                        half_z=float(_get(layer, "half_z", None, w)),
                        n_phi=np.array([int(_get(layer, "n_phi", None, w))]),
                        n_z=int(_get(layer, "n_z", None, w)),
                        stereo=stereo,
                        **common(layer, w),
                    )
                )
            _link_sides(pair)
        for di, disk in enumerate(det.get("endcap", []) or []):
            w = f"{where}: {hw}.endcap[{di}]"
            rings = np.asarray(_get(disk, "rings", None, w), dtype=np.float64)
            if rings.ndim != 2 or rings.shape[1] != 3 or np.any(rings[:, 1] <= rings[:, 0]):
                raise ConfigError(f"{w}: rings must be [[r_min, r_max, n_phi], ...] with r_max > r_min")
            if np.any(rings[1:, 0] < rings[:-1, 1]):
                raise ConfigError(f"{w}: rings overlap")
            edges = np.append(rings[:, 0], rings[-1, 1])
            for be in (-2, 2):
                pair = []
                for side in range(sides):
                    zabs = float(_get(disk, "z", None, w)) + ((side - 0.5) * gap if strip else 0.0)
                    stereo = float(disk.get("stereo", 0.0)) * (1 if side == 0 else -1)
                    pair.append(
                        add(
                            kind="disk",
                            hardware=hardware,
                            barrel_endcap=be,
                            layer_disk=di,
                            side=side,
                            z=np.sign(be) * zabs,
                            r_min=float(edges[0]),
                            r_max=float(edges[-1]),
                            n_phi=rings[:, 2].astype(np.int64),
                            ring_edges=edges,
                            stereo=stereo,
                            **common(disk, w),
                        )
                    )
                _link_sides(pair)
    env = data.get("envelope", {}) or {}
    return Geometry(
        name=str(data.get("name", Path(path).stem)),
        bfield=float(data.get("bfield", 2.0)),
        envelope_r=float(env.get("r_max", 1150.0)),
        envelope_z=float(env.get("z_max", 3100.0)),
        surfaces=surfaces,
    )


def _link_sides(pair: list[Surface]) -> None:
    if len(pair) == 2:
        pair[0].partner, pair[1].partner = pair[1].index, pair[0].index
        pair[0].pair_layer = pair[1].pair_layer = pair[0].index
