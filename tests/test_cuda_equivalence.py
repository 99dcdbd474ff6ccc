"""On a CUDA device every inference variant must reproduce the CPU baseline (skipped without CUDA).

Run on the GPU node by ``benchmarks/gpu_bench.sh`` before it times anything: the neighbour search
and connected components must be bit-identical to the CPU, the fp32 learned stages equal within
float rounding, bf16 autocast within the documented tolerance (docs/performance.md).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic import make_event

from gnntrack.graph_construction import build_module_map
from gnntrack.graph_construction.module_map import ModuleMap
from gnntrack.graph_construction.neighbours import HAS_FAISS_GPU, radius_graph
from gnntrack.inference import Pipeline
from gnntrack.models import FilterModel, InteractionGNN
from gnntrack.models.embedding import EmbeddingMLP
from gnntrack.track_building import connected_components
from gnntrack.track_building.components import cugraph_available

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _edge_set(e: torch.Tensor) -> set[tuple[int, int]]:
    return set(map(tuple, e.cpu().numpy().T.tolist()))


def _track_sets(tracks) -> set[tuple[int, ...]]:
    t = tracks.numpy()
    return {tuple(sorted(t.hits[a:b].tolist())) for a, b in zip(t.offsets[:-1], t.offsets[1:])}


def _clustered_points(seed: int) -> torch.Tensor:
    """8000 points in 6 dimensions, 200 clusters of 40: tens of neighbours within r = 0.08."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(200, 6, generator=g)
    return (centres.repeat_interleave(40, 0) + 0.03 * torch.randn(8000, 6, generator=g)).float()


@pytest.mark.parametrize("backend", ["brute", "grid"])
def test_radius_graph_on_cuda_equals_cpu(backend):
    pts = _clustered_points(3)
    ref = radius_graph(pts, 0.08, 24, "brute")
    got = radius_graph(pts.cuda(), 0.08, 24, backend)
    assert got.is_cuda
    assert ref.shape[1] > 10_000
    assert _edge_set(got) == _edge_set(ref)


@pytest.mark.parametrize(
    "backend",
    [
        "torch",
        pytest.param(
            "cugraph", marks=pytest.mark.skipif(not cugraph_available(), reason="needs cuGraph (RAPIDS)")
        ),
    ],
)
def test_connected_components_on_cuda_equals_scipy(backend):
    rng = np.random.default_rng(5)
    n = 50_000
    edges = rng.integers(0, n, size=(2, 40_000))
    ref = connected_components(edges, n, backend="scipy")
    got = connected_components(torch.from_numpy(edges).cuda(), n, backend=backend)
    np.testing.assert_array_equal(got.cpu().numpy(), ref)


@pytest.mark.skipif(not HAS_FAISS_GPU, reason="needs faiss-gpu")
def test_faiss_gpu_radius_graph_equals_cpu():
    """faiss-gpu (k-NN with escalating k, then the exact selection) gives brute force's edges."""
    pts = _clustered_points(4)
    ref = radius_graph(pts, 0.08, 24, "brute")
    got = radius_graph(pts.cuda(), 0.08, 24, "faiss")
    assert got.is_cuda and ref.shape[1] > 10_000
    assert torch.equal(got.cpu(), ref)


@pytest.fixture(scope="module")
def chain():
    train = [make_event(n_particles=80, seed=s, event_number=s) for s in range(6)]
    event = make_event(n_particles=80, n_noise=40, seed=99, event_number=99)
    torch.manual_seed(0)
    models = {
        "embedding": EmbeddingMLP(hidden=32, n_layers=2, r_max=0.4, k_max=12),
        "filter_model": FilterModel(hidden=32, n_layers=2),
        "gnn_model": InteractionGNN(hidden=32, n_graph_iters=3),
    }
    return ModuleMap(build_module_map(train), device="cpu"), event, models


def _run(chain, method: str, device: str, **cfg):
    mm, event, models = chain
    graph = {"module_map": mm} if method == "module_map" else {"embedding": models["embedding"]}
    pipe = Pipeline(
        dict(cfg, filter_cut=0.0, track_building={"score_cut": 0.5, "min_hits": 2}),
        filter_model=models["filter_model"],
        gnn_model=models["gnn_model"],
        device=device,
        **graph,
    )
    with torch.inference_mode():
        return pipe.run_event(event)


@pytest.mark.parametrize("method", ["module_map", "metric_learning"])
def test_fp32_chain_on_cuda_matches_cpu(chain, method):
    cpu = _run(chain, method, "cpu", neighbour_backend="brute")
    gpu = _run(chain, method, "cuda", neighbour_backend="grid", module_map_on_device=True)
    ref_edges, got_edges = _edge_set(cpu.edge_index), _edge_set(gpu.edge_index)
    # module map: exact windows; radius graph: the GPU embedding may move a pair across r_max by rounding
    if method == "module_map":
        assert got_edges == ref_edges
    else:
        assert len(got_edges ^ ref_edges) <= 1e-3 * len(ref_edges)
    common = {e: i for i, e in enumerate(map(tuple, cpu.edge_index.cpu().numpy().T.tolist()))}
    got = gpu.scores.cpu().numpy()
    ref = cpu.scores.cpu().numpy()
    pairs = [
        (common[e], k)
        for k, e in enumerate(map(tuple, gpu.edge_index.cpu().numpy().T.tolist()))
        if e in common
    ]
    i_ref, i_got = np.array(pairs).T
    np.testing.assert_allclose(got[i_got], ref[i_ref], atol=1e-4)
    if got_edges == ref_edges and not np.any(np.abs(ref - 0.5) < 1e-4):
        assert _track_sets(gpu.tracks) == _track_sets(cpu.tracks)


def test_bf16_chain_on_cuda_within_tolerance(chain):
    cpu = _run(chain, "module_map", "cpu")
    gpu = _run(chain, "module_map", "cuda", amp="bf16")
    assert _edge_set(gpu.edge_index) == _edge_set(cpu.edge_index)
    order_cpu = np.lexsort(cpu.edge_index.cpu().numpy()[::-1])
    order_gpu = np.lexsort(gpu.edge_index.cpu().numpy()[::-1])
    d = np.abs(gpu.scores.float().cpu().numpy()[order_gpu] - cpu.scores.cpu().numpy()[order_cpu])
    assert d.mean() <= 0.01 and np.quantile(d, 0.99) <= 0.05
    flips = (gpu.scores.float().cpu().numpy()[order_gpu] > 0.5) != (cpu.scores.cpu().numpy()[order_cpu] > 0.5)
    assert flips.mean() <= 0.02
