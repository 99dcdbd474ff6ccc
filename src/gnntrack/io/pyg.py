"""Graphs in acorn's PyTorch Geometric format: one ``.pyg`` file per event, both directions.

acorn (the GNN4ITk team's training framework) keeps each event as a ``torch_geometric`` ``Data``
object saved with ``torch.save``: hit (node) arrays, the truth graph as *track edges* with one
entry per truth edge for the particle properties, and, once a graph is built, the candidate
edges with their truth label, a map from each track edge to its candidate edge and, after an
edge classifier, the edge scores. ``FIELDS`` lists the attributes written here with their names
in acorn's two naming schemes (its default, unprefixed one and the ``variable_with_prefix`` one)
and where gnntrack takes each from. Files are named ``event<9-digit event number>.pyg`` as
acorn names them; acorn finds the event number as the last number in the file name.

Export (``export_pyg``) writes an events shard plus its graphs shard. Units follow acorn's
ATLAS inputs: lengths in mm, angles in rad, particle pT in MeV. acorn's truth label ``y`` is an
exact, *directed* match of a candidate edge with a track edge (as acorn computes it), while
gnntrack's ``y`` ignores direction; the export writes acorn's definition.

Import (``import_pyg``) reads such files back into a graphs shard for a gnntrack events shard:
nodes are matched to spacepoints by ``hit_id``, the edges are relabelled with gnntrack's own
truth and target definitions (``graph_store.label_edges``), and acorn's ``scores`` become
``scores/<stage>``, so graphs and scores of either framework are evaluated with one set of
definitions.

``.pyg`` files are pickles: by default they are read with ``torch.load(weights_only=True)`` and
only PyG's data classes allowed; ``trust=True`` unpickles fully (needed for the batch objects
acorn's edge-classifier stage saves; only for files from a trusted source).

torch_geometric is an optional dependency (``pip install 'gnntrack[pyg]'``), imported only when
a function here runs; without it they raise ``MissingDependencyError``.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_output
from .errors import InputError
from .event_store import Event, event_keys, read_event
from .graph_store import Graph, graph_keys, iter_graphs, make_graph, write_graphs

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'gnntrack[pyg]' (or: pip install torch_geometric)"

#: acorn's detector-region labels of its ITk configurations: (hardware, barrel_endcap) -> region,
#: hardware 0 = pixel, 1 = strip (gnntrack's ``hits/hardware``).
REGIONS = {(0, -2): 1, (1, -2): 2, (0, 0): 3, (1, 0): 4, (0, 2): 5, (1, 2): 6}

#: Stages whose scores the export writes as acorn's ``scores`` when none is chosen, in order.
DEFAULT_SCORE_STAGES = ("gnn", "filter")


class MissingDependencyError(ImportError):
    """An optional package that the requested feature needs is not installed."""


def require_pyg():
    """torch_geometric's ``Data`` class, or MissingDependencyError with the install command."""
    try:
        from torch_geometric.data import Data
    except ImportError as exc:
        raise MissingDependencyError(
            f"reading or writing acorn .pyg files needs the optional package torch_geometric, "
            f"which cannot be imported ({exc}); install it with: {INSTALL_HINT}"
        ) from None
    return Data


@dataclass(frozen=True)
class Field:
    """One attribute of acorn's PyG events."""

    name: str  # acorn's default (unprefixed) name
    prefixed: str  # the name with acorn's variable_with_prefix naming
    kind: str  # node, track (one per truth edge), edge (one per candidate edge) or event
    source: str  # what gnntrack writes there
    column: str | None = None  # the hits column copied as is, for node fields that are one


def _cluster_fields() -> list[Field]:
    out = []
    for i in (1, 2):
        for c in ("x", "y", "z", "r", "phi", "eta"):
            col = f"cl{i}_{c}"
            out.append(Field(f"cluster_{c}_{i}", f"hit_cluster_{c}_{i}", "node", f"hits/{col}", col))
        for acorn, ours in (
            ("count", "pixel_count"), ("charge_count", "charge_count"), ("loc_eta", "loc_eta"),
            ("loc_phi", "loc_phi"), ("glob_eta", "glob_eta"), ("glob_phi", "glob_phi"),
            ("eta_angle", "eta_angle"), ("phi_angle", "phi_angle"),
        ):  # fmt: skip
            col = f"cl{i}_{ours}"
            out.append(Field(f"{acorn}_{i}", f"hit_{acorn}_{i}", "node", f"hits/{col}", col))
        for c in ("x", "y", "z"):
            src = f"clusters/norm_{c} of hits/cluster_index_{i}" + (
                " (cluster 1 for pixels)" if i == 2 else ""
            )
            out.append(Field(f"norm_{c}_{i}", f"hit_norm_{c}_{i}", "node", src))
    return out


FIELDS: tuple[Field, ...] = (
    Field("hit_id", "hit_id", "node", "hits/hit_id (SPindex); rows in spacepoint order"),
    Field("x", "hit_x", "node", "hits/x [mm]", "x"),
    Field("hit_y", "hit_y", "node", "hits/y [mm] (acorn's unprefixed `y` is the edge label)", "y"),
    Field("z", "hit_z", "node", "hits/z [mm]", "z"),
    Field("r", "hit_r", "node", "hits/r [mm]", "r"),
    Field("phi", "hit_phi", "node", "hits/phi [rad]", "phi"),
    Field("eta", "hit_eta", "node", "hits/eta", "eta"),
    Field("region", "hit_region", "node", "1-6 from hits/hardware and hits/barrel_endcap (REGIONS)"),
    Field("module_id", "hit_module_id", "node", "hits/module_id (its 64 bits as int64)"),
    *_cluster_fields(),
    Field("track_edges", "track_edges", "track", "truth/edges, unique columns (acorn drops repeats)"),
    Field(
        "particle_id", "track_particle_id", "track", "subevent and zero-padded barcode, as acorn builds it"
    ),
    Field("pt", "track_particle_pt", "track", "particles/pt x 1000 [MeV]"),
    Field("radius", "track_particle_radius", "track", "particles/radius [mm]"),
    Field("primary", "track_particle_primary", "track", "particles/is_primary (barcode < 200000)"),
    Field("nhits", "track_particle_nhits", "track", "particles/n_spacepoints"),
    Field("pdgId", "track_particle_pdgId", "track", "particles/pdg_id"),
    Field("eta_particle", "track_particle_eta", "track", "particles/eta"),
    Field(
        "redundant_split_edges",
        "track_redundant_split_edges",
        "track",
        "not the edge nearest the production vertex into its module, as acorn computes it",
    ),  # fmt: skip
    Field("edge_index", "edge_index", "edge", "graph edge_index (hit rows)"),
    Field("y", "edge_y", "edge", "edge equals a track edge, direction included (acorn's label)"),
    Field("truth_map", "track_to_edge_map", "track", "edge of each track edge, -1 if not in the graph"),
    Field("scores", "edge_scores", "edge", "graph scores/<stage> (--scores)"),
    Field("event_id", "event_id", "event", "event number, 9 digits, as in the file name"),
    Field("config", "config", "event", "list of stage configs (acorn appends one per stage)"),
    Field("run_number", "run_number", "event", "gnntrack's own: the run number of the event key"),
)

_PLAIN = {f.prefixed: f.name for f in FIELDS}


def pyg_file_name(event_number: int, prefix: str = "") -> str:
    """acorn's file name of an event: ``[<prefix>_]event<9-digit number>.pyg``."""
    return f"{prefix + '_' if prefix else ''}event{int(event_number):09d}.pyg"


def _split_key(key: str, file=None) -> tuple[int, int]:
    run, _, number = key.rpartition("_")
    try:
        return int(run), int(number)
    except ValueError:
        raise InputError("event key is not <run>_<event>", file=file, event=key) from None


# ----------------------------------------------------------------------------------- export
def directed_match(edge_index: np.ndarray, track_edges: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """acorn's labels: ``y`` (each edge equals a track edge, same direction) and ``truth_map``
    (the edge of each track edge, -1 when the graph lacks it)."""
    n = np.int64(max(n, 1))
    e_code = edge_index[0].astype(np.int64) * n + edge_index[1]
    t_code = track_edges[0].astype(np.int64) * n + track_edges[1]
    order = np.argsort(e_code, kind="stable")
    e_sorted = e_code[order]
    truth_map = np.full(len(t_code), -1, np.int64)
    if len(e_code):
        pos = np.clip(np.searchsorted(e_sorted, t_code), 0, len(e_sorted) - 1)
        hit = e_sorted[pos] == t_code
        truth_map[hit] = order[pos[hit]]
    return np.isin(e_code, t_code), truth_map


def acorn_particle_ids(subevent: np.ndarray, barcode: np.ndarray) -> np.ndarray:
    """acorn's particle id: the subevent followed by the barcode zero-padded to the width of the
    event's largest barcode, read as an integer."""
    barcode = np.asarray(barcode, np.int64)
    width = len(str(int(barcode.max()))) if len(barcode) else 1
    return np.asarray(subevent, np.int64) * np.int64(10**width) + barcode


def redundant_split_edges(
    track_edges: np.ndarray, particle: np.ndarray, hits: dict, particles: dict
) -> np.ndarray:
    """True for a truth edge that is not its particle's primary edge into the target module: of
    the edges of one particle into one module, the primary one starts (then ends) nearest the
    particle's production vertex; the others lead to split clusters."""
    if track_edges.shape[1] == 0:
        return np.zeros(0, bool)
    v = [np.asarray(particles[c], np.float64)[particle] for c in ("vx", "vy", "vz")]

    def dist(rows):
        return np.sqrt(sum((np.asarray(hits[c], np.float64)[rows] - vc) ** 2 for c, vc in zip("xyz", v)))

    module = np.asarray(hits["module_id"]).astype(np.uint64)[track_edges[1]]
    order = np.lexsort((dist(track_edges[1]), dist(track_edges[0]), particle, module))
    m, p = module[order], particle[order]
    first = np.r_[True, (m[1:] != m[:-1]) | (p[1:] != p[:-1])]
    out = np.empty(len(order), bool)
    out[order] = ~first
    return out


def _region(hits: dict) -> np.ndarray:
    hw = np.asarray(hits["hardware"], np.int64)
    be = np.asarray(hits["barrel_endcap"], np.int64)
    out = np.zeros(len(hw), np.int64)
    for (h, b), label in REGIONS.items():
        out[(hw == h) & (be == b)] = label
    return out


def _node_arrays(event: Event) -> dict[str, np.ndarray]:
    h, cl = event.hits, event.clusters
    out = {"hit_id": np.asarray(h["hit_id"], np.int64)}
    out.update({f.name: np.asarray(h[f.column]) for f in FIELDS if f.column is not None})
    out["region"] = _region(h)
    out["module_id"] = np.ascontiguousarray(np.asarray(h["module_id"]).astype(np.uint64)).view(np.int64)
    idx1 = np.asarray(h["cluster_index_1"], np.int64)
    idx2 = np.asarray(h["cluster_index_2"], np.int64)
    idx2 = np.where(idx2 >= 0, idx2, idx1)  # pixels: acorn repeats cluster 1
    for i, idx in ((1, idx1), (2, idx2)):
        for c in ("x", "y", "z"):
            norm = np.asarray(cl[f"norm_{c}"])
            out[f"norm_{c}_{i}"] = np.where(idx >= 0, norm[np.maximum(idx, 0)], np.nan).astype(norm.dtype)
    return out


def _track_arrays(event: Event) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Track-like arrays (unique truth edges, acorn's particle features) and their particle rows."""
    te = np.asarray(event.truth_edges, np.int64).reshape(2, -1)
    tp = np.asarray(event.truth_edge_particle, np.int64)
    p = event.particles
    redundant = redundant_split_edges(te, tp, event.hits, p)
    te, first = np.unique(te, axis=1, return_index=True)
    tp, redundant = tp[first], redundant[first]
    pid = acorn_particle_ids(p["subevent"], p["barcode"])
    out = {
        "track_edges": te,
        "particle_id": pid[tp],
        "pt": np.asarray(p["pt"], np.float64)[tp] * 1000.0,
        "radius": np.asarray(p["radius"], np.float64)[tp],
        "primary": np.asarray(p["is_primary"]).astype(np.int64)[tp],
        "nhits": np.asarray(p["n_spacepoints"], np.int64)[tp],
        "pdgId": np.asarray(p["pdg_id"], np.int64)[tp],
        "eta_particle": np.asarray(p["eta"], np.float64)[tp],
        "redundant_split_edges": redundant,
    }
    return out, tp


def choose_scores(graph: Graph, stage: str | None, file=None) -> str | None:
    """The score stage the export writes as ``scores``: ``stage`` if given (it must exist), else
    the first of DEFAULT_SCORE_STAGES present, else the only one; None for unscored graphs."""
    if stage is not None:
        if stage not in graph.scores:
            raise InputError(
                f"no scores of stage {stage!r} (present: {sorted(graph.scores) or 'none'})",
                file=file, event=graph.key, field=f"scores/{stage}",
            )  # fmt: skip
        return stage
    for s in DEFAULT_SCORE_STAGES:
        if s in graph.scores:
            return s
    if len(graph.scores) > 1:
        raise InputError(
            f"several score stages {sorted(graph.scores)}: choose one with --scores",
            file=file, event=graph.key, field="scores",
        )  # fmt: skip
    return next(iter(graph.scores), None)


def to_pyg(
    event: Event,
    graph: Graph,
    *,
    scores: str | None = None,
    prefixed: bool = False,
    config: dict | None = None,
):
    """The acorn ``Data`` object of one event and its graph (see FIELDS)."""
    Data = require_pyg()
    import torch

    nodes = _node_arrays(event)
    tracks, _ = _track_arrays(event)
    ei = np.ascontiguousarray(np.asarray(graph.edge_index, np.int64).reshape(2, -1))
    y, truth_map = directed_match(ei, tracks["track_edges"], event.n_hits)
    arrays = {**nodes, **tracks, "edge_index": ei, "y": y, "truth_map": truth_map}
    if scores is not None:
        arrays["scores"] = np.asarray(graph.scores[scores], np.float32)
    names = {f.name: (f.prefixed if prefixed else f.name) for f in FIELDS}
    data = Data(**{names[k]: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()})
    data.num_nodes = event.n_hits
    data.event_id = f"{int(event.event_number):09d}"
    data.run_number = int(event.run_number)
    data.config = [dict(config or {})]
    return data


def export_pyg(
    events_path: str | Path,
    graphs_path: str | Path,
    outdir: str | Path,
    *,
    scores: str | None = None,
    prefixed: bool = False,
    event_prefix: str = "",
) -> list[Path]:
    """Write one acorn ``.pyg`` file per graph of ``graphs_path`` (with its event of
    ``events_path``) into ``outdir``; returns the written paths."""
    require_pyg()
    import torch

    outdir = Path(outdir)
    names: dict[str, str] = {}
    for key in graph_keys(graphs_path):
        name = pyg_file_name(_split_key(key, graphs_path)[1], event_prefix)
        if name in names:
            raise InputError(
                f"events {names[name]} and {key} have the same event number; acorn names files by "
                "event number alone, so export the runs into different folders",
                file=graphs_path, event=key,
            )  # fmt: skip
        names[name] = key
    outdir.mkdir(parents=True, exist_ok=True)
    written, n_dir_mismatch = [], 0
    config = {"source": "gnntrack", "events": str(events_path), "graphs": str(graphs_path)}
    for graph in iter_graphs(graphs_path):
        event = read_event(events_path, graph.key, tables=("hits", "clusters", "particles"))
        if event.n_hits != graph.n_hits:
            raise InputError(
                f"graph has {graph.n_hits} hits but the event has {event.n_hits}",
                file=graphs_path, event=graph.key, field="n_hits",
            )  # fmt: skip
        stage = choose_scores(graph, scores, graphs_path)
        data = to_pyg(event, graph, scores=stage, prefixed=prefixed, config={**config, "scores": stage})
        n_dir_mismatch += int((data["edge_y" if prefixed else "y"].numpy() != graph.y).sum())
        path = outdir / pyg_file_name(event.event_number, event_prefix)
        with atomic_output(path) as tmp:
            torch.save(data, tmp)
        written.append(path)
    if n_dir_mismatch:
        log.info(
            "%d edges are truth edges in reverse direction: gnntrack's y ignores direction, "
            "acorn's y (written) does not",
            n_dir_mismatch,
        )
    log.info("wrote %d .pyg files to %s", len(written), outdir)
    return written


# ----------------------------------------------------------------------------------- import
def _safe_globals() -> list:
    from torch_geometric.data import Data, storage
    from torch_geometric.data import data as data_mod

    names = ("DataEdgeAttr", "DataTensorAttr")
    extra = [getattr(data_mod, n) for n in names if hasattr(data_mod, n)]
    stores = [
        getattr(storage, n) for n in ("GlobalStorage", "NodeStorage", "EdgeStorage") if hasattr(storage, n)
    ]
    return [Data, *extra, *stores]


def _one_line(exc: Exception, limit: int = 200) -> str:
    return " ".join(str(exc).split())[:limit] or type(exc).__name__


def load_pyg(path: str | Path, trust: bool = False):
    """The ``Data`` object of a ``.pyg`` file (a one-event batch is unbatched).

    Without ``trust`` only tensors, plain Python values and PyG's data classes are unpickled.
    """
    require_pyg()
    import torch
    from torch_geometric.data import Batch
    from torch_geometric.data.data import BaseData

    path = Path(path)
    if not path.is_file():
        raise InputError("file does not exist", file=path)
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        refused = re.search(r"GLOBAL (\S+)|unrecognized function <([^ >]+)", str(exc))
        if trust or refused is None:
            raise InputError(f"not a readable .pyg file ({_one_line(exc)})", file=path) from None
        what = next(g for g in refused.groups() if g)
        raise InputError(
            f"holds Python objects that a safe load refuses ({what}); acorn's edge-classifier stage "
            "saves batch objects like this. If the file comes from a trusted source, read it with "
            "--trust-pickle (full unpickling can run code)",
            file=path,
        ) from None
    except (
        OSError,
        RuntimeError,
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        ImportError,
    ) as exc:
        raise InputError(f"not a readable .pyg file ({_one_line(exc)})", file=path) from None
    if isinstance(obj, Batch):
        if obj.num_graphs != 1:
            raise InputError(f"a batch of {obj.num_graphs} graphs, not one event", file=path)
        obj = obj.get_example(0)
    if not isinstance(obj, BaseData):
        raise InputError(f"holds a {type(obj).__name__}, not a torch_geometric Data object", file=path)
    return obj


def pyg_attributes(data) -> dict:
    """Attributes of a loaded event under acorn's unprefixed names (either naming is read)."""
    try:
        items = dict(data.items())
    except (RuntimeError, AttributeError, KeyError):  # Data pickled by PyG < 2: plain __dict__
        items = {k: v for k, v in vars(data).items() if not k.startswith("_")}
    return {_PLAIN.get(k, k): v for k, v in items.items()}


def _array(attrs: dict, name: str, file, event, ndim: int, required: bool = True) -> np.ndarray | None:
    import torch

    if name not in attrs or attrs[name] is None:
        if not required:
            return None
        raise InputError("missing attribute", file=file, event=event, field=name)
    v = attrs[name]
    arr = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
    if arr.ndim != ndim or (ndim == 2 and arr.shape[0] != 2):
        want = "(2, E)" if ndim == 2 else "1-D"
        raise InputError(f"shape {tuple(arr.shape)} is not {want}", file=file, event=event, field=name)
    return arr


def from_pyg(data, event: Event, *, stage: str = "acorn", file=None) -> Graph:
    """The gnntrack graph of one acorn event on the spacepoints of ``event``.

    Nodes are matched by ``hit_id``; labels are gnntrack's (``label_edges``); ``scores``, when
    present, become ``scores/<stage>``.
    """
    attrs = pyg_attributes(data)
    key = event.key
    hit_id = _array(attrs, "hit_id", file, key, 1)
    ei = _array(attrs, "edge_index", file, key, 2)
    if hit_id.dtype.kind not in "iu" or ei.dtype.kind not in "iu":
        bad = "hit_id" if hit_id.dtype.kind not in "iu" else "edge_index"
        raise InputError("values are not integers", file=file, event=key, field=bad)
    if ei.size and (ei.min() < 0 or ei.max() >= len(hit_id)):
        raise InputError(
            f"refers to node {int(ei.max()) if ei.max() >= len(hit_id) else int(ei.min())} of "
            f"{len(hit_id)} nodes", file=file, event=key, field="edge_index",
        )  # fmt: skip
    ours = np.asarray(event.hits["hit_id"], np.int64)
    order = np.argsort(ours, kind="stable")
    if len(ours) and np.any(ours[order][1:] == ours[order][:-1]):
        raise InputError("hit_id is not unique", event=key, field="hits/hit_id")
    pos = np.clip(np.searchsorted(ours[order], hit_id), 0, max(len(ours) - 1, 0))
    found = ours[order][pos] == hit_id if len(ours) else np.zeros(len(hit_id), bool)
    if not found.all():
        missing = hit_id[~found]
        raise InputError(
            f"{len(missing)} hit_id(s) are not spacepoints of the event (first: {int(missing[0])})",
            file=file, event=key, field="hit_id",
        )  # fmt: skip
    rows = order[pos]
    edge_index = rows[ei.astype(np.int64)]
    scores = {}
    s = _array(attrs, "scores", file, key, 1, required=False)
    if s is not None:
        if len(s) != ei.shape[1]:
            raise InputError(f"{len(s)} scores for {ei.shape[1]} edges", file=file, event=key, field="scores")
        scores[stage] = s.astype(np.float32)
    graph = make_graph(edge_index, event, scores)
    y = _array(attrs, "y", file, key, 1, required=False)
    if y is not None and len(y) == graph.n_edges:
        n_diff = int((y.astype(bool) != graph.y).sum())
        if n_diff:
            log.info(
                "%s: acorn's y differs from gnntrack's truth label on %d of %d edges (acorn's "
                "label includes the direction and its own truth graph)", file, n_diff, graph.n_edges,
            )  # fmt: skip
    return graph


def _event_number(path: Path) -> int:
    numbers = re.findall(r"[0-9]+", path.name)
    if not numbers:
        raise InputError("no event number in the file name (acorn names files event<number>.pyg)", file=path)
    return int(numbers[-1])


def pyg_files(sources: Iterable[str | Path]) -> list[Path]:
    """``.pyg`` files of ``sources`` (files as given, folders searched for ``*.pyg``)."""
    out = []
    for src in sources:
        src = Path(src)
        if src.is_dir():
            found = sorted(src.glob("*.pyg"))
            if not found:
                raise InputError("folder holds no .pyg files", file=src)
            out += found
        elif src.is_file():
            out.append(src)
        else:
            raise InputError("file or folder does not exist", file=src)
    return out


def _scalar(v):
    while isinstance(v, (list, tuple)) and len(v) == 1:
        v = v[0]
    if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
        v = v.item()
    return v


def import_pyg(
    sources: Sequence[str | Path],
    events_path: str | Path,
    output: str | Path,
    *,
    stage: str = "acorn",
    trust: bool = False,
) -> list[str]:
    """Read the acorn ``.pyg`` files of ``sources`` that belong to events of ``events_path``
    into the graphs shard ``output`` (stage ``stage``); returns the event keys written.

    A file belongs to an event when the last number of its name is the event number (and its
    ``event_id``, and ``run_number`` when present, agree). Files of other events are skipped
    (another shard's), as are events without a file; both are logged.
    """
    require_pyg()
    files = pyg_files(sources)
    keys = event_keys(events_path)
    by_number: dict[int, list[str]] = {}
    for key in keys:
        by_number.setdefault(_split_key(key, events_path)[1], []).append(key)
    matched: dict[str, Path] = {}
    graphs: dict[str, Graph] = {}
    n_other = 0
    for f in files:
        number = _event_number(f)
        if number not in by_number:
            n_other += 1
            continue
        data = load_pyg(f, trust)
        attrs = pyg_attributes(data)
        event_id = _scalar(attrs.get("event_id"))
        if event_id is not None and str(event_id).strip().isdigit() and int(event_id) != number:
            raise InputError(
                f"event_id {event_id} does not match the file name's event number {number}",
                file=f, field="event_id",
            )  # fmt: skip
        candidates = by_number[number]
        run = _scalar(attrs.get("run_number"))
        if run is not None:
            candidates = [k for k in candidates if _split_key(k)[0] == int(run)]
            if not candidates:
                n_other += 1
                continue
        if len(candidates) > 1:
            raise InputError(
                f"event number {number} is in several runs of the events file ({candidates}) and the "
                "file has no run_number", file=f, field="event_id",
            )  # fmt: skip
        key = candidates[0]
        if key in matched:
            raise InputError(f"event {key} also in {matched[key]}", file=f, event=key)
        matched[key] = f
        event = read_event(events_path, key, tables=("hits", "particles"))
        graphs[key] = from_pyg(data, event, stage=stage, file=f)
    if not graphs:
        raise InputError(
            f"none of the {len(files)} .pyg file(s) belongs to an event of this file", file=events_path
        )
    written = [k for k in keys if k in graphs]
    write_graphs(output, [graphs[k] for k in written], stage)
    if n_other:
        log.info("%d .pyg file(s) belong to events not in %s (skipped)", n_other, events_path)
    if len(written) < len(keys):
        log.warning("%d event(s) of %s have no .pyg file", len(keys) - len(written), events_path)
    log.info("imported %d graphs into %s (stage %s)", len(written), output, stage)
    return written
