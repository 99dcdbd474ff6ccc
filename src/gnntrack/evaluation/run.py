"""The evaluate stage: tracks + truth (+ each stage's graphs) -> summary.json, report.md, plots.

Events are those of the tracks files (one record per event, also for events without tracks); the
events files supply the truth and the graph files of every stage the edge-level numbers. All
numbers are accumulated as counts over events, so the rates are ratios of sums (not averages of
per-event ratios) and their Clopper-Pearson intervals are exact.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..conditions import select
from ..config import from_dict, to_dict
from ..io.atomic import atomic_output
from ..io.errors import InputError
from ..io.event_store import Event, event_keys, read_event
from ..io.graph_store import graph_keys, label_edges, read_graphs
from ..io.track_store import iter_tracks, track_keys
from ..metrics.edges import EdgeCounts, ScoreHistogram, select_scored
from ..metrics.stats import binned_ratio, ratio_entry
from ..metrics.tracks import (
    MATCHING_STYLES,
    Rates,
    apply_style,
    event_rates,
    filter_tracks,
    match_pairs,
    truth_cc_tracks,
)
from ..models.registry import read_model_info
from ..progress import Progress, safe_total
from ..track_building.build import DEFAULT_SCORE_CUT
from .config import EvaluationConfig
from .plots import describe_selection, plot_ratios, plot_roc_pr, plot_rz_maps
from .timing import timing_markdown, timing_table

log = logging.getLogger(__name__)

R_MAX_MM, Z_MAX_MM = 1100.0, 3100.0

DEFINITIONS = {
    "purity": "shared hits / track hits (a hit may link to several particles)",
    "completeness": "shared hits / particle hits",
    "ATLAS": "track matched and particle reconstructed when purity > f",
    "one_way": "track matched when purity > f; particle reconstructed when some track has completeness > f",
    "two_way": "double majority: purity > f and completeness > f for both",
    "efficiency": "reconstructed target particles / target particles",
    "fake_rate": "tracks matched to no particle / tracks (tracks with >= min_track_length spacepoints)",
    "duplicate_rate": "matched tracks beyond the first per reconstructed target particle / reconstructed "
    "target particles",
    "truth_cc": "efficiency of connected components on the truth-labelled edges of the same graph: the "
    "best any edge classifier can reach on it",
    "intervals": "lower/upper: 68.3% Clopper-Pearson interval",
    "roc_auc": "area under the edge ROC curve (target-edge efficiency vs fake-edge acceptance) of a "
    "scored stage: target truth edges against non-truth edges, truth edges of non-target particles "
    "left out; scores binned in 4000 logit bins",
    "average_precision": "area under that stage's precision (masked purity) vs recall (efficiency "
    "among the graph's target edges) curve",
}


def _as_config(cfg) -> EvaluationConfig:
    if isinstance(cfg, EvaluationConfig):
        return cfg
    return from_dict(EvaluationConfig, cfg, "evaluation")


def _key_index(files: Sequence[str | Path], lister, what: str) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for f in files:
        for key in lister(f):
            if key in index:
                raise InputError(f"event also in {index[key]}", file=f, event=key, field=what)
            index[key] = Path(f)
    return index


def _graph_keys(path) -> list[str]:
    return graph_keys(path)


def target_mask(event: Event, cfg: EvaluationConfig, file=None) -> np.ndarray:
    """Target particles of an event: the config selection, or the events' is_target column."""
    if cfg.target is None:
        return np.asarray(event.particles["is_target"], dtype=bool)
    try:
        return select(event.particles, cfg.target, n=len(event.particles["pt"]))
    except KeyError as exc:
        raise InputError(str(exc.args[0]), file=file, event=event.key, field="particles") from None


def track_eta(tracks, event: Event) -> np.ndarray:
    """Pseudorapidity of each candidate: the mean of its spacepoints' eta (seen from the origin)."""
    t = tracks.numpy()
    eta = np.asarray(event.hits["eta"], dtype=np.float64)[t.hits]
    n = np.maximum(t.lengths(), 1)
    return np.bincount(t.track_index(), weights=eta, minlength=len(t)) / n


class _Collector:
    """Per-style rates plus the per-particle and per-track arrays behind the plots."""

    def __init__(self) -> None:
        self.rates = {s: Rates() for s in MATCHING_STYLES}
        self.part = {k: [] for k in ("pt", "eta", "jet_dr", "jet_pt", "reco")}
        self.track = {k: [] for k in ("eta", "matched")}

    def add(self, tracks, event: Event, target: np.ndarray, cfg: EvaluationConfig, keep_arrays: bool) -> None:
        n_part = len(target)
        pairs = match_pairs(tracks, event.hit_particle, event.n_hits, n_part)
        for style in MATCHING_STYLES:
            m = apply_style(pairs, style, cfg.matching_fraction)
            self.rates[style].add(event_rates(m, target))
            if style == cfg.matching_style and keep_arrays:
                p = event.particles
                for k in ("pt", "eta", "jet_dr", "jet_pt"):
                    self.part[k].append(np.asarray(p[k], dtype=np.float64)[target])
                self.part["reco"].append(m.particle_reconstructed[target])
                self.track["eta"].append(track_eta(tracks, event))
                self.track["matched"].append(m.track_matched)

    def arrays(self, group: str) -> dict[str, np.ndarray]:
        src = self.part if group == "part" else self.track
        return {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in src.items()}


def _rates_summary(r: Rates) -> dict:
    dup = {
        "value": r.duplicate_rate,
        "numerator": r.n_duplicates,
        "denominator": r.n_target_reconstructed,
        "definition": DEFINITIONS["duplicate_rate"],
    }
    return {
        "efficiency": ratio_entry(r.n_target_reconstructed, r.n_target, DEFINITIONS["efficiency"]),
        "fake_rate": ratio_entry(r.n_fake, r.n_tracks, DEFINITIONS["fake_rate"]),
        "duplicate_rate": dup,
        "tracks": r.n_tracks,
        "target_particles": r.n_target,
    }


def run_evaluate(
    event_files: Sequence[str | Path],
    track_files: Sequence[str | Path],
    graph_files: dict[str, list] | None,
    outdir: str | Path,
    cfg: EvaluationConfig | dict | None = None,
    campaign: dict | None = None,
    gnn_model: str | Path | None = None,
) -> dict:
    """Evaluate a campaign's tracks; write ``summary.json``, ``report.md`` and ``plots/``.

    ``graph_files`` maps a stage name (e.g. module_map, filter, gnn) to that stage's graph shards;
    stage order is kept in the tables. The score cuts of the ``gnn`` and ``inference`` stages
    that ``cfg.score_cuts`` leaves unset are the working point stored in ``gnn_model`` (the cut
    inference builds tracks with), else 0.5. Returns the summary dict.
    """
    cfg = _as_config(cfg)
    cut = DEFAULT_SCORE_CUT
    if gnn_model is not None:
        cut = float((read_model_info(gnn_model).get("working_point") or {}).get("score_cut", cut))
    cfg = dataclasses.replace(cfg, score_cuts={"gnn": cut, "inference": cut, **cfg.score_cuts})
    campaign = dict(campaign or {})
    graph_files = dict(graph_files or {})
    outdir = Path(outdir)
    ev_index = _key_index(event_files, event_keys, "events")
    gr_index = {
        stage: _key_index(files, _graph_keys, f"graphs[{stage}]") for stage, files in graph_files.items()
    }
    r_edges = np.linspace(0.0, R_MAX_MM, cfg.rz_bins[0] + 1)
    z_edges = np.linspace(-Z_MAX_MM, Z_MAX_MM, cfg.rz_bins[1] + 1)
    edge_counts = {stage: EdgeCounts(r_edges, z_edges) for stage in graph_files}
    stage_truth_cc = {stage: Rates() for stage in graph_files}
    score_hists: dict[str, ScoreHistogram] = {}  # ROC / precision-recall of the scored stages

    reco, bound = _Collector(), _Collector()
    bound_source = None
    timings, n_events, n_events_no_tracks = [], 0, 0
    total = safe_total(lambda: sum(len(track_keys(tf)) for tf in track_files))
    prog = Progress(total, "evaluate", "events", log)
    for tf in track_files:
        for rec in prog.wrap(iter_tracks(tf)):
            if rec.key not in ev_index:
                raise InputError("no events file holds this event", file=tf, event=rec.key)
            event = read_event(ev_index[rec.key], rec.key, tables=("hits", "particles"))
            if rec.n_hits != event.n_hits:
                raise InputError(
                    f"tracks were built on {rec.n_hits} hits but the event has {event.n_hits}",
                    file=tf, event=rec.key, field="n_hits",
                )  # fmt: skip
            n_events += 1
            target = target_mask(event, cfg, ev_index[rec.key])
            tracks = filter_tracks(rec.tracks, cfg.min_track_length)
            n_events_no_tracks += len(tracks) == 0
            reco.add(tracks, event, target, cfg, keep_arrays=True)
            if rec.timing:
                timings.append(rec.timing)

            graphs = {}
            for stage, index in gr_index.items():
                if rec.key not in index:
                    raise InputError(f"no {stage} graph for this event", file=tf, event=rec.key)
                graphs[stage] = read_graphs(index[rec.key], [rec.key])[0]
            if rec.edge_index is not None:
                src_ei = rec.edge_index
                y, _, edge_particle = label_edges(src_ei, event)
                if rec.scores is not None:
                    _add_scores(score_hists, "inference", rec.scores, y, edge_particle, target)
                bound_source = "tracks file graph"
                counts = edge_counts.setdefault("inference", EdgeCounts(r_edges, z_edges))
                sel, _ = select_scored(src_ei, {"inference": rec.scores} if rec.scores is not None else {},
                                       "inference", cfg.score_cuts)  # fmt: skip
                counts.add_event(sel, event, target)
                stage_truth_cc.setdefault("inference", Rates())
                _add_truth_cc(stage_truth_cc["inference"], src_ei, y, event, target, cfg)
            elif graphs:
                last = list(graphs)[-1]
                src_ei, y = graphs[last].edge_index, graphs[last].y
                bound_source = f"{last} graph"
            else:
                src_ei = y = None
            if src_ei is not None:
                bound.add(
                    truth_cc_tracks(src_ei, y, event.n_hits, cfg.min_track_length), event, target, cfg, True
                )
            for stage, g in graphs.items():
                sel, _ = select_scored(g.edge_index, g.scores, stage, cfg.score_cuts)
                edge_counts[stage].add_event(sel, event, target)
                _add_truth_cc(stage_truth_cc[stage], g.edge_index, g.y, event, target, cfg)
                if stage in g.scores:
                    _add_scores(score_hists, stage, g.scores[stage], g.y, g.edge_particle, target)

    prog.close()
    summary = _summary(cfg, campaign, reco, bound, bound_source, edge_counts, stage_truth_cc, timings,
                       n_events, n_events_no_tracks, event_files, track_files, graph_files)  # fmt: skip
    for stage, h in score_hists.items():
        summary["edges"].setdefault(stage, {}).update(
            roc_auc=h.auc(), average_precision=h.average_precision()
        )
    plot_files = _plots(
        outdir / "plots", cfg, campaign, reco, bound if bound_source else None, edge_counts, summary
    )
    if score_hists:
        plot_files += plot_roc_pr(
            score_hists, cuts=cfg.score_cuts, stem=outdir / "plots" / "edges_roc_pr", campaign=campaign,
            selection=summary["selection"], formats=cfg.formats,
        )  # fmt: skip
    summary["plots"] = [str(p.relative_to(outdir)) for p in plot_files]
    with atomic_output(outdir / "report.md") as tmp:
        tmp.write_text(report_markdown(summary))
    with atomic_output(outdir / "summary.json") as tmp:
        tmp.write_text(json.dumps(_json_safe(summary), indent=2) + "\n")
    return summary


def _add_scores(hists: dict, stage: str, scores, y, edge_particle, target) -> None:
    """Add a scored graph to its stage's ROC histogram, targets as configured for the evaluation."""
    ep = np.asarray(edge_particle, np.int64)
    y_target = np.asarray(y, bool) & (ep >= 0) & np.asarray(target, bool)[np.maximum(ep, 0)]
    hists.setdefault(stage, ScoreHistogram()).add(scores, y, y_target)


def _add_truth_cc(rates: Rates, edge_index, y, event, target, cfg) -> None:
    tracks = truth_cc_tracks(edge_index, y, event.n_hits, cfg.min_track_length)
    pairs = match_pairs(tracks, event.hit_particle, event.n_hits, len(target))
    rates.add(event_rates(apply_style(pairs, cfg.matching_style, cfg.matching_fraction), target))


def _summary(cfg, campaign, reco, bound, bound_source, edge_counts, stage_truth_cc, timings, n_events,
             n_events_no_tracks, event_files, track_files, graph_files) -> dict:  # fmt: skip
    part = reco.arrays("part")
    trk = reco.arrays("track")
    binned = {
        "efficiency_vs_eta": binned_ratio(part["eta"], part["reco"], cfg.eta_bins).to_dict(),
        "efficiency_vs_pt": binned_ratio(part["pt"], part["reco"], cfg.pt_bins).to_dict(),
        "efficiency_vs_jet_dr": binned_ratio(part["jet_dr"], part["reco"], cfg.jet_dr_bins).to_dict(),
        "efficiency_vs_jet_pt": _in_jets(part, cfg).to_dict(),
        "fake_rate_vs_eta": binned_ratio(trk["eta"], ~trk["matched"].astype(bool), cfg.eta_bins).to_dict(),
    }
    edges = {}
    for stage, counts in edge_counts.items():
        e = counts.summary()
        e["score_cut"] = cfg.score_cuts.get(stage)
        tc = stage_truth_cc.get(stage)
        if tc is not None:
            e["truth_cc_efficiency"] = ratio_entry(
                tc.n_target_reconstructed, tc.n_target, DEFINITIONS["truth_cc"]
            )
        edges[stage] = e
    return {
        "campaign": campaign,
        "config": to_dict(cfg),
        "inputs": {
            "event_files": [str(f) for f in event_files],
            "track_files": [str(f) for f in track_files],
            "graph_files": {k: [str(f) for f in v] for k, v in graph_files.items()},
        },
        "events": n_events,
        "events_without_tracks": int(n_events_no_tracks),
        "selection": describe_selection(cfg.target),
        "headline_style": cfg.matching_style,
        "matching_fraction": cfg.matching_fraction,
        "tracking": {s: _rates_summary(r) for s, r in reco.rates.items()},
        "truth_cc_bound": {
            "graph": bound_source,
            **({s: _rates_summary(r) for s, r in bound.rates.items()} if bound_source else {}),
        },
        "edges": edges,
        "binned": binned,
        "timing": timing_table(timings),
        "definitions": DEFINITIONS,
    }


def _in_jets(part: dict, cfg: EvaluationConfig):
    """Efficiency vs jet pT of the target particles inside a jet (Delta R < jet_dr_max)."""
    inside = part["jet_dr"] < cfg.jet_dr_max
    return binned_ratio(part["jet_pt"][inside], part["reco"][inside], cfg.jet_pt_bins)


def _plots(plot_dir: Path, cfg, campaign, reco, bound, edge_counts, summary) -> list[Path]:
    part = reco.arrays("part")
    trk = reco.arrays("track")
    bpart = bound.arrays("part") if bound is not None else None
    sel = summary["selection"]
    style = f"{cfg.matching_style} matching, f = {cfg.matching_fraction}"
    files = []
    specs = [
        ("eta", cfg.eta_bins, "$\\eta$", False, "efficiency_vs_eta"),
        ("pt", cfg.pt_bins, "$p_T$ [GeV]", True, "efficiency_vs_pt"),
        (
            "jet_dr",
            cfg.jet_dr_bins,
            "$\\Delta R$(particle, nearest truth jet)",
            False,
            "efficiency_vs_jet_dr",
        ),
        ("jet_pt", cfg.jet_pt_bins, "nearest truth jet $p_T$ [GeV]", False, "efficiency_vs_jet_pt"),
    ]
    for var, bins, xlabel, logx, name in specs:
        if var == "jet_pt":
            series = [("GNN tracks", _in_jets(part, cfg))]
            if bpart is not None:
                series.append(("truth-CC bound", _in_jets(bpart, cfg)))
            extra = f"{style}, particles with $\\Delta R$ < {cfg.jet_dr_max} to a jet"
        else:
            series = [("GNN tracks", binned_ratio(part[var], part["reco"], bins))]
            if bpart is not None:
                series.append(("truth-CC bound", binned_ratio(bpart[var], bpart["reco"], bins)))
            extra = style
        files += plot_ratios(series, xlabel=xlabel, ylabel="Track efficiency", stem=plot_dir / name,
                             campaign=campaign, selection=sel, formats=cfg.formats, logx=logx, extra=extra)  # fmt: skip
    fake = binned_ratio(trk["eta"], ~trk["matched"].astype(bool), cfg.eta_bins)
    files += plot_ratios([("GNN tracks", fake)], xlabel="track $\\eta$", ylabel="Fake rate",
                         stem=plot_dir / "fake_rate_vs_eta", campaign=campaign,
                         selection=f"tracks with ≥ {cfg.min_track_length} spacepoints",
                         formats=cfg.formats, extra=style)  # fmt: skip
    for stage, c in edge_counts.items():
        files += plot_rz_maps(
            c.r_edges, c.z_edges,
            [("edge efficiency", c.found_rz, c.truth_rz), ("edge purity", c.graph_target_rz, c.graph_rz)],
            stem=plot_dir / f"edges_rz_{stage}", campaign=campaign, title=stage, formats=cfg.formats,
        )  # fmt: skip
    return files


def _fmt(entry) -> str:
    if entry is None or entry.get("value") is None:
        return "n/a"
    v = entry["value"]
    if entry.get("lower") is not None:
        return f"{v:.4f} (+{entry['upper'] - v:.4f} −{v - entry['lower']:.4f})"
    return f"{v:.4f}"


def _auc(value) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"


def report_markdown(summary: dict) -> str:
    """The human-readable report: headline tables, edge metrics per stage, timing."""
    camp = summary.get("campaign") or {}
    lines = [f"# Tracking performance: {camp.get('name', 'campaign')}", ""]
    info = [f"{k} = {v}" for k, v in camp.items() if k != "name"]
    if info:
        lines += ["Campaign: " + ", ".join(info), ""]
    lines += [
        f"Events: {summary['events']} ({summary['events_without_tracks']} without track candidates).  ",
        f"Target particles: {summary['selection']}.  ",
        f"Matching fraction f = {summary['matching_fraction']}; headline style: {summary['headline_style']}.",
        "",
        "## Track-level",
        "",
        "| Style | Efficiency | Truth-CC bound | Fake rate | Duplicate rate | Tracks | Targets |",
        "|---|---|---|---|---|---|---|",
    ]
    bound = summary.get("truth_cc_bound", {})
    for style, r in summary["tracking"].items():
        b = bound.get(style, {}).get("efficiency") if isinstance(bound.get(style), dict) else None
        lines.append(
            f"| {style} | {_fmt(r['efficiency'])} | {_fmt(b)} | {_fmt(r['fake_rate'])} | "
            f"{_fmt(r['duplicate_rate'])} | {r['tracks']} | {r['target_particles']} |"
        )
    lines += ["", f"Truth-CC bound computed on: {bound.get('graph') or 'no graph available'}.", ""]
    if summary["edges"]:
        lines += [
            "## Edge-level (target edges)",
            "",
            "| Stage | Score cut | Edges/event | Efficiency | Purity | Masked purity | Truth-CC efficiency "
            "| ROC AUC |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for stage, e in summary["edges"].items():
            epe = e["edges_per_event"]
            lines.append(
                f"| {stage} | {e['score_cut'] if e['score_cut'] is not None else '-'} | "
                f"{epe:.0f} | {_fmt(e['efficiency'])} | {_fmt(e['purity'])} | {_fmt(e['masked_purity'])} | "
                f"{_fmt(e.get('truth_cc_efficiency'))} | {_auc(e.get('roc_auc'))} |"
                if epe is not None
                else f"| {stage} | - | - | n/a | n/a | n/a | n/a | n/a |"
            )
        lines.append("")
    lines += ["## Per-stage inference time", "", timing_markdown(summary["timing"])]
    lines += ["## Definitions", ""] + [f"- **{k}**: {v}" for k, v in summary["definitions"].items()]
    if summary.get("plots"):
        lines += ["", "## Plots", ""] + [f"- [{p}]({p})" for p in summary["plots"] if p.endswith(".png")]
    return "\n".join(lines) + "\n"


def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    return obj
