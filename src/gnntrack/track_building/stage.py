"""``TrackBuilder``: the track-building stage on an ``EventData``."""

from __future__ import annotations

from ..event_data import EventData, stage_clock
from .build import TrackBuildingConfig, build_tracks


class TrackBuilder:
    """Track candidates from the event's edges and the scores of edge classifier ``score_stage``.

    ``cfg`` must carry a cut (``build.resolve_score_cut`` sets the model's working point).
    Timed as ``labelling``.
    """

    def __init__(self, cfg: TrackBuildingConfig, score_stage: str = "gnn", hgnn_model=None):
        if cfg.score_cut is None:
            raise ValueError("TrackBuilder needs a resolved score cut (track_building.resolve_score_cut)")
        self.cfg = cfg
        self.score_stage = score_stage
        #: ``method: hgnn``: the trained HGNN (a model or its file), loaded once here
        self.hgnn_model = None
        if cfg.method == "hgnn":
            from .hgnn import load_hgnn

            self.hgnn_model = load_hgnn(hgnn_model)

    @property
    def hit_columns(self) -> tuple[str, ...]:
        """The hit columns this stage reads: the transverse positions for the candidate pT cut,
        the HGNN's node features."""
        cols = ["x", "y"] if self.cfg.min_pt is not None else []
        if self.hgnn_model is not None:
            cols += [c for c in ("x", *self.hgnn_model.node_features) if c not in cols]
        return tuple(cols)

    def __call__(self, ev: EventData, timer=None) -> EventData:
        with stage_clock(timer, "labelling"):
            scores = ev.scores(self.score_stage)
            ev.tracks = build_tracks(
                ev.edge_index, scores, ev.n_hits, self.cfg, hits=ev.hits, hgnn_model=self.hgnn_model
            )
        ev.n_edges["labelling"] = int((scores > self.cfg.score_cut).sum())
        return ev
