"""Connected components: every backend gives the same canonical labels."""

import numpy as np
import pytest
import torch

from gnntrack.track_building.components import connected_components, resolve_backend


def _reference_labels(edges, n):
    """Union-find reference: label = smallest node of the component."""
    parent = list(range(n))

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in edges.T.tolist():
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(i) for i in range(n)], dtype=np.int64)


@pytest.mark.parametrize(
    ("n", "e", "seed"), [(1, 0, 0), (17, 0, 1), (50, 30, 2), (400, 380, 3), (3000, 2500, 4)]
)
def test_backends_identical_to_reference(n, e, seed):
    rng = np.random.default_rng(seed)
    edges = rng.integers(0, n, size=(2, e)).astype(np.int64)
    ref = _reference_labels(edges, n)
    scipy_labels = connected_components(edges, n, backend="scipy")
    torch_labels = connected_components(torch.from_numpy(edges), n, backend="torch")
    torch_on_numpy = connected_components(edges, n, backend="torch")
    auto = connected_components(edges, n)
    assert isinstance(scipy_labels, np.ndarray) and scipy_labels.dtype == np.int64
    assert isinstance(torch_labels, torch.Tensor) and torch_labels.dtype == torch.int64
    np.testing.assert_array_equal(scipy_labels, ref)
    np.testing.assert_array_equal(torch_labels.numpy(), ref)
    np.testing.assert_array_equal(torch_on_numpy, ref)
    np.testing.assert_array_equal(auto, ref)
    # canonical: every label is the smallest member of its component, so labels[label] == label
    assert np.all(ref[ref] == ref) and np.all(ref <= np.arange(n))


def test_long_shuffled_chain_and_direction_ignored():
    n = 5000
    rng = np.random.default_rng(7)
    chain = np.stack([np.arange(1, n), np.arange(n - 1)])  # edges point "backwards"
    chain = chain[:, rng.permutation(n - 1)]
    for backend in ("scipy", "torch"):
        labels = connected_components(chain, n, backend=backend)
        assert np.all(labels == 0)


def test_isolated_nodes_and_empty_graph():
    edges = np.array([[2, 5], [3, 6]])
    for backend in ("scipy", "torch"):
        labels = connected_components(edges, 8, backend=backend)
        np.testing.assert_array_equal(labels, [0, 1, 2, 2, 4, 5, 5, 7])
        assert len(connected_components(np.zeros((2, 0), np.int64), 0, backend=backend)) == 0


def test_bad_input_and_backend_choice():
    with pytest.raises(ValueError, match="outside"):
        connected_components(np.array([[0], [9]]), 5)
    with pytest.raises(ValueError, match=r"\(2, E\)"):
        connected_components(np.zeros((3, 2), np.int64), 5)
    with pytest.raises(ValueError, match="unknown"):
        connected_components(np.zeros((2, 0), np.int64), 5, backend="networkx")
    assert resolve_backend("auto", on_gpu=False) == "scipy"
    assert resolve_backend("auto", on_gpu=True) in ("torch", "cugraph")
    with pytest.raises(ValueError, match="CUDA"):
        connected_components(torch.zeros((2, 1), dtype=torch.long), 2, backend="cugraph")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_backends_match_scipy():
    rng = np.random.default_rng(11)
    n = 20000
    edges = rng.integers(0, n, size=(2, 15000))
    ref = connected_components(edges, n, backend="scipy")
    t = torch.from_numpy(edges).cuda()
    got = connected_components(t, n)  # auto on GPU: cugraph if importable, else torch
    assert got.is_cuda
    np.testing.assert_array_equal(got.cpu().numpy(), ref)
    np.testing.assert_array_equal(connected_components(t, n, backend="torch").cpu().numpy(), ref)
