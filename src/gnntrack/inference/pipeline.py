"""One-process inference: events -> graph -> filter -> GNN -> track candidates, per-stage timed.

This is the production inference path (rule ``infer``, docs/workflow.md) and the one the benchmark
measures. For each event the hits are read once and moved to the device; every later stage
consumes and produces device tensors, so nothing returns to the host until the tracks are
written. The physics is that of the stage-by-stage files path (``build_graphs`` ->
``apply_filter`` -> ``score_graphs`` -> ``build_tracks``): same features, same graph
construction code, same cuts, hence the same tracks (tested).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..io.errors import InputError
from ..io.event_store import Event, iter_events
from ..io.features import node_features
from ..io.track_store import TrackRecord, write_tracks
from ..track_building import Tracks, build_tracks
from ..track_building.build import resolve_score_cut
from ..training.device import resolve_device
from .config import DEFAULT_FILTER_CUT, InferenceConfig, as_inference_config
from .runtime import ModelRunner
from .timing import StageTimer

log = logging.getLogger(__name__)


@dataclass
class EventResult:
    """Everything one event's pass through the pipeline produced (tensors on the device)."""

    key: str
    run_number: int
    event_number: int
    n_hits: int
    edge_index: torch.Tensor  # (2, E) the graph the GNN scored (after the filter)
    scores: torch.Tensor  # (E,) GNN edge scores
    tracks: Tracks
    timing: dict[str, float]
    n_edges: dict[str, int] = field(default_factory=dict)  # build_edges / filtering / gnn (above cut)

    def record(self, store_graph: bool = True) -> TrackRecord:
        """The tracks-file record (CPU copies) of this event."""
        return TrackRecord(
            key=self.key,
            tracks=self.tracks.numpy(),
            n_hits=self.n_hits,
            edge_index=self.edge_index.cpu().numpy() if store_graph else None,
            scores=self.scores.cpu().numpy() if store_graph else None,
            timing=dict(self.timing),
            run_number=self.run_number,
            event_number=self.event_number,
        )


@dataclass
class EventTensors:
    """Device-side inputs of one event: node-feature matrices per feature set and hit columns."""

    key: str
    run_number: int
    event_number: int
    n_hits: int
    features: dict[tuple, torch.Tensor]
    hits: dict[str, torch.Tensor]


def _feature_spec(model: torch.nn.Module) -> tuple[tuple[str, ...], tuple[tuple[str, float], ...]]:
    names = tuple(getattr(model, "node_features", ()) or ())
    if not names:
        raise ValueError(f"{type(model).__name__} carries no .node_features; cannot build its input")
    scales = getattr(model, "feature_scales", None) or {}
    return names, tuple(sorted((k, float(v)) for k, v in scales.items()))


def _model_attr(model, name: str):
    """A graph-construction setting stored with the embedding model (attribute or config)."""
    value = getattr(model, name, None)
    if value is None:
        value = (getattr(model, "config", None) or {}).get(name)
    return value


class Pipeline:
    """The inference chain for one event at a time, with its models resident on ``device``.

    ``module_map`` (a ``gnntrack.graph_construction.ModuleMap``) or ``embedding`` (metric
    learning model) builds the graph; ``filter_model`` is optional; ``gnn_model`` is required.
    """

    def __init__(
        self,
        cfg: InferenceConfig | dict | None = None,
        module_map=None,
        embedding: torch.nn.Module | None = None,
        filter_model: torch.nn.Module | None = None,
        gnn_model: torch.nn.Module | None = None,
        device: str | torch.device = "auto",
    ):
        self.cfg = as_inference_config(cfg)
        self.device = resolve_device(device)
        if gnn_model is None:
            raise ValueError("the inference pipeline needs a GNN model")
        method = self.cfg.graph_method
        if method == "auto":
            if (module_map is None) == (embedding is None):
                raise ValueError("give exactly one of module_map / embedding (or set graph_method)")
            method = "module_map" if module_map is not None else "metric_learning"
        if method == "module_map" and module_map is None:
            raise ValueError("graph_method 'module_map' needs a module map")
        if method == "metric_learning" and embedding is None:
            raise ValueError("graph_method 'metric_learning' needs an embedding model")
        self.method = method
        self.module_map = module_map
        self.map_device = self.device if self.cfg.module_map_on_device else torch.device("cpu")
        if module_map is not None and method == "module_map":
            # same windows as the stage-by-stage path (graph_construction's make_builder)
            self.module_map = module_map.with_cuts(
                self.cfg.module_map_cut,
                self.cfg.module_map_tolerance,
                self.cfg.module_map_n_sigma,
                device=self.map_device,
            )
        self.embedding = embedding.to(self.device).eval() if embedding is not None else None
        use_filter = filter_model is not None and self.cfg.filter
        self.filter_model = filter_model.to(self.device).eval() if use_filter else None
        self.gnn_model = gnn_model.to(self.device).eval()
        # the edge cuts: the config's, else the ones stored with the models at training time
        filter_cut = self.cfg.filter_cut
        if filter_cut is None:
            filter_cut = float(getattr(filter_model, "score_cut", DEFAULT_FILTER_CUT))
        self.cfg = dataclasses.replace(
            self.cfg,
            filter_cut=filter_cut,
            track_building=resolve_score_cut(self.cfg.track_building, gnn_model),
        )
        rt, amp = self.cfg.runtime, self.cfg.amp
        self._runners = {
            # the embedding stays fp32: bf16 moves points across r_max (on an H200 it dropped 12 %
            # of the radius-graph edges, docs/performance.md) and saves nothing on a ~ms stage
            name: ModelRunner(m, self.device, rt, "none" if name == "embedding" else amp)
            for name, m in (
                ("embedding", self.embedding),
                ("filter", self.filter_model),
                ("gnn", self.gnn_model),
            )
            if m is not None and (name != "embedding" or method == "metric_learning")
        }
        self.r_max, self.k_max = self._radius_settings()
        self._hit_columns = self._needed_hit_columns()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_files(
        cls,
        cfg: InferenceConfig | dict | None = None,
        module_map=None,
        embedding=None,
        filter_model=None,
        gnn_model=None,
        device: str | torch.device = "auto",
    ) -> Pipeline:
        """Build from file paths (or already loaded objects, passed through)."""
        from ..models import load_model

        dev = resolve_device(device)
        cfg = as_inference_config(cfg)

        def model(obj):
            if obj is None or isinstance(obj, torch.nn.Module):
                return obj
            return load_model(obj, dev)

        mm = module_map
        if mm is not None and isinstance(mm, (str, Path)):
            from ..graph_construction import ModuleMap

            mm = ModuleMap.load(mm, dev if cfg.module_map_on_device else "cpu")
        return cls(cfg, mm, model(embedding), model(filter_model), model(gnn_model), dev)

    def _radius_settings(self) -> tuple[float | None, int | None]:
        """r_max / k_max resolved exactly as graph construction's ``EmbeddingBuilder`` does."""
        if self.method != "metric_learning":
            return None, None
        from ..graph_construction import EmbeddingBuilder

        b = EmbeddingBuilder(
            self.embedding, self.cfg.r_max, self.cfg.k_max, self.cfg.neighbour_backend, self.device
        )
        return b.r_max, b.k_max

    def _needed_hit_columns(self) -> tuple[str, ...]:
        from ..graph_construction.geometry import GEOMETRY_COLUMNS

        cols = list(GEOMETRY_COLUMNS)
        if self.method == "module_map":
            for c in getattr(self.module_map, "hit_columns", ("module_id",)):
                if c not in cols:
                    cols.append(c)
        if self.cfg.track_building.min_pt is not None:  # the candidates' pT estimate
            cols += [c for c in ("x", "y") if c not in cols]
        return tuple(cols)

    # ------------------------------------------------------------------ stages
    def load(self, hits: Mapping[str, np.ndarray], key: str = "", run_number: int = 0, event_number: int = 0):
        """Data loading: node-feature matrices and the hit columns graph construction needs, on device."""
        from ..graph_construction.geometry import hits_to_tensors

        features = {}
        for m in (self.embedding, self.filter_model, self.gnn_model):
            if m is None:
                continue
            spec = _feature_spec(m)
            if spec not in features:
                x = node_features(hits, spec[0], dict(spec[1]))
                features[spec] = torch.from_numpy(x).to(self.device, non_blocking=True)
        hit_t = hits_to_tensors(hits, self._hit_columns, self.device)
        n_hits = len(hits["x"])
        return EventTensors(key, int(run_number), int(event_number), n_hits, features, hit_t)

    def required_hit_columns(self) -> list[str]:
        """Hit columns an event must have: ``x`` (sets the hit count), what graph building reads
        and the models' features; inference reads only these."""
        cols = ["x", *(c for c in self._hit_columns if c != "x")]
        for m in (self.embedding, self.filter_model, self.gnn_model):
            if m is not None:
                cols += [c for c in _feature_spec(m)[0] if c not in cols]
        return cols

    def check_hits(self, hits: Mapping[str, np.ndarray], file=None, key=None) -> None:
        """InputError naming file/event/column for a missing or ragged column or a non-finite coordinate."""
        if "x" not in hits:
            raise InputError("missing hit column", file=file, event=key, field="hits/x")
        n = len(hits["x"])
        for c in self.required_hit_columns():
            if c not in hits:
                raise InputError("missing hit column", file=file, event=key, field=f"hits/{c}")
            if len(hits[c]) != n:
                raise InputError(
                    f"length {len(hits[c])} != {n} hits", file=file, event=key, field=f"hits/{c}"
                )
        for c in ("r", "phi", "z"):
            if not np.all(np.isfinite(hits[c])):
                raise InputError("non-finite coordinate", file=file, event=key, field=f"hits/{c}")

    def _x(self, ev: EventTensors, model) -> torch.Tensor:
        return ev.features[_feature_spec(model)]

    def build_graph(self, ev: EventTensors, timer: StageTimer) -> torch.Tensor:
        """Embedding (metric learning) and edge building; returns outward-directed (2, E)."""
        from ..graph_construction.geometry import orient_outward

        if self.method == "metric_learning":
            from ..graph_construction.neighbours import radius_graph

            with timer.stage("embedding"):
                points = self._runners["embedding"](self._x(ev, self.embedding))
            with timer.stage("build_edges"):
                pairs = radius_graph(points, self.r_max, self.k_max, backend=self.cfg.neighbour_backend)
                edge_index = orient_outward(pairs, ev.hits)
            return edge_index
        with timer.stage("build_edges"):
            # the map moves the hit columns it needs to its own device (CPU in the baseline)
            edge_index = self.module_map.build_edges(ev.hits).to(self.device)
        return edge_index

    def filter_edges(self, ev: EventTensors, edge_index: torch.Tensor, timer: StageTimer) -> torch.Tensor:
        if self.filter_model is None:
            return edge_index
        with timer.stage("filtering"):
            x = self._x(ev, self.filter_model)
            run = self._runners["filter"]
            chunk = self.cfg.filter_chunk
            keep = torch.empty(edge_index.shape[1], dtype=torch.bool, device=self.device)
            for s in range(0, edge_index.shape[1], chunk):
                scores = torch.sigmoid(run(x, edge_index[:, s : s + chunk]))
                keep[s : s + chunk] = scores >= self.cfg.filter_cut
            edge_index = edge_index[:, keep]
        return edge_index

    def score(self, ev: EventTensors, edge_index: torch.Tensor, timer: StageTimer) -> torch.Tensor:
        with timer.stage("gnn"):
            if edge_index.shape[1] == 0:
                return torch.zeros(0, device=self.device)
            x = self._x(ev, self.gnn_model)
            # Hits without an edge never reach an edge score (message passing only runs along
            # edges and every node update is row-wise), so the GNN runs on the touched hits
            # only: exact, and much cheaper on sparse graphs (module map: most hits isolated).
            nodes = torch.unique(edge_index)
            if nodes.numel() < x.shape[0]:
                x, edge_index = x[nodes], torch.searchsorted(nodes, edge_index)
            scores = torch.sigmoid(self._runners["gnn"](x, edge_index))
        return scores

    def label(self, ev: EventTensors, edge_index, scores, timer: StageTimer) -> Tracks:
        with timer.stage("labelling"):
            tracks = build_tracks(edge_index, scores, ev.n_hits, self.cfg.track_building, hits=ev.hits)
        return tracks

    # ------------------------------------------------------------------ whole event
    def run_tensors(self, ev: EventTensors, timer: StageTimer | None = None) -> EventResult:
        """Graph construction -> filter -> GNN -> track building on already loaded tensors."""
        timer = timer or StageTimer(self.device)
        with torch.inference_mode():
            edge_index = self.build_graph(ev, timer)
            n_built = int(edge_index.shape[1])
            edge_index = self.filter_edges(ev, edge_index, timer)
            scores = self.score(ev, edge_index, timer)
            tracks = self.label(ev, edge_index, scores, timer)
        n_pass = int((scores > self.cfg.track_building.score_cut).sum())
        return EventResult(
            key=ev.key,
            run_number=ev.run_number,
            event_number=ev.event_number,
            n_hits=ev.n_hits,
            edge_index=edge_index,
            scores=scores,
            tracks=tracks,
            timing=timer.as_dict(),
            n_edges={"build_edges": n_built, "filtering": int(edge_index.shape[1]), "gnn": n_pass},
        )

    def run_event(self, event: Event, timer: StageTimer | None = None) -> EventResult:
        """One in-memory event; data loading = building the device tensors."""
        timer = timer or StageTimer(self.device)
        self.check_hits(event.hits, None, event.key)
        with timer.stage("data_loading"):
            ev = self.load(event.hits, event.key, event.run_number, event.event_number)
        return self.run_tensors(ev, timer)

    def iter_file(self, event_file: str | Path, keys: list[str] | None = None) -> Iterator[EventResult]:
        """Every event of a shard; data loading includes reading the hits from the HDF5 file."""
        columns = {"hits": self.required_hit_columns()}
        events = iter_events(event_file, keys, tables=("hits",), columns=columns, truth=False)
        while True:
            timer = StageTimer(self.device)
            with timer.stage("data_loading"):
                event = next(events, None)
                if event is None:
                    break
                self.check_hits(event.hits, event_file, event.key)
                ev = self.load(event.hits, event.key, event.run_number, event.event_number)
            yield self.run_tensors(ev, timer)


def run_infer(
    event_file: str | Path,
    output: str | Path,
    cfg: InferenceConfig | dict | None = None,
    module_map=None,
    embedding=None,
    filter_model=None,
    gnn_model=None,
    device: str | torch.device = "auto",
) -> list[dict[str, float]]:
    """Run the whole chain on one events shard and write the tracks HDF5 (atomically).

    Model arguments are file paths or loaded objects. Each event's record holds the track
    candidates, the final scored graph (``store_graph``) and the per-stage seconds. Returns the
    per-event timings.
    """
    pipe = Pipeline.from_files(cfg, module_map, embedding, filter_model, gnn_model, device)
    records, timings = [], []
    for res in pipe.iter_file(event_file):
        records.append(res.record(pipe.cfg.store_graph))
        timings.append(res.timing)
        log.info(
            "event %s: %d hits, %d -> %d edges, %d tracks, %.3f s",
            res.key,
            res.n_hits,
            res.n_edges["build_edges"],
            res.n_edges["filtering"],
            len(res.tracks),
            res.timing["total"],
        )
    write_tracks(output, records)
    return timings
