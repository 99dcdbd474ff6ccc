"""Interaction-network edge classifier (GNN4ITk's GNN stage).

Node and edge encoders, then ``n_graph_iters`` rounds of message passing, then an edge decoder:

- edges update from their two end nodes and themselves,
- nodes update from themselves and the sums (or means) of their INCOMING and OUTGOING edge
  messages kept separate: graph edges point outward from the beam, so "what comes from inside"
  and "what goes outside" carry different information.

Aggregation uses ``scatter_add`` only (pure torch, no torch_scatter) so the model runs
everywhere and exports to ONNX/TorchScript. LayerNorm throughout (see ``mlp.py``). With
``recurrent`` one set of message networks is shared by all iterations (acorn's default, fewer
parameters); otherwise each iteration has its own. ``concat_inputs``, ``edge_first``,
``residual`` and ``decoder`` choose the form of each step and of the output (see
``MessagePassingStep``); acorn's ITk recipe is unshared weights, concatenated initial
encodings, no residual and a decoder on the edge latent. ``checkpointing`` recomputes each iteration
in the backward pass to trade compute for memory on ⟨μ⟩=200 events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..config import Count, ProperFraction
from .base import EdgeClassifier, EdgeClassifierConfig, model_config
from .edge_features import EdgeFeatures
from .mlp import Activation, PairMLP, block_linears, block_widths, check_widths, make_mlp


def aggregate(messages: torch.Tensor, index: torch.Tensor, n_nodes: torch.Tensor, mean: bool) -> torch.Tensor:
    """Sum (or mean) of ``messages`` (E,H) into ``n_nodes`` rows by ``index`` (E,)."""
    out = messages.new_zeros((n_nodes.shape[0], messages.shape[1]))
    out = out.scatter_add(0, index.unsqueeze(1).expand(-1, messages.shape[1]), messages)
    if mean:
        deg = messages.new_zeros((n_nodes.shape[0], 1)).scatter_add(
            0, index.unsqueeze(1), messages.new_ones((messages.shape[0], 1))
        )
        out = out / deg.clamp_min(1.0)
    return out


class MessagePassingStep(nn.Module):
    """One round of node and edge updates.

    Node-first (default): nodes from [h, Σ incoming e, Σ outgoing e], then edges from
    [h_src, h_dst, e]. Edge-first: edges from the current nodes, then nodes from the new edges.
    With ``concat`` the initial encodings (h0, e0) are appended to every node/edge input, so
    each iteration still sees the raw hit and doublet information. With ``residual`` the
    update is added to the previous latent, else it replaces it.
    """

    def __init__(
        self,
        node_net: nn.Module,
        edge_net: PairMLP,
        mean: bool,
        concat: bool = False,
        edge_first: bool = False,
        residual: bool = True,
    ):
        super().__init__()
        self.node_net = node_net
        self.edge_net = edge_net
        self.mean = mean
        self.concat = concat
        self.edge_first = edge_first
        self.residual = residual

    def _nodes(
        self, hin: torch.Tensor, e: torch.Tensor, src: torch.Tensor, dst: torch.Tensor
    ) -> torch.Tensor:
        incoming = aggregate(e, dst, hin, self.mean)
        outgoing = aggregate(e, src, hin, self.mean)
        return self.node_net(torch.cat([hin, incoming, outgoing], dim=1))

    def forward(
        self,
        h: torch.Tensor,
        e: torch.Tensor,
        src: torch.Tensor,
        dst: torch.Tensor,
        h0: torch.Tensor,
        e0: torch.Tensor,
    ):
        hin = torch.cat([h, h0], dim=1) if self.concat else h
        ein = torch.cat([e, e0], dim=1) if self.concat else e
        if self.edge_first:
            de = self.edge_net.pairs(hin, src, dst, ein)
            e = e + de if self.residual else de
            dh = self._nodes(hin, e, src, dst)
            h = h + dh if self.residual else dh
        else:
            dh = self._nodes(hin, e, src, dst)
            h = h + dh if self.residual else dh
            hin = torch.cat([h, h0], dim=1) if self.concat else h
            de = self.edge_net.pairs(hin, src, dst, ein)
            e = e + de if self.residual else de
        return h, e


@dataclass
class InteractionGNNConfig(EdgeClassifierConfig):
    """Hyper-parameters of ``InteractionGNN`` (the ``gnn`` section extends them: ``GNNConfig``)."""

    hidden: Count = 128
    n_graph_iters: Count = 8
    n_node_layers: Count = 2
    n_edge_layers: Count = 2
    recurrent: bool = True  # one set of message networks shared by all iterations
    aggregation: Literal["sum", "mean"] = "sum"
    activation: Activation = "silu"
    layer_norm: bool = True
    dropout: ProperFraction = 0.0
    checkpointing: bool = False  # gradient checkpointing of the message-passing iterations
    concat_inputs: bool = False  # initial node/edge encodings appended to every step's input
    edge_first: bool = False  # each step updates edges before nodes
    residual: bool = True  # steps add to the latents (else replace them)
    #: pair: classify from [h_src, h_dst, e]; edge: from the edge latent alone
    decoder: Literal["pair", "edge"] = "pair"
    #: hidden width per MLP block where it differs from ``hidden``, by the block's Linear
    #: (``node_encoder.0``, ``steps.0.edge_net.4``, ``decoder.0``, ...): what structured pruning
    #: leaves (``models.compression``). The latent width between networks stays ``hidden``.
    widths: dict[str, Count] = field(default_factory=dict)


class InteractionGNN(EdgeClassifier):
    """``InteractionGNN(InteractionGNNConfig(...))``, ``InteractionGNN(hidden=64)``, or a config
    with keyword overrides (``InteractionGNN(cfg, checkpointing=True)``)."""

    config_class = InteractionGNNConfig

    def __init__(self, config: InteractionGNNConfig | None = None, **overrides):
        cfg = model_config(InteractionGNNConfig, config, overrides, "InteractionGNN")
        if cfg.aggregation not in ("sum", "mean"):
            raise ValueError(f"aggregation must be 'sum' or 'mean', not {cfg.aggregation!r}")
        if cfg.decoder not in ("pair", "edge"):
            raise ValueError(f"decoder must be 'pair' or 'edge', not {cfg.decoder!r}")
        super().__init__(cfg)
        hidden = cfg.hidden
        self.n_graph_iters = cfg.n_graph_iters
        self.mean = cfg.aggregation == "mean"
        self.checkpointing = cfg.checkpointing
        self.edge_feats = EdgeFeatures(self.node_features, self.feature_scales, cfg.edge_features)

        n_steps = 1 if cfg.recurrent else cfg.n_graph_iters
        mlps = {
            "node_encoder": cfg.n_node_layers,
            "edge_encoder": cfg.n_edge_layers,
            "decoder": cfg.n_edge_layers,
        }
        for k in range(n_steps):
            mlps[f"steps.{k}.node_net"] = cfg.n_node_layers
            mlps[f"steps.{k}.edge_net"] = cfg.n_edge_layers
        check_widths(
            cfg.widths,
            [f"{p}.{i}" for p, n in mlps.items() for i in block_linears(n, cfg.layer_norm, cfg.dropout)],
            "InteractionGNN",
        )

        def widths(prefix):
            return block_widths(cfg.widths, prefix, hidden, mlps[prefix], cfg.layer_norm, cfg.dropout)

        def enc(n_in, prefix):
            act = cfg.activation
            n_layers, ln, drop = mlps[prefix], cfg.layer_norm, cfg.dropout
            return make_mlp(n_in, hidden, hidden, n_layers, act, ln, drop, act, True, widths(prefix))

        self.node_encoder = enc(self.n_encoder_features, "node_encoder")
        self.edge_encoder = PairMLP(*enc(2 * hidden + self.edge_feats.n_out, "edge_encoder"))
        self.recurrent = cfg.recurrent
        c = 2 if cfg.concat_inputs else 1  # width of the node/edge inputs of a step, in units of hidden
        self.steps = nn.ModuleList(
            MessagePassingStep(
                enc((c + 2) * hidden, f"steps.{k}.node_net"),
                PairMLP(*enc(3 * c * hidden, f"steps.{k}.edge_net")),
                self.mean,
                cfg.concat_inputs,
                cfg.edge_first,
                cfg.residual,
            )
            for k in range(n_steps)
        )
        self.edge_decoder = cfg.decoder == "edge"
        # "pair": from [h_src, h_dst, e]; "edge": from the edge latent alone (cheaper per edge)
        self.decoder = PairMLP(
            *make_mlp(
                (1 if self.edge_decoder else 3) * hidden,
                hidden,
                1,
                cfg.n_edge_layers,
                cfg.activation,
                cfg.layer_norm,
                cfg.dropout,
                widths=widths("decoder"),
            )
        )

    def _encode(self, x: torch.Tensor, edge_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        src, dst = edge_index[0], edge_index[1]
        h = self.node_encoder(self.encoder_input(x))
        e = self.edge_encoder.pairs(h, src, dst, self.edge_feats(x, edge_index))
        return h, e

    def _decode(self, h: torch.Tensor, e: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        if self.edge_decoder:
            return self.decoder(e).squeeze(-1)
        return self.decoder.pairs(h, src, dst, e).squeeze(-1)

    @torch.jit.unused
    def _forward_checkpointed(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """Same as ``forward`` but keeps only each block's inputs; activations are recomputed."""
        src, dst = edge_index[0], edge_index[1]
        h, e = checkpoint(self._encode, x, edge_index, use_reentrant=False)
        h0, e0 = h, e
        steps = [self.steps[0]] * self.n_graph_iters if self.recurrent else list(self.steps)
        for step in steps:
            h, e = checkpoint(step, h, e, src, dst, h0, e0, use_reentrant=False)
        return checkpoint(self._decode, h, e, src, dst, use_reentrant=False)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        if self.checkpointing and self.training and torch.is_grad_enabled() and not torch.jit.is_scripting():
            return self._forward_checkpointed(x, edge_index)
        src, dst = edge_index[0], edge_index[1]
        h, e = self._encode(x, edge_index)
        h0, e0 = h, e
        if self.recurrent:
            for _ in range(self.n_graph_iters):
                h, e = self.steps[0](h, e, src, dst, h0, e0)
        else:
            for step in self.steps:
                h, e = step(h, e, src, dst, h0, e0)
        return self._decode(h, e, src, dst)
