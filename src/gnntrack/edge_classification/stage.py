"""``EdgeClassifier``: one learned edge-scoring stage (the filter or the GNN) on an ``EventData``."""

from __future__ import annotations

import torch

from ..event_data import EventData, stage_clock


class EdgeClassifier:
    """Score every edge of ``ev.edge_index`` with ``model``; with ``prune``, keep only those with
    score >= ``cut``.

    name: the scores go to ``ev.edge_data["score/<name>"]`` and the edge count after the stage to
        ``ev.n_edges[name]``.
    timer_stage: the pipeline timing row this stage is charged to (``filtering``, ``gnn``).
    runner: how the model is called (``inference.runtime.ModelRunner``: eager, TorchScript,
        ONNX, compile, autocast); None = the model itself in fp32.
    chunk_size: edges scored per call (the filter); None = all at once (the GNN, whose edges
        interact). A filter with context (``FilterModel.context``) needs every edge of the event
        at once: above ``chunk_size`` edges it is scored in two passes over chunks
        (``FilterModel.chunked_logits``), eagerly in fp32 whatever the runner; at or below, by the
        runner in one call.
    Hits without an edge never reach an edge score (message passing runs along edges and every
    node update is row-wise), so the model runs on the hits the graph touches only: exact, and
    much cheaper on sparse graphs (module map: most hits isolated).
    """

    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        cut: float,
        prune: bool = False,
        runner=None,
        chunk_size: int | None = None,
        timer_stage: str | None = None,
    ):
        self.name = name
        self.model = model.eval()
        self.cut = float(cut)
        self.prune = prune
        self.runner = runner if runner is not None else self.model
        self.chunk_size = chunk_size
        self.timer_stage = timer_stage or name

    @torch.inference_mode()
    def scores(self, ev: EventData) -> torch.Tensor:
        """Sigmoid scores (E,) of the event's edges, on its device."""
        edge_index = ev.edge_index
        if edge_index.shape[1] == 0:
            return torch.zeros(0, device=ev.device)
        x = ev.node_features(self.model)
        nodes = torch.unique(edge_index)
        if nodes.numel() < x.shape[0]:
            x, edge_index = x[nodes], torch.searchsorted(nodes, edge_index)
        n, chunk = edge_index.shape[1], self.chunk_size
        if chunk is None or n <= chunk:
            return torch.sigmoid(self.runner(x, edge_index).float())
        if getattr(self.model, "context", False):
            return torch.sigmoid(self.model.chunked_logits(x, edge_index, chunk).float())
        out = torch.empty(n, device=ev.device)
        for s in range(0, n, chunk):
            out[s : s + chunk] = torch.sigmoid(self.runner(x, edge_index[:, s : s + chunk]).float())
        return out

    def passes(self, scores):
        """The edges this stage keeps when it prunes: score >= cut (numpy or torch scores)."""
        return scores >= self.cut

    @torch.inference_mode()
    def __call__(self, ev: EventData, timer=None) -> EventData:
        with stage_clock(timer, self.timer_stage):
            ev.edge_data[f"score/{self.name}"] = self.scores(ev)
            if self.prune:
                ev.keep_edges(self.passes(ev.scores(self.name)))
        ev.n_edges[self.name] = int(ev.edge_index.shape[1])
        return ev
