"""Connected components of a hit graph with interchangeable backends and canonical labels.

Track building labels each hit with its component. Three backends exist because the fast one
depends on where the data lives: scipy for numpy/CPU data, a torch-native
FastSV-style hook-and-shortcut algorithm built on ``scatter_reduce(amin)`` that runs on any torch
device without extra dependencies, and cuGraph when RAPIDS is importable and the tensors are on a
GPU. Every backend returns the *same* labels -- the smallest node index of the component -- so
results never depend on the backend that produced them.

Edges are taken as undirected (weak connectivity); isolated nodes are their own component.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import torch

BACKENDS = ("auto", "scipy", "torch", "cugraph")


def cugraph_available() -> bool:
    """True when RAPIDS cuGraph and cuDF can be imported (never imports them eagerly)."""
    return importlib.util.find_spec("cugraph") is not None and importlib.util.find_spec("cudf") is not None


def resolve_backend(backend: str, on_gpu: bool) -> str:
    """The concrete backend that ``backend`` means for data on the CPU or a GPU."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown connected-components backend {backend!r}; choose one of {BACKENDS}")
    if backend != "auto":
        return backend
    if on_gpu:
        return "cugraph" if cugraph_available() else "torch"
    return "scipy"


def connected_components(edge_index, n_nodes: int, backend: str = "auto"):
    """Label every node with the smallest node index of its (weakly) connected component.

    ``edge_index`` is a (2, E) integer numpy array or torch tensor. The labels are an int64 array
    of length ``n_nodes`` of the same kind as the input (a torch input keeps its device), so the
    inference pipeline can stay on the GPU.
    """
    n_nodes = int(n_nodes)
    is_torch = isinstance(edge_index, torch.Tensor)
    on_gpu = is_torch and edge_index.device.type != "cpu"
    chosen = resolve_backend(backend, on_gpu)
    _check_edges(edge_index, n_nodes)
    if chosen == "scipy":
        ei = edge_index.detach().cpu().numpy() if is_torch else np.asarray(edge_index)
        labels = _scipy_components(ei, n_nodes)
        return torch.from_numpy(labels).to(edge_index.device) if is_torch else labels
    ei_t = edge_index if is_torch else torch.from_numpy(np.asarray(edge_index, dtype=np.int64))
    if chosen == "torch":
        labels_t = _torch_components(ei_t.long(), n_nodes)
    else:
        if not ei_t.is_cuda:
            raise ValueError("the cugraph backend needs tensors on a CUDA device")
        if not cugraph_available():
            raise RuntimeError("backend 'cugraph' requested but cugraph/cudf cannot be imported")
        labels_t = _cugraph_components(ei_t.long(), n_nodes)
    return labels_t if is_torch else labels_t.cpu().numpy()


def _check_edges(edge_index, n_nodes: int) -> None:
    shape = tuple(edge_index.shape)
    if len(shape) != 2 or shape[0] != 2:
        raise ValueError(f"edge_index must have shape (2, E), got {shape}")
    if n_nodes < 0:
        raise ValueError(f"n_nodes must be >= 0, got {n_nodes}")
    if shape[1] and (int(edge_index.min()) < 0 or int(edge_index.max()) >= n_nodes):
        raise ValueError(f"edge_index refers to nodes outside [0, {n_nodes})")


def _canonical_numpy(labels: np.ndarray) -> np.ndarray:
    """Relabel arbitrary component ids by the smallest node index carrying each id."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    # np.unique returns the first occurrence, which is the smallest node index with that id.
    return first[inverse].astype(np.int64)


def _scipy_components(edge_index: np.ndarray, n_nodes: int) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as cc

    if n_nodes == 0:
        return np.zeros(0, np.int64)
    ei = np.asarray(edge_index, dtype=np.int64)
    adj = coo_matrix((np.ones(ei.shape[1], np.int8), (ei[0], ei[1])), shape=(n_nodes, n_nodes))
    _, labels = cc(adj.tocsr(), directed=True, connection="weak")
    return _canonical_numpy(labels)


def _torch_components(edge_index: torch.Tensor, n_nodes: int) -> torch.Tensor:
    """FastSV-style hooking + shortcutting with ``scatter_reduce(amin)``.

    Invariant: ``f[i]`` is a node of i's component with ``f[i] <= i``. At the fixed point ``f`` is
    a star forest in which the two ends of every edge share a root, so each component has one
    label, and that label is its minimum node (the minimum node can only point to itself).
    """
    device = edge_index.device
    f = torch.arange(n_nodes, device=device, dtype=torch.long)
    if n_nodes == 0 or edge_index.shape[1] == 0:
        return f
    src, dst = edge_index[0], edge_index[1]
    while True:
        f_old = f
        fu, fv = f[src], f[dst]
        m = torch.minimum(fu, fv)
        # hook the roots of both ends onto the smaller label (and the ends themselves: aggressive hooking)
        idx = torch.cat([fu, fv, src, dst])
        f = f.scatter_reduce(0, idx, m.repeat(4), reduce="amin", include_self=True)
        # shortcut: pointer jumping until every node points at a root
        while True:
            ff = f[f]
            if torch.equal(ff, f):
                break
            f = ff
        if torch.equal(f, f_old):
            return f


def _cugraph_components(edge_index: torch.Tensor, n_nodes: int) -> torch.Tensor:
    import cudf
    import cugraph
    import cupy

    labels = torch.arange(n_nodes, device=edge_index.device, dtype=torch.long)
    if n_nodes == 0 or edge_index.shape[1] == 0:
        return labels
    # torch CUDA tensors expose __cuda_array_interface__, so cupy wraps them without a copy
    df = cudf.DataFrame(
        {"src": cupy.asarray(edge_index[0].contiguous()), "dst": cupy.asarray(edge_index[1].contiguous())}
    )
    graph = cugraph.Graph(directed=False)
    graph.from_cudf_edgelist(df, source="src", destination="dst", renumber=True)
    result = cugraph.connected_components(graph)
    vertex = torch.as_tensor(result["vertex"].astype("int64").values, device=edge_index.device)
    comp = torch.as_tensor(result["labels"].astype("int64").values, device=edge_index.device)
    # cuGraph's component ids are arbitrary: canonicalise to the smallest vertex of each component.
    _, comp_dense = torch.unique(comp, return_inverse=True)
    n_comp = int(comp_dense.max()) + 1
    smallest = torch.full((n_comp,), n_nodes, device=labels.device, dtype=torch.long)
    smallest = smallest.scatter_reduce(0, comp_dense, vertex, reduce="amin")
    labels[vertex] = smallest[comp_dense]
    return labels
