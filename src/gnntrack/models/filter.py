"""Edge filter: an MLP on both spacepoints' features and the edge's geometry -> one logit per edge,
optionally corrected by one round of message passing before the cut.

Per edge (``context_hidden: 0``): cheap and independent across edges, so it prunes the large
metric-learning graphs before the GNN and scores any number of edges in chunks.

With context (``context_hidden`` > 0): the per-edge MLP gives each edge a latent (its last hidden
layer) and a logit; each hit sums the latents of its outgoing and, separately, of its incoming
edges, each weighted by the edge's own filter probability (so the many fakes say little); a node
MLP turns the two sums into a context vector, and a pair MLP on (context of the source hit,
context of the target hit, edge latent) gives a correction added to the logit. The correction's
last layer starts at zero, so a context filter initialised from a trained per-edge filter
(``filter.init_from``) starts from that filter's scores exactly. The context needs every edge
around a hit, so it is trained on whole regions and scored in two passes over chunks of edges
(``chunked_logits``): latents, logits and per-hit sums of all chunks first, then the correction
chunk by chunk; the edge latents (E x the last hidden width) are kept between the passes.
``context_min_score`` leaves the edges the per-edge MLP already rejects out of the context round
(no correction, no part in the sums, their latents not kept): on ⟨μ⟩ = 200 metric-learning graphs
about half of the edges score below 1e-4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import Count, NonNegativeInt, ProperFraction
from .base import EdgeClassifier, EdgeClassifierConfig, model_config
from .edge_features import EdgeFeatures
from .interaction_gnn import aggregate
from .mlp import Activation, PairMLP, block_linears, block_widths, check_widths, make_mlp


@dataclass
class FilterModelConfig(EdgeClassifierConfig):
    """Hyper-parameters of ``FilterModel`` (the ``filter`` section extends them: ``FilterConfig``)."""

    hidden: Count = 256
    n_layers: Count = 3
    activation: Activation = "silu"
    layer_norm: bool = True
    dropout: ProperFraction = 0.0
    #: hidden width per block where it differs from ``hidden`` (or ``context_hidden``), by the
    #: Linear's name (``net.0``, ``net.3``, ``node_net.0``, ``edge_net.0``, ...): what structured
    #: pruning leaves (``models.compression``)
    widths: dict[str, Count] = field(default_factory=dict)
    #: width of the one round of score-weighted message passing before the cut (the node MLP and
    #: the pair MLP giving the logit correction); 0 = none, every edge scored on its own
    context_hidden: NonNegativeInt = 0
    #: hidden blocks of each of the two context MLPs
    context_layers: Count = 2
    #: edges whose per-edge score is below this take no part in the context round: they add
    #: nothing to their hits' sums and keep their per-edge logit (no correction); 0 = every edge
    context_min_score: ProperFraction = 0.0


class FilterModel(EdgeClassifier):
    """``FilterModel(FilterModelConfig(...))``, ``FilterModel(hidden=64)``, or a config with
    keyword overrides."""

    config_class = FilterModelConfig

    def __init__(self, config: FilterModelConfig | None = None, **overrides):
        cfg = model_config(FilterModelConfig, config, overrides, "FilterModel")
        super().__init__(cfg)
        self.edge_feats = EdgeFeatures(self.node_features, self.feature_scales, cfg.edge_features)
        n_in = 2 * self.n_encoder_features + self.edge_feats.n_out
        positions = block_linears(cfg.n_layers, cfg.layer_norm, cfg.dropout)
        blocks = [f"net.{i}" for i in positions]
        ctx_positions = block_linears(cfg.context_layers, cfg.layer_norm, cfg.dropout)
        if cfg.context_hidden:
            blocks += [f"{m}.{i}" for m in ("node_net", "edge_net") for i in ctx_positions]
        check_widths(cfg.widths, blocks, "FilterModel")
        widths = block_widths(cfg.widths, "net", cfg.hidden, cfg.n_layers, cfg.layer_norm, cfg.dropout)
        self.net = make_mlp(
            n_in, cfg.hidden, 1, cfg.n_layers, cfg.activation, cfg.layer_norm, cfg.dropout, widths=widths
        )
        self.context = bool(cfg.context_hidden)
        #: the per-edge MLP's last hidden block: its width is that of the edge latents the context
        #: MLPs read, so structured pruning leaves it alone in a context filter
        self.fixed_blocks = (f"net.{positions[-1]}",) if self.context else ()
        #: each MLP's hidden width where ``widths`` does not say otherwise (structured pruning)
        self.block_defaults = {
            "net": cfg.hidden,
            "node_net": cfg.context_hidden,
            "edge_net": cfg.context_hidden,
        }
        #: modules ``init_from`` may lack (a per-edge filter starting a filter with context)
        self.init_optional = ("node_net", "edge_net") if self.context else ()
        if self.context:
            lat, ch = widths[-1], cfg.context_hidden

            def context_mlp(name: str, n_in: int, n_out: int) -> nn.Sequential:
                w = block_widths(cfg.widths, name, ch, cfg.context_layers, cfg.layer_norm, cfg.dropout)
                return make_mlp(
                    n_in, ch, n_out, cfg.context_layers, cfg.activation, cfg.layer_norm, cfg.dropout, widths=w
                )

            q = cfg.context_min_score
            #: per-edge logit below which an edge skips the context round (None: no edge does)
            self.context_min_logit = math.log(q / (1.0 - q)) if q > 0 else None
            self.node_net = context_mlp("node_net", 2 * lat, ch)
            self.edge_net = PairMLP(*context_mlp("edge_net", 2 * ch + lat, 1))
            nn.init.zeros_(self.edge_net[-1].weight)
            nn.init.zeros_(self.edge_net[-1].bias)

    def edge_pass(self, x: torch.Tensor, edge_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-edge MLP: (edge latents (E, W), logits (E,))."""
        xn = self.encoder_input(x)
        src, dst = edge_index[0], edge_index[1]
        h = torch.cat([xn.index_select(0, src), xn.index_select(0, dst), self.edge_feats(x, edge_index)], 1)
        latent = self.net[:-1](h)
        return latent, self.net[-1](latent).squeeze(-1)

    @staticmethod
    def weighted_sums(
        x: torch.Tensor, edge_index: torch.Tensor, latent: torch.Tensor, logit: torch.Tensor
    ) -> torch.Tensor:
        """Per hit (N, 2W): the sums of its outgoing and of its incoming edges' latents, each
        weighted by the edge's filter probability. Additive over edges (chunks add up)."""
        msg = latent * torch.sigmoid(logit).unsqueeze(-1)
        return torch.cat(
            [aggregate(msg, edge_index[0], x, False), aggregate(msg, edge_index[1], x, False)], 1
        )

    def correction(
        self, node_context: torch.Tensor, edge_index: torch.Tensor, latent: torch.Tensor
    ) -> torch.Tensor:
        """The logit correction (E,) from the hits' context vectors (N, C) and the edge latents."""
        return self.edge_net.pairs(node_context, edge_index[0], edge_index[1], latent).squeeze(-1)

    def context_edges(self, logit: torch.Tensor) -> torch.Tensor | None:
        """Positions of the edges that take part in the context round (per-edge logit at or above
        ``context_min_logit``); None when every edge does."""
        if self.context_min_logit is None:
            return None
        return torch.nonzero(logit >= self.context_min_logit).squeeze(1)

    def round_edges(self, edge_index: torch.Tensor, latent: torch.Tensor, logit: torch.Tensor) -> tuple:
        """(positions or None, edge_index, latents, logits) of the edges in the context round."""
        sel = self.context_edges(logit)
        if sel is None:
            return None, edge_index, latent, logit
        return sel, edge_index.index_select(1, sel), latent.index_select(0, sel), logit.index_select(0, sel)

    @staticmethod
    def corrected(logit: torch.Tensor, sel: torch.Tensor | None, correction: torch.Tensor) -> torch.Tensor:
        """``logit`` plus the corrections of the context round's edges (``sel``; None: all)."""
        return logit + correction if sel is None else logit.scatter_add(0, sel, correction)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        latent, logit = self.edge_pass(x, edge_index)
        if not self.context:
            return logit
        sel, ei, lat, lg = self.round_edges(edge_index, latent, logit)
        node_context = self.node_net(self.weighted_sums(x, ei, lat, lg))
        return self.corrected(logit, sel, self.correction(node_context, ei, lat))

    def chunked_logits(self, x: torch.Tensor, edge_index: torch.Tensor, chunk_size: int) -> torch.Tensor:
        """The logits of ``forward(x, edge_index)`` computed ``chunk_size`` edges at a time (same
        values up to float summation order): one pass for a per-edge filter, two for a context
        filter (module docstring)."""
        n = edge_index.shape[1]
        spans = [(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]
        if not spans:
            return x.new_zeros(0)
        if not self.context:
            return torch.cat([self.edge_pass(x, edge_index[:, a:b])[1] for a, b in spans])
        # pass 1: per chunk, the logits, and the edges of the context round with their latents
        logits, rounds, sums = [], [], None
        for a, b in spans:
            latent, logit = self.edge_pass(x, edge_index[:, a:b])
            sel, ei, lat, lg = self.round_edges(edge_index[:, a:b], latent, logit)
            part = self.weighted_sums(x, ei, lat, lg)
            sums = part if sums is None else sums + part
            logits.append(logit)
            rounds.append((sel, ei, lat))
        node_context = self.node_net(sums)
        # pass 2: the corrections
        return torch.cat(
            [
                self.corrected(logit, sel, self.correction(node_context, ei, lat))
                for logit, (sel, ei, lat) in zip(logits, rounds)
            ]
        )
