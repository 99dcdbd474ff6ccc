"""Report figures in an ATLAS-like mplhep style, labelled with campaign, ⟨μ⟩ and selection.

Every figure is drawn with the non-interactive Agg backend (batch jobs have no display) and saved
in each configured format; functions return the written paths.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..io.atomic import atomic_output  # noqa: E402
from ..metrics.stats import BinnedRatio  # noqa: E402

logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)

_NAMES = {
    "pt": ("$p_T$", "GeV"),
    "eta": ("$\\eta$", ""),
    "radius": ("$r_{prod}$", "mm"),
    "n_spacepoints": ("$N_{SP}$", ""),
    "n_modules": ("$N_{mod}$", ""),
    "pdg_id": ("PDG ID", ""),
    "vz": ("$v_z$", "mm"),
}
_OPS = {"==": "=", "!=": "≠", "<": "<", "<=": "≤", ">": ">", ">=": "≥", "in": r"$\in$", "not_in": r"$\notin$"}


def _atlas_style():
    """mplhep's ATLAS style, imported only when a figure is drawn (matching and metrics stay
    importable on machines without mplhep, such as a GPU node running the benchmark)."""
    import mplhep

    return mplhep.style.ATLAS


def describe_selection(selection: dict | None) -> str:
    """Short human-readable form of a conditions selection for figure labels."""
    if selection is None:
        return "targets: convert-time selection"
    parts = []
    for name, cond in selection.items():
        absolute = name.startswith("abs_")
        base = name[4:] if absolute else name
        if isinstance(cond, bool) or (base.startswith("is_") and not isinstance(cond, (list, tuple))):
            label = base[3:] if base.startswith("is_") else base
            parts.append(label if cond else f"not {label}")
            continue
        sym, unit = _NAMES.get(base, (base, ""))
        sym = f"|{sym}|" if absolute else sym
        unit = f" {unit}" if unit else ""
        if isinstance(cond, (list, tuple)) and len(cond) == 2 and isinstance(cond[0], str):
            op, arg = cond
            if op in ("within", "not_within"):
                rel = _OPS["in"] if op == "within" else _OPS["not_in"]
                text = f"{sym} {rel} [{arg[0]}, {arg[1]}]{unit}"
            elif op in ("in", "not_in"):
                text = f"{sym} {_OPS[op]} {{{', '.join(map(str, arg))}}}"
            else:
                text = f"{sym} {_OPS.get(op, op)} {arg}{unit}"
        elif isinstance(cond, (list, tuple)) and len(cond) == 2:
            text = f"{cond[0]} ≤ {sym} ≤ {cond[1]}{unit}"
        else:
            text = f"{sym} = {cond}{unit}"
        parts.append(text)
    return ", ".join(parts)


def campaign_text(campaign: dict | None) -> str:
    campaign = campaign or {}
    bits = []
    if campaign.get("name"):
        bits.append(str(campaign["name"]))
    if campaign.get("sample"):
        bits.append(str(campaign["sample"]))
    if campaign.get("sqrt_s") is not None:
        bits.append(f"√s = {campaign['sqrt_s']} TeV")
    if campaign.get("mu") is not None:
        bits.append(f"$\\langle\\mu\\rangle$ = {campaign['mu']}")
    return ", ".join(bits)


def _label(ax, campaign: dict | None, selection: str, extra: str = "") -> None:
    ax.text(0.04, 0.96, "gnntrack", transform=ax.transAxes, fontweight="bold", fontstyle="italic",
            va="top", ha="left", fontsize=15)  # fmt: skip
    ax.text(0.235, 0.96, "Simulation", transform=ax.transAxes, va="top", ha="left", fontsize=15)
    lines = [t for t in (campaign_text(campaign), selection, extra) if t]
    ax.text(0.04, 0.88, "\n".join(_wrap(t) for t in lines), transform=ax.transAxes, va="top", ha="left",
            fontsize=9.5, linespacing=1.4)  # fmt: skip


def _wrap(text: str, width: int = 70) -> str:
    out, line = [], ""
    for word in text.split(", "):
        candidate = f"{line}, {word}" if line else word
        if len(candidate) > width and line:
            out.append(line + ",")
            line = word
        else:
            line = candidate
    out.append(line)
    return "\n".join(out)


def _save(fig, stem: Path, formats: Sequence[str]) -> list[Path]:
    paths = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def plot_ratios(
    series: Sequence[tuple[str, BinnedRatio]],
    *,
    xlabel: str,
    ylabel: str,
    stem: Path,
    campaign: dict | None,
    selection: str,
    formats: Sequence[str] = ("png", "pdf"),
    logx: bool = False,
    extra: str = "",
) -> list[Path]:
    """Binned ratios with Clopper-Pearson bars (x bars = bin widths), one marker set per series."""
    with plt.style.context(_atlas_style()):
        fig, ax = plt.subplots(figsize=(7.5, 5.6))
        markers = ["o", "s", "^", "v", "D"]
        top = 0.0
        for i, (name, br) in enumerate(series):
            ok = br.n > 0
            if not ok.any():
                continue
            lo, hi = br.interval()
            x, y = br.centres[ok], br.ratio[ok]
            if logx:
                x = np.sqrt(br.edges[:-1] * br.edges[1:])[ok]
            xerr = np.stack([x - br.edges[:-1][ok], br.edges[1:][ok] - x])
            yerr = np.stack([y - lo[ok], hi[ok] - y])
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt=markers[i % len(markers)], ms=5, capsize=0,
                        label=f"{name}", lw=1.2)  # fmt: skip
            top = max(top, float(np.nanmax(hi[ok])))
        if not ax.has_data():
            ax.text(0.5, 0.45, "no entries", transform=ax.transAxes, ha="center", fontsize=14, color="gray")
        if logx:
            ax.set_xscale("log")
        edges = series[0][1].edges if series else np.array([0.0, 1.0])
        ax.set_xlim(edges[0], edges[-1])
        ax.set_ylim(0.0, max(1.0, top) * 1.45 if top > 0.2 else max(top, 0.01) * 1.9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if ax.has_data():
            ax.legend(loc="upper right", fontsize=10, frameon=False)
        _label(ax, campaign, selection, extra)
        return _save(fig, stem, formats)


def plot_rz_maps(
    r_edges, z_edges, maps: Sequence[tuple[str, np.ndarray, np.ndarray]], *, stem: Path, campaign: dict | None,
    title: str, formats: Sequence[str] = ("png", "pdf"),
) -> list[Path]:  # fmt: skip
    """2-D ratio maps (passed / total per (r, z) bin), one panel per (label, passed, total)."""
    with plt.style.context(_atlas_style()):
        fig, axes = plt.subplots(
            1, len(maps), figsize=(7.5 * len(maps), 5.6), squeeze=False, layout="constrained"
        )
        for ax, (label, passed, total) in zip(axes[0], maps):
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = np.where(total > 0, passed / np.maximum(total, 1), np.nan)
            mesh = ax.pcolormesh(z_edges, r_edges, ratio, vmin=0.0, vmax=1.0, cmap="viridis", shading="flat")
            fig.colorbar(mesh, ax=ax, label=label, pad=0.02)
            ax.set_xlim(z_edges[0], z_edges[-1])
            ax.set_ylim(r_edges[0], r_edges[-1])
            ax.set_xlabel("z [mm]")
            ax.set_ylabel("r [mm]")
            ax.set_title(f"{label}, {title}", fontsize=12, loc="right")
            if not np.isfinite(ratio).any():
                ax.text(
                    0.5, 0.5, "no entries", transform=ax.transAxes, ha="center", fontsize=14, color="gray"
                )
        head = ", ".join(t for t in ("gnntrack Simulation", campaign_text(campaign)) if t)
        fig.suptitle(head, fontsize=12, x=0.02, ha="left")
        return _save(fig, stem, formats)


def plot_roc_pr(
    hists: dict, *, cuts: dict, stem: Path, campaign: dict | None, selection: str,
    formats: Sequence[str] = ("png", "pdf"),
) -> list[Path]:  # fmt: skip
    """Edge ROC (target-edge efficiency vs fake-edge acceptance) and precision-recall (masked
    purity vs efficiency among the graph's target edges) curves, one per scored stage
    (``metrics.edges.ScoreHistogram``), with each stage's score cut marked where it has one."""
    with plt.style.context(_atlas_style()):
        fig, (roc, pr) = plt.subplots(1, 2, figsize=(15.0, 5.6), layout="constrained")
        for i, (stage, h) in enumerate(hists.items()):
            c = h.curves()
            color = f"C{i}"
            ok = c["fpr"] > 0
            roc.plot(c["fpr"][ok], c["tpr"][ok], color=color, lw=1.6, label=f"{stage} (AUC = {h.auc():.4f})")
            has = np.isfinite(c["precision"])
            pr.plot(c["tpr"][has], c["precision"][has], color=color, lw=1.6,
                    label=f"{stage} (AP = {h.average_precision():.4f})")  # fmt: skip
            if stage in cuts:
                fpr, tpr, prec = h.point_at(cuts[stage])
                roc.plot([fpr], [tpr], "o", color=color, ms=6, label=f"{stage} cut {cuts[stage]:g}")
                pr.plot([tpr], [prec], "o", color=color, ms=6)
        roc.set_xscale("log")
        roc.set_xlim(1e-5, 1.0)
        roc.set_xlabel("fake-edge acceptance")
        roc.set_ylabel("target-edge efficiency")
        pr.set_xlim(0.0, 1.0)
        pr.set_xlabel("target-edge efficiency (recall)")
        pr.set_ylabel("masked purity (precision)")
        for ax in (roc, pr):
            ax.set_ylim(0.0, 1.3)
            if ax.has_data():
                ax.legend(loc="upper right", fontsize=9, frameon=False)
            else:
                ax.text(
                    0.5, 0.45, "no entries", transform=ax.transAxes, ha="center", fontsize=14, color="gray"
                )
        _label(roc, campaign, selection, "edges of scored stages")
        return _save(fig, stem, formats)
