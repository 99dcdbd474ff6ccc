"""Settings of one-process inference (``InferenceConfig``) and of its benchmark (``BenchConfig``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from ..config import (
    ConfigError,
    Count,
    NonNegative,
    NonNegativeInt,
    Positive,
    Probability,
    ProperFraction,
    from_dict,
    one_of,
)
from ..edge_classification.regions import RegionConfig
from ..track_building import TrackBuildingConfig

DEFAULT_FILTER_CUT = 0.1  # a filter model without a stored working point


@dataclass
class InferenceConfig:
    """How ``run_infer`` / ``Pipeline`` run the chain for one shard.

    graph_method: ``module_map`` or ``metric_learning``; ``auto`` = whichever graph builder is given.
    neighbour_backend: radius search of metric learning: auto | brute | faiss | grid (same edges).
    r_max, k_max: radius and neighbour cap of the radius search; None = the values stored with the
        embedding model (else the graph-construction defaults), so inference reproduces the
        graphs the filter and GNN were trained on.
    module_map_cut / module_map_tolerance / module_map_n_sigma: module-map window overrides
        (None: the settings stored in the map), as in ``graph_construction``.
        From a campaign (``gnntrack.campaign.resolve_campaign``: the workflow, ``gnntrack infer``
        and ``gnntrack bench``), these five settings left null take the campaign's
        ``graph_construction`` values (``cut``, ``tolerance``, ``n_sigma``, ``r_max``, ``k_max``).
    filter: run the edge filter when a filter model is given; edges with score >= filter_cut pass
        (the ``apply_filter`` stage's rule); None = the cut stored with the filter model (its
        working point, as ``apply_filter`` uses it), 0.1 for a model without one.
    filter_chunk: edges scored by the filter at once (bounds memory). 500 k against 1 M: the
        context filter −5 to −15 % at ⟨μ⟩ = 200 (1.4 M edges) and −23 to −29 % at ⟨μ⟩ = 300 (2.7 M;
        peak RSS −0.6 to −1.2 GB, no page-fault system time), same tracks
        (benchmarks/scaling_ml_cap_20261205, "Filter chunk"). A filter
        with context (``filter.context_hidden``) scores an event of more edges in two passes over
        chunks (``FilterModel.chunked_logits``), eagerly in fp32 (or int8) whatever ``runtime``
        and ``amp`` say; an event within one chunk goes through the runtime in one call.
    amp: autocast of the filter and GNN: none | bf16 | fp16 (fp16 only on GPU); the embedding
        always runs in fp32 (reduced precision moves points across r_max).
    runtime: eager | torchscript | onnx | compile (see ``inference.runtime``).
    int8: the filter's and GNN's Linear layers in int8 (torch.ao dynamic quantisation,
        ``gnntrack.models.compression.quantize_int8``; LayerNorm, activations and aggregation stay
        float): CPU only, eager or torchscript runtime. Meant for models trained with
        ``compression.qat``; a plain fp32 model also runs, with larger score shifts.
    module_map_on_device: apply the module map on the pipeline device (else on the CPU, edges
        copied over: the "before" column of the module-map-on-GPU benchmark variant).
    store_graph: write the final scored graph (edge_index + GNN scores) into the tracks file.
    prefetch: events a reader thread prepares ahead of the stages (file read, input checks, node
        features; pinned host copies on CUDA), so reading event n+1 overlaps the compute of event
        n; 0 = read each event in turn. None = 1 on a CUDA device, 0 elsewhere: on a 2-core CPU
        the reader competes with the stages for the same cores (docs/performance.md).
    hold_memory: the ``infer`` and ``bench`` commands and workflow rules (``run_infer`` /
        ``run_bench`` with ``own_process=True``) keep freed memory for the next event (glibc
        ``mallopt``: no mmap, no trimming; ``inference.allocator``): a large event's tensors reuse resident pages
        instead of being mapped and faulted in afresh (benchmarks/scaling_mu_20261203). The process
        keeps its peak heap until it exits. No effect without glibc.
    track_building: ``gnntrack.track_building.TrackBuildingConfig`` (method, score_cut,
        min_hits, connected-components backend).
    regions: regional inference: the event split into ``n_eta x n_phi`` η–φ regions (core +
        margin, ``edge_classification.RegionConfig``), each region through graph building, filter
        and GNN on its own, each edge kept from the one region whose core holds its inner hit,
        then track building once on the merged event graph. 1 x 1 (default) = whole event, as
        ``gnn.regions`` means in training. Measured in benchmarks/regional_inference_20261203.
    """

    graph_method: Literal["auto", "module_map", "metric_learning"] = "auto"
    neighbour_backend: Literal["auto", "brute", "faiss", "grid", "kdtree"] = "auto"
    r_max: Positive | None = None
    k_max: Count | None = None
    module_map_cut: Literal["minmax", "mean_rms"] | None = None
    module_map_tolerance: NonNegative | None = None
    module_map_n_sigma: NonNegative | None = None
    filter: bool = True
    filter_cut: ProperFraction | None = None
    filter_chunk: Count = 500_000
    amp: Literal["none", "bf16", "fp16"] = "none"
    runtime: Literal["eager", "torchscript", "onnx", "compile"] = "eager"
    int8: bool = False
    module_map_on_device: bool = True
    store_graph: bool = True
    prefetch: NonNegativeInt | None = None
    hold_memory: bool = True
    track_building: TrackBuildingConfig = field(default_factory=TrackBuildingConfig)
    regions: RegionConfig = field(default_factory=RegionConfig)

    def __post_init__(self) -> None:
        if self.filter_cut is not None and not 0.0 <= self.filter_cut < 1.0:
            raise ConfigError(f"filter_cut must be in [0, 1), got {self.filter_cut}")
        if self.filter_chunk < 1:
            raise ConfigError(f"filter_chunk must be >= 1, got {self.filter_chunk}")
        if self.r_max is not None and not self.r_max > 0:
            raise ConfigError(f"r_max must be > 0, got {self.r_max}")
        if self.k_max is not None and self.k_max < 1:
            raise ConfigError(f"k_max must be >= 1, got {self.k_max}")
        if self.prefetch is not None and self.prefetch < 0:
            raise ConfigError(f"prefetch must be >= 0, got {self.prefetch}")
        if self.runtime == "onnx" and self.amp != "none":
            raise ConfigError("runtime 'onnx' runs the fp32 export; set amp: none")
        if self.int8 and (self.runtime not in ("eager", "torchscript") or self.amp != "none"):
            raise ConfigError("int8 runs with runtime eager or torchscript and amp: none")


#: Benchmark variants, each applied on top of the previous one (ATLAS GNN4ITk table order).
VARIANTS = ("baseline", "faiss", "grid", "kdtree", "cc", "precision", "module_map_device")

#: Candidates of the "precision" variant on a CPU (measured; the fastest valid one is used).
CPU_RUNTIME_CANDIDATES = ("eager", "bf16", "torchscript", "onnx", "compile")


@dataclass
class BenchConfig:
    """Settings of ``gnntrack bench``.

    n_events: held-out events timed per variant (taken in file order over the given shards).
    warmup: events run before timing each variant (lazy initialisation, tracing, caches).
    variants: which of ``VARIANTS`` to run; each one includes the changes of those before it.
    cpu_runtimes: candidates measured for the CPU "precision" column; the fastest one whose
        edge decisions agree with eager fp32 (see ``max_decision_flips``) is used.
    runtime_probe_events: events used to measure each CPU runtime candidate.
    max_decision_flips: largest accepted fraction of filter/GNN edges whose pass/fail decision
        at the cut differs from fp32 eager (reduced precision moves scores near the cut).
    threads: torch intra-op threads (None: torch's default).
    matching: track-matching style for the efficiency row: ATLAS | one_way | two_way.
    min_track_hits: minimum spacepoints of a track counted in matching.
    plot: also write the stacked bar plot.
    """

    n_events: Count = 10
    warmup: NonNegativeInt = 2
    variants: list[Annotated[str, one_of(VARIANTS)]] = field(default_factory=lambda: list(VARIANTS))
    cpu_runtimes: list[Annotated[str, one_of(CPU_RUNTIME_CANDIDATES)]] = field(
        default_factory=lambda: list(CPU_RUNTIME_CANDIDATES)
    )
    runtime_probe_events: Count = 2
    max_decision_flips: Probability = 1e-3
    threads: Count | None = None
    matching: Literal["ATLAS", "one_way", "two_way"] = "ATLAS"
    min_track_hits: Count = 3
    plot: bool = True

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ConfigError(f"unknown bench variant(s) {unknown}; choose from {list(VARIANTS)}")
        bad = [r for r in self.cpu_runtimes if r not in CPU_RUNTIME_CANDIDATES]
        if bad:
            raise ConfigError(f"unknown CPU runtime(s) {bad}; choose from {list(CPU_RUNTIME_CANDIDATES)}")
        if self.n_events < 1:
            raise ConfigError(f"n_events must be >= 1, got {self.n_events}")
        if self.warmup < 0 or self.runtime_probe_events < 1:
            raise ConfigError("warmup must be >= 0 and runtime_probe_events >= 1")


def as_inference_config(cfg) -> InferenceConfig:
    if cfg is None:
        return InferenceConfig()
    if isinstance(cfg, InferenceConfig):
        return cfg
    return from_dict(InferenceConfig, cfg, "inference")


def as_bench_config(cfg) -> BenchConfig:
    if cfg is None:
        return BenchConfig()
    if isinstance(cfg, BenchConfig):
        return cfg
    return from_dict(BenchConfig, cfg, "bench")
