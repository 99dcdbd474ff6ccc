"""Hierarchical GNN (HGNN) with GMPool: hits pooled into super-nodes, hits assigned to super-nodes.

The network works on a GNN-scored hit graph (edges above a loose score cut) in three steps:

1. **Embedding GNN.** Node encoder, then ``n_iters`` interaction-network rounds over the loose
   edges; each edge's input is its geometry (``EdgeFeatures``) and the GNN's score (as a logit).
2. **GMPool.** An edge head gives every loose edge a similarity logit, the GNN's logit plus a
   learned correction (so an untrained model starts from the GNN's edge decisions). The edges
   above the pooling cut are kept and their connected components are the super-nodes; a
   super-node's features are the mean of its hits' embeddings (differentiable: the pooling is a
   hard partition, the features are soft). The cut is the adaptive GMPool threshold (the valley
   of the similarity histogram, ``adaptive_cut``) unless a fixed one is given.
3. **Super-graph and bipartite assignment.** Super-nodes are linked where a loose edge joins
   them (the super-graph) and updated by one message-passing round over it. Each hit is then
   scored against its own super-node and every super-graph neighbour of it, so the hits of a
   fragment the pooling cut off can join the track it belongs to. The pair's input is the hit's
   embedding, the super-node's, their product, and how the hit is tied to the super-node
   (largest similarity of a loose edge from the hit into it, largest similarity of the
   super-edge it is reached through, number of direct edges, whether the pooling put it
   there). A track candidate is a super-node's hits whose assignment score passes the
   assignment cut; a hit may join several.

Simplifications against the published HGNN: one pooling level, the super-graph from the loose
graph's adjacency (not a kNN search in the embedding space), hard candidate selection (no
learned soft top-k), and super-nodes from a fixed or histogram-valley cut rather than a learned
per-event threshold.

``forward`` returns every tensor the loss and the track building need (``HGNNOutput``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..config import Count, Probability
from ..io.features import DEFAULT_SCALES
from .base import model_config
from .edge_features import EDGE_FEATURES, EdgeFeatures
from .mlp import Activation, make_mlp

#: node inputs of the HGNN by default: position (the encoder skips phi: see ``encoder_exclude``
#: of the edge classifiers) and the clusters' shape
HGNN_NODE_FEATURES = (
    "r", "phi", "z", "eta", "cl1_pixel_count", "cl2_pixel_count", "cl1_loc_eta", "cl2_loc_eta",
)  # fmt: skip


@dataclass
class HGNNModelConfig:
    """Hyper-parameters of ``HGNN`` (stored in its model file)."""

    node_features: list[str] = field(default_factory=lambda: list(HGNN_NODE_FEATURES))
    hidden: Count = 32
    #: interaction-network rounds of the embedding GNN
    n_iters: Count = 3
    activation: Activation = "silu"
    #: edges with a GNN score at or below this are not seen by the HGNN (the loose graph)
    loose_cut: Probability = 0.05


@dataclass
class HGNNOutput:
    """One forward pass (all tensors on the model's device; indices into the loose graph's nodes)."""

    edge_logit: torch.Tensor  # (E,) GMPool similarity logit of each loose edge
    cut: float  # the pooling cut used (on sigmoid(edge_logit))
    supernode: torch.Tensor  # (N,) super-node of each hit (0..S-1)
    n_super: int
    pair_hit: torch.Tensor  # (P,) hit of each hit–super-node candidate pair
    pair_super: torch.Tensor  # (P,) super-node of the pair
    pair_logit: torch.Tensor  # (P,) assignment logit


def adaptive_cut(prob: np.ndarray, lo: float = 0.05, hi: float = 0.95, bins: int = 18) -> float:
    """GMPool's adaptive threshold: the centre of the least populated histogram bin in [lo, hi].

    Edge similarities of a trained model pile up near 0 and 1; the valley between the two modes
    separates them best. Ties take the bin nearest 0.5; no edges gives 0.5.
    """
    prob = np.asarray(prob, dtype=np.float64)
    if prob.size == 0:
        return 0.5
    counts, edges = np.histogram(prob, bins=bins, range=(lo, hi))
    centres = 0.5 * (edges[1:] + edges[:-1])
    order = np.lexsort((np.abs(centres - 0.5), counts))
    return float(centres[order[0]])


def _components(edge_index: np.ndarray, n: int) -> np.ndarray:
    from ..track_building.components import connected_components

    labels = connected_components(edge_index, n, backend="scipy")
    _, dense = np.unique(labels, return_inverse=True)
    return dense.astype(np.int64)


def _scatter_mean(values: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    out = values.new_zeros((n, values.shape[1])).index_add_(0, index, values)
    count = values.new_zeros(n).index_add_(0, index, values.new_ones(index.shape[0]))
    return out / count.clamp_min(1.0).unsqueeze(1)


def _scatter_sum(values: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    return values.new_zeros((n, values.shape[1])).index_add_(0, index, values)


class HGNN(nn.Module):
    """``forward(x (N, F), edge_index (2, E), score (E,)) -> HGNNOutput``; see the module docstring."""

    config_class = HGNNModelConfig

    def __init__(
        self,
        config: HGNNModelConfig | None = None,
        *,
        feature_scales: Mapping[str, float] | None = None,
        **overrides,
    ):
        super().__init__()
        cfg = model_config(HGNNModelConfig, config, overrides, "HGNN")
        scales = dict(DEFAULT_SCALES)
        scales.update(feature_scales or {})
        self.node_features = tuple(cfg.node_features)
        missing = [c for c in ("r", "phi", "z") if c not in self.node_features]
        if missing:
            raise ValueError(f"HGNN node_features must include {missing} (the edge geometry needs them)")
        self.feature_scales = {k: float(scales.get(k, 1.0)) for k in self.node_features}
        cfg = dataclasses.replace(cfg, node_features=list(self.node_features), loose_cut=float(cfg.loose_cut))
        self.loose_cut = cfg.loose_cut
        # what the model file stores: the config's fields and the scales
        self.config = {"feature_scales": dict(self.feature_scales), **dataclasses.asdict(cfg)}
        h, act = cfg.hidden, cfg.activation
        keep = [i for i, c in enumerate(self.node_features) if c != "phi"]  # phi-symmetric detector
        self.register_buffer("encoder_cols", torch.tensor(keep, dtype=torch.long), persistent=False)
        self.edge_geometry = EdgeFeatures(self.node_features, self.feature_scales, EDGE_FEATURES)
        n_edge_in = self.edge_geometry.n_out + 1  # + the GNN's logit
        self.node_encoder = make_mlp(len(keep), h, h, 2, act, output_norm=True, output_activation=act)
        self.edge_encoder = make_mlp(n_edge_in, h, h, 2, act, output_norm=True, output_activation=act)
        self.edge_nets = nn.ModuleList(
            make_mlp(3 * h, h, h, 2, act, output_norm=True, output_activation=act) for _ in range(cfg.n_iters)
        )
        self.node_nets = nn.ModuleList(
            make_mlp(3 * h, h, h, 2, act, output_norm=True, output_activation=act) for _ in range(cfg.n_iters)
        )
        self.similarity = make_mlp(3 * h, h, 1, 2, act)
        # super-graph round: messages between super-nodes joined by loose edges
        self.super_edge = make_mlp(2 * h + 2, h, h, 1, act, output_norm=True, output_activation=act)
        self.super_node = make_mlp(2 * h + 1, h, h, 1, act, output_norm=True, output_activation=act)
        # hit–super-node pair: embeddings, their product, and 4 tie features
        self.assign = make_mlp(3 * h + 4, h, 1, 2, act)

    # -- the three steps ---------------------------------------------------------------------
    @staticmethod
    def _pairs(h, s, sn, n_super, edge_index, edge_logit, cross, a, b):
        """Hit–super-node candidate pairs and their inputs (see the module docstring)."""
        device = h.device
        n = h.shape[0]
        n_s = max(n_super, 1)
        src, dst = edge_index[0], edge_index[1]
        prob = torch.sigmoid(edge_logit)
        # super-edges (both directions) with the best similarity of the loose edges across them
        sa, sb = torch.cat([a[cross], b[cross]]), torch.cat([b[cross], a[cross]])
        sp = torch.cat([prob[cross], prob[cross]])
        se, se_inv = torch.unique(sa * n_s + sb, return_inverse=True)
        se_prob = torch.zeros(se.shape[0], device=device, dtype=sp.dtype).scatter_reduce(
            0, se_inv, sp, reduce="amax", include_self=True
        )
        se_a, se_b = se // n_s, se % n_s
        # every hit of super-node A paired with each super-graph neighbour B of A
        order = torch.argsort(sn, stable=True)
        size = torch.bincount(sn, minlength=n_s)
        ptr = torch.cumsum(size, 0) - size
        counts = size.index_select(0, se_a)
        total = int(counts.sum())
        first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        within = torch.arange(total, device=device) - first
        nb_hit = order.index_select(0, torch.repeat_interleave(ptr.index_select(0, se_a), counts) + within)
        nb_super = torch.repeat_interleave(se_b, counts)
        nb_prob = torch.repeat_interleave(se_prob, counts)

        own = torch.arange(n, device=device)
        cand_hit = torch.cat([own, src, dst, nb_hit])
        cand_super = torch.cat([sn, b, a, nb_super])
        none = torch.full((n,), -1.0, device=device, dtype=prob.dtype)
        direct = torch.cat([none, prob, prob, torch.full_like(nb_prob, -1.0)])
        via = torch.cat([torch.ones_like(none), torch.where(cross, prob, 1.0).repeat(2), nb_prob])
        uniq, inv = torch.unique(cand_hit * n_s + cand_super, return_inverse=True)
        pair_hit, pair_super = uniq // n_s, uniq % n_s
        n_pairs = uniq.shape[0]
        best_direct = torch.full((n_pairs,), -1.0, device=device, dtype=prob.dtype).scatter_reduce(
            0, inv, direct, reduce="amax", include_self=True
        )
        best_via = torch.zeros(n_pairs, device=device, dtype=prob.dtype).scatter_reduce(
            0, inv, via, reduce="amax", include_self=True
        )
        n_links = torch.zeros(n_pairs, device=device).index_add_(0, inv, (direct >= 0).float())
        member = (sn.index_select(0, pair_hit) == pair_super).float()
        hp, spp = h.index_select(0, pair_hit), s.index_select(0, pair_super)
        extra = torch.stack([best_direct.clamp_min(0.0), best_via, torch.log1p(n_links), member], dim=1)
        return pair_hit, pair_super, torch.cat([hp, spp, hp * spp, extra], dim=1)

    def embed(self, x: torch.Tensor, edge_index: torch.Tensor, score: torch.Tensor):
        """Hit embeddings (N, H) and edge states (E, H) of the embedding GNN."""
        logit = torch.logit(score.float().clamp(1e-4, 1 - 1e-4)).unsqueeze(1)
        e = self.edge_encoder(torch.cat([self.edge_geometry(x, edge_index), logit], dim=1))
        h = self.node_encoder(x.index_select(1, self.encoder_cols))
        src, dst = edge_index[0], edge_index[1]
        n = h.shape[0]
        for edge_net, node_net in zip(self.edge_nets, self.node_nets):
            e = e + edge_net(torch.cat([h.index_select(0, src), h.index_select(0, dst), e], dim=1))
            inc = _scatter_sum(e, dst, n)
            out = _scatter_sum(e, src, n)
            h = h + node_net(torch.cat([h, inc, out], dim=1))
        return h, e, logit.squeeze(1)

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, score: torch.Tensor, pool_cut: float | None = None
    ) -> HGNNOutput:
        n = x.shape[0]
        src, dst = edge_index[0], edge_index[1]
        h, e, gnn_logit = self.embed(x, edge_index, score)
        hs, hd = h.index_select(0, src), h.index_select(0, dst)
        edge_logit = gnn_logit + self.similarity(torch.cat([hs + hd, e, hs * hd], dim=1)).squeeze(1)

        # GMPool: cut, connected components = super-nodes (hard), mean-pooled features (soft)
        prob = torch.sigmoid(edge_logit.detach()).float().cpu().numpy()
        cut = adaptive_cut(prob) if pool_cut is None else float(pool_cut)
        ei = edge_index.detach().cpu().numpy()
        sn_np = _components(ei[:, prob > cut], n)
        n_super = int(sn_np.max()) + 1 if n else 0
        sn = torch.from_numpy(sn_np).to(x.device)
        s = _scatter_mean(h, sn, n_super)
        size = torch.zeros(n_super, device=x.device).index_add_(0, sn, torch.ones(n, device=x.device))

        # super-graph: super-node pairs joined by a loose edge across them; one message round
        a, b = sn.index_select(0, src), sn.index_select(0, dst)
        cross = a != b
        sa = torch.cat([a[cross], b[cross]])
        sb = torch.cat([b[cross], a[cross]])
        ep = torch.sigmoid(edge_logit).index_select(0, torch.nonzero(cross).squeeze(1)).repeat(2)
        if sa.numel():
            ends = [s.index_select(0, sa), s.index_select(0, sb)]
            msg = self.super_edge(torch.cat([*ends, ep.unsqueeze(1), torch.ones_like(ep).unsqueeze(1)], 1))
            agg = _scatter_sum(msg, sb, n_super)
        else:
            agg = s.new_zeros(s.shape)
        s = s + self.super_node(torch.cat([s, agg, torch.log1p(size).unsqueeze(1)], dim=1))

        # bipartite candidates: each hit with its own super-node and with every super-node
        # adjacent to that one in the super-graph (a fragment's hits can join the track it broke from)
        pair_hit, pair_super, pair_in = self._pairs(h, s, sn, n_super, edge_index, edge_logit, cross, a, b)
        pair_logit = self.assign(pair_in).squeeze(1)
        return HGNNOutput(edge_logit, cut, sn, n_super, pair_hit, pair_super, pair_logit)
