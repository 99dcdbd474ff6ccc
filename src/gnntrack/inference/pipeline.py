"""One-process inference: events -> graph -> filter -> GNN -> track candidates, per-stage timed.

This is the production inference path (rule ``infer``, docs/workflow.md) and the one the benchmark
measures. ``Pipeline.stages`` is a list of stage objects, each called on one ``EventData``:
``GraphBuilder`` -> ``EdgeClassifier`` (filter, drops edges) -> ``EdgeClassifier`` (GNN) ->
``TrackBuilder``, each timed under its row of the timing table. For each event the hits are
read once and moved to the device; every later stage consumes and produces device tensors, so
nothing returns to the host until the tracks are written. The workflow's file-by-file rules
(``build_graphs``, ``apply_filter``, ``score_gnn``) call the same stage objects on stored events
and graphs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..device import resolve_device
from ..edge_classification import EdgeClassifier
from ..edge_classification.regions import region_masks
from ..event_data import EventData, HostEvent, feature_spec
from ..graph_construction.stage import GraphBuilder
from ..io.errors import InputError
from ..io.event_store import Event, event_keys, iter_events
from ..io.track_store import TrackRecord, write_tracks
from ..models.compression import quantize_int8
from ..progress import progress, safe_total, shard_name
from ..track_building import Tracks
from ..track_building.build import resolve_score_cut
from ..track_building.stage import TrackBuilder
from .allocator import hold_freed_memory
from .config import DEFAULT_FILTER_CUT, InferenceConfig, as_inference_config
from .prefetch import Prefetcher
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
        hgnn_model=None,
    ):
        self.cfg = as_inference_config(cfg)
        #: track_building.method "hgnn": the trained HGNN (model or file; runs on the CPU)
        self.hgnn_model = hgnn_model
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
        if self.cfg.int8:
            if self.device.type != "cpu":
                raise ValueError("inference int8 (torch.ao dynamic quantisation) runs on the CPU only")
            self.gnn_model = quantize_int8(self.gnn_model)
            if self.filter_model is not None:
                self.filter_model = quantize_int8(self.filter_model)
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
        self.stages = self._make_stages()
        self.hgnn_model = self.stages[-1].hgnn_model  # loaded (None unless the method is hgnn)
        self.graph_builder = self.stages[0]
        self.r_max, self.k_max = self.graph_builder.r_max, self.graph_builder.k_max
        self._hit_columns = self._needed_hit_columns()
        #: run region by region: the grid of ``cfg.regions`` has more than one region
        self.regional = self.cfg.regions.n_regions > 1

    def _make_stages(self) -> list:
        """Graph building, the filter (when used), the GNN and track building, in order."""
        if self.method == "metric_learning":
            graph = GraphBuilder(
                embedding=self.embedding, r_max=self.cfg.r_max, k_max=self.cfg.k_max,
                backend=self.cfg.neighbour_backend, runner=self._runners["embedding"], device=self.device,
            )  # fmt: skip
        else:
            graph = GraphBuilder(module_map=self.module_map, device=self.device)
        stages = [graph]
        if self.filter_model is not None:
            stages.append(
                EdgeClassifier(
                    "filter",
                    self.filter_model,
                    self.cfg.filter_cut,
                    prune=True,
                    runner=self._runners["filter"],
                    chunk_size=self.cfg.filter_chunk,
                    timer_stage="filtering",
                )  # fmt: skip
            )
        stages.append(
            EdgeClassifier(
                "gnn", self.gnn_model, self.cfg.track_building.score_cut, runner=self._runners["gnn"]
            )
        )
        stages.append(TrackBuilder(self.cfg.track_building, score_stage="gnn", hgnn_model=self.hgnn_model))
        return stages

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
        hgnn_model=None,
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
        return cls(cfg, mm, model(embedding), model(filter_model), model(gnn_model), dev, hgnn_model)

    def _needed_hit_columns(self) -> tuple[str, ...]:
        cols = []
        for stage in self.stages:
            cols += [c for c in getattr(stage, "hit_columns", ()) if c not in cols]
        return tuple(cols)

    # ------------------------------------------------------------------ stages
    def load(self, hits: Mapping[str, np.ndarray], key: str = "", run_number: int = 0, event_number: int = 0):
        """Data loading: node-feature matrices and the hit columns the stages read, on the device."""
        specs = [
            feature_spec(m) for m in (self.embedding, self.filter_model, self.gnn_model) if m is not None
        ]
        return EventData.from_hits(hits, self._hit_columns, specs, self.device, key, run_number, event_number)

    def required_hit_columns(self) -> list[str]:
        """Hit columns an event must have: ``x`` (sets the hit count), what graph building reads
        and the models' features; inference reads only these."""
        cols = ["x", *(c for c in self._hit_columns if c != "x")]
        for m in (self.embedding, self.filter_model, self.gnn_model):
            if m is not None:
                cols += [c for c in feature_spec(m)[0] if c not in cols]
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

    def _x(self, ev: EventData, model) -> torch.Tensor:
        return ev.node_features(model)

    def build_graph(self, ev: EventData, timer: StageTimer) -> torch.Tensor:
        """Graph construction alone (embedding and edge building); returns outward-directed (2, E)."""
        return self.graph_builder(ev, timer).edge_index

    # ------------------------------------------------------------------ regional inference
    def region_masks(self, ev: EventData) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(hit rows of the region incl. margin, bool core mask over those rows) per region of
        ``cfg.regions`` (``edge_classification.regions.region_masks`` on the hits' η, φ)."""
        eta, phi = ev.hits["eta"].cpu().numpy(), ev.hits["phi"].cpu().numpy()
        out = []
        for region, core in region_masks(eta, phi, self.cfg.regions):
            rows = np.flatnonzero(region)
            out.append((torch.from_numpy(rows).to(ev.device), torch.from_numpy(core[rows]).to(ev.device)))
        return out

    def run_region(
        self, ev: EventData, rows: torch.Tensor, core: torch.Tensor, timer: StageTimer | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
        """Graph building, filter and GNN on the hits ``rows`` of ``ev`` (one region, core +
        margin). Returns the edges the region owns (inner hit in its core: ``core`` over
        ``rows``) in event hit rows, their per-edge data (``score/<stage>``) and the number of
        edges the region built before the filter (all, owned or not)."""
        sub = EventData(
            key=ev.key,
            run_number=ev.run_number,
            event_number=ev.event_number,
            n_hits=int(rows.numel()),
            device=ev.device,
            hits={k: v.index_select(0, rows) for k, v in ev.hits.items()},
            features={k: v.index_select(0, rows) for k, v in ev.features.items()},
        )
        for stage in self.stages[:-1]:
            stage(sub, timer)
        owned = core[sub.edge_index[0]]
        edge_index = rows[sub.edge_index[:, owned]]
        return edge_index, {k: v[owned] for k, v in sub.edge_data.items()}, sub.n_edges["build_edges"]

    def merge_regions(self, ev: EventData, parts: list[tuple[torch.Tensor, dict, int]]) -> None:
        """The owned edges of every region as one event graph (sorted by inner, outer hit)."""
        edge_index = torch.cat([p[0] for p in parts], 1)
        keys = parts[0][1].keys() if parts else ()
        data = {k: torch.cat([p[1][k] for p in parts]) for k in keys}
        order = torch.argsort(edge_index[0] * max(ev.n_hits, 1) + edge_index[1])
        ev.set_graph(edge_index[:, order], **{k: v[order] for k, v in data.items()})
        ev.n_edges["build_edges"] = int(sum(p[2] for p in parts))  # incl. margin edges, as computed

    def _run_regional(self, ev: EventData, timer: StageTimer) -> None:
        with timer.stage("regions"):
            masks = self.region_masks(ev)
        parts = [self.run_region(ev, rows, core, timer) for rows, core in masks]
        with timer.stage("regions"):
            self.merge_regions(ev, parts)
        self.stages[-1](ev, timer)

    def run_tensors(self, ev: EventData, timer: StageTimer | None = None) -> EventResult:
        """Every stage in order on already loaded tensors (region by region when ``regional``:
        ``run_region`` per region, ``merge_regions``, then track building once)."""
        timer = timer or StageTimer(self.device)
        with torch.inference_mode():
            if not self.regional:
                for stage in self.stages:
                    stage(ev, timer)
            else:
                self._run_regional(ev, timer)
        return EventResult(
            key=ev.key,
            run_number=ev.run_number,
            event_number=ev.event_number,
            n_hits=ev.n_hits,
            edge_index=ev.edge_index,
            scores=ev.scores("gnn"),
            tracks=ev.tracks,
            timing=timer.as_dict(),
            n_edges={
                "build_edges": ev.n_edges["build_edges"],
                "filtering": int(ev.edge_index.shape[1]),
                "gnn": ev.n_edges["labelling"],
            },
        )

    def run_event(self, event: Event, timer: StageTimer | None = None) -> EventResult:
        """One in-memory event; data loading = building the device tensors."""
        timer = timer or StageTimer(self.device)
        self.check_hits(event.hits, None, event.key)
        with timer.stage("data_loading"):
            ev = self.load(event.hits, event.key, event.run_number, event.event_number)
        return self.run_tensors(ev, timer)

    def prefetch_depth(self) -> int:
        """Events read ahead by ``iter_file``: ``cfg.prefetch``, or when unset 1 on CUDA, 0 elsewhere."""
        if self.cfg.prefetch is not None:
            return int(self.cfg.prefetch)
        return 1 if self.device.type == "cuda" else 0

    def prepare(self, event: Event, file=None) -> HostEvent:
        """The host half of data loading: check the hits, build the node features and the hit
        columns as CPU tensors (page-locked on CUDA, so the transfer can be asynchronous)."""
        self.check_hits(event.hits, file, event.key)
        specs = [
            feature_spec(m) for m in (self.embedding, self.filter_model, self.gnn_model) if m is not None
        ]
        return HostEvent.from_hits(
            event.hits, self._hit_columns, specs, event.key, event.run_number, event.event_number,
            pin_memory=self.device.type == "cuda",
        )  # fmt: skip

    def _prepared(self, event_file, keys) -> Iterator[HostEvent]:
        columns = {"hits": self.required_hit_columns()}
        events = iter_events(event_file, keys, tables=("hits",), columns=columns, truth=False)
        with contextlib.closing(events):
            for event in events:
                yield self.prepare(event, event_file)

    def iter_file(
        self, event_file: str | Path, keys: list[str] | None = None, prefetch: int | None = None
    ) -> Iterator[EventResult]:
        """Every event of a shard; data loading includes reading the hits from the HDF5 file.

        ``prefetch`` (default ``prefetch_depth()``): events a reader thread prepares ahead (file
        read, checks, node features, pinned copies) while the current one runs through the
        stages; 0 reads each event in turn. With prefetching, an event's ``data_loading`` is the
        wait for its prepared copy plus the transfer to the device, so per-event totals measure
        what the stages cost the consumer and reading hidden behind compute is not counted.
        """
        depth = self.prefetch_depth() if prefetch is None else int(prefetch)
        if depth < 0:
            raise ValueError(f"prefetch must be >= 0, got {depth}")
        if depth:
            source = Prefetcher(lambda: self._prepared(event_file, keys), depth, "infer-reader")
        else:
            source = self._prepared(event_file, keys)
        with contextlib.closing(source):
            while True:
                timer = StageTimer(self.device)
                with timer.stage("data_loading"):
                    host = next(source, None)
                    if host is None:
                        break
                    ev = host.to_device(self.device)
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
    hgnn_model=None,
    own_process: bool = False,
) -> list[dict[str, float]]:
    """Run the whole chain on one events shard and write the tracks HDF5 (atomically).

    Model arguments are file paths or loaded objects. Each event's record holds the track
    candidates, the final scored graph (``store_graph``) and the per-stage seconds. Returns the
    per-event timings. ``hgnn_model``: the trained HGNN, needed with ``track_building.method: hgnn``.
    ``own_process``: the caller is a process that runs this shard and exits (the ``infer``
    command and workflow rule), so process-wide settings apply: ``hold_memory`` changes the
    allocator of the whole process for good, which a library caller must not get unasked.
    """
    pipe = Pipeline.from_files(cfg, module_map, embedding, filter_model, gnn_model, device, hgnn_model)
    if own_process and pipe.cfg.hold_memory:
        hold_freed_memory()
    records, timings = [], []
    total = safe_total(lambda: len(event_keys(event_file)))
    depth = pipe.prefetch_depth()
    start = time.perf_counter()
    for res in progress(pipe.iter_file(event_file, prefetch=depth), total, f"infer {shard_name(event_file)}", "events", log):  # fmt: skip
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
    wall = time.perf_counter() - start
    log.info("%s", shard_throughput(timings, wall, depth).summary(shard_name(event_file)))
    write_tracks(output, records)
    return timings


@dataclass(frozen=True)
class ShardThroughput:
    """Latency and throughput of one shard: per-event stage time (latency) against wall time.

    latency_s: mean per-event ``total`` (the stages' time as the consumer sees it);
    wall_s: wall time from the first read to the last event's tracks (model loading and the
    tracks-file write excluded); events_per_s: ``n_events / wall_s``.
    """

    n_events: int
    wall_s: float
    latency_s: float
    prefetch: int

    @property
    def events_per_s(self) -> float:
        return self.n_events / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self, name: str = "shard") -> str:
        return (
            f"{name}: {self.n_events} events in {self.wall_s:.3f} s wall, "
            f"{self.events_per_s:.2f} events/s (throughput); "
            f"mean per-event latency {self.latency_s:.4f} s; prefetch {self.prefetch}"
        )


def shard_throughput(timings: list[dict[str, float]], wall_s: float, prefetch: int = 0) -> ShardThroughput:
    latency = sum(t["total"] for t in timings) / len(timings) if timings else 0.0
    return ShardThroughput(len(timings), float(wall_s), float(latency), int(prefetch))
