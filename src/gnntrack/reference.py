"""Reference model bundles: a campaign's trained models, shipped with their model cards.

A bundle is one folder::

    card.json       what made each model and how well it does (machine-readable)
    card.md         the same, for people
    campaign.yaml   the campaign the models were trained in (``gnntrack infer --reference``
                    reads its stage sections, e.g. the track building the GNN's cut was chosen with)
    module_map.h5   the module map (compressed; ``graph_construction.method: module_map``)
    embedding.pt    the metric-learning model (``method: metric_learning``)
    filter.pt       the edge filter (when the campaign runs it)
    gnn.pt          the GNN, its working point stored with it
    check.h5        one small event the card's ``check`` numbers were measured on

``pack_reference`` makes a bundle from a finished campaign's outputs; ``Reference.load`` reads
one back, checking every file against the SHA-256 recorded in the card, and
``Reference.check`` reruns the chain on the check event (what the shipped test does).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .io.atomic import atomic_output
from .io.errors import InputError

CARD = "card.json"
CARD_MD = "card.md"
CAMPAIGN = "campaign.yaml"
CHECK_EVENTS = "check.h5"
FORMAT = "gnntrack-reference"
VERSION = 1
#: bundle file of each model, by the campaign's models/ file it is packed from
MODEL_FILES = {
    "module_map": ("module_map.h5", "module_map/module_map.h5"),
    "embedding": ("embedding.pt", "models/embedding.pt"),
    "filter": ("filter.pt", "models/filter.pt"),
    "gnn": ("gnn.pt", "models/gnn.pt"),
}
#: the check numbers compared by ``Reference.check`` (summary.json "tracking" entries)
CHECK_METRICS = (("ATLAS", "efficiency"), ("two_way", "efficiency"), ("ATLAS", "fake_rate"))
#: default allowed |difference| of a check number: edge scores differ in the last bits between
#: CPUs and BLAS builds, which can move an edge across the cut; on a few hundred target
#: particles one particle is ~0.3 %
CHECK_TOLERANCE = 0.01


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def machine() -> dict[str, Any]:
    """The machine this runs on, as a card records it."""
    import torch

    from .device import cpu_name

    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "system": platform.platform(),
    }


def git_commit(repo: str | Path = ".") -> str | None:
    """HEAD of the checkout at ``repo`` (with ``-dirty`` when it has uncommitted changes)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty else "")


def _rule_seconds(campaign_dir: Path, rule: str) -> float | None:
    """Wall seconds of a rule from Snakemake's benchmark file(s), summed over its shards."""
    files = [
        campaign_dir / "benchmarks" / f"{rule}.tsv",
        *sorted((campaign_dir / "benchmarks" / rule).glob("*.tsv")),
    ]
    total, found = 0.0, False
    for f in files:
        if f.is_file():
            with open(f) as fh:
                for row in csv.DictReader(fh, delimiter="\t"):
                    total += float(row["s"])
                    found = True
    return total if found else None


def _metrics_rows(model_file: Path) -> list[dict[str, float]]:
    f = Path(f"{model_file}.metrics.csv")
    if not f.is_file():
        return []
    with open(f) as fh:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(fh)]


def _tracking(summary: dict) -> dict[str, Any]:
    """Headline numbers of an evaluation summary."""
    out: dict[str, Any] = {"events": summary.get("events")}
    for style in ("ATLAS", "two_way"):
        t = summary["tracking"][style]
        out[style] = {
            "efficiency": t["efficiency"]["value"],
            "fake_rate": t["fake_rate"]["value"],
            "duplicate_rate": t["duplicate_rate"]["value"],
            "target_particles": t["target_particles"],
            "tracks": t["tracks"],
        }
    bound = summary.get("truth_cc_bound") or {}
    if bound:
        out["truth_cc_bound"] = {
            k: v["efficiency"]["value"] for k, v in bound.items() if isinstance(v, dict) and "efficiency" in v
        }
    edges = {}
    for stage, e in (summary.get("edges") or {}).items():
        row = {"edges_per_event": e.get("edges_per_event")}
        for k in ("efficiency", "masked_purity", "purity"):
            if isinstance(e.get(k), dict):
                row[k] = e[k]["value"]
        edges[stage] = row
    out["edges"] = edges
    return out


def _model_entry(path: Path, campaign_dir: Path, rule: str, trained: Path | None = None) -> dict:
    """Card entry of a trained model file (trained = the training rule's output, if different)."""
    from .models.registry import read_model_info

    info = read_model_info(path)
    rows = _metrics_rows(trained or path)
    best_epoch = info.get("epoch")
    best = next((r for r in rows if int(r.get("epoch", -1)) == best_epoch), None)
    return {
        "class": info.get("class"),
        "config": info.get("config"),
        "train_config": info.get("train_config"),
        "node_features": info.get("node_features"),
        "epochs_run": len(rows),
        "best_epoch": best_epoch,
        "validation_at_best_epoch": best,
        "working_point": info.get("working_point"),
        "training_seconds": _rule_seconds(campaign_dir, rule),
    }


def pack_reference(
    campaign_dir: str | Path,
    campaign: dict,
    output: str | Path,
    check_events: str | Path | None = None,
    command: str | None = None,
    notes: str | None = None,
    tolerance: float = CHECK_TOLERANCE,
    device: str = "cpu",
) -> dict:
    """Bundle a finished campaign's models into ``output`` with their card; returns the card.

    ``campaign``: the campaign mapping the workflow ran (config/config.yaml with the campaign
    file merged over it); ``check_events``: an events file (a small event) the bundled chain is
    run on, its numbers stored in the card for ``Reference.check``; ``command``: the command
    that ran the campaign, recorded in the card.
    """
    from .graph_construction.module_map import ModuleMapData

    campaign_dir, output = Path(campaign_dir), Path(output)
    summary_file = campaign_dir / "eval" / "summary.json"
    if not summary_file.is_file():
        raise InputError("no evaluation summary: run the campaign to the end first", file=summary_file)
    summary = json.loads(summary_file.read_text())
    output.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict] = {}
    models: dict[str, dict] = {}
    for name, (dest, src) in MODEL_FILES.items():
        src_path = campaign_dir / src
        if not src_path.is_file():
            continue
        if name == "module_map":
            data = ModuleMapData.read(src_path)
            minmax = data.cuts.get("cut", "minmax") == "minmax"
            # written compressed; a map applied with min/max cuts without its mean/rms (40 % smaller)
            (data.minmax_only() if minmax else data).write(output / dest)
            models[name] = {
                "module_pairs": data.n_pairs,
                "module_triplets": 0 if data.triplets is None else data.triplets.n_triplets,
                "statistics": "min/max" if minmax else "min/max/mean/rms",
                "events": data.n_events,
                "symmetry": data.symmetry,
                "cuts": data.cuts,
                "build_seconds": _rule_seconds(campaign_dir, "build_module_map"),
            }
        else:
            shutil.copyfile(src_path, output / dest)
            if name == "gnn":
                trained = campaign_dir / "models" / "gnn_trained.pt"
                models[name] = _model_entry(
                    src_path, campaign_dir, "train_gnn", trained if trained.is_file() else None
                )
                models[name]["working_point_seconds"] = _rule_seconds(campaign_dir, "gnn_working_point")
            else:
                rule = "train_filter" if name == "filter" else "train_metric_learning"
                models[name] = _model_entry(src_path, campaign_dir, rule)
    if "gnn" not in models:
        raise InputError("no GNN model in the campaign", file=campaign_dir / MODEL_FILES["gnn"][1])
    with atomic_output(output / CAMPAIGN) as tmp:
        Path(tmp).write_text(yaml.safe_dump(campaign, sort_keys=False))
    if check_events is not None:
        shutil.copyfile(check_events, output / CHECK_EVENTS)
    for f in sorted(output.iterdir()):
        if f.name not in (CARD, CARD_MD) and f.is_file():
            files[f.name] = {"sha256": sha256(f), "bytes": f.stat().st_size}
    card = {
        "format": FORMAT,
        "version": VERSION,
        "campaign": campaign.get("campaign"),
        "command": command,
        "commit": git_commit(),
        "machine": machine(),
        "data": {
            "input": campaign.get("input"),
            "shards": campaign.get("shards"),
            "simulation": _effective(campaign, "simulation"),
            "map_sample": campaign.get("map_sample"),
        },
        "models": models,
        "test": _tracking(summary),
        "files": files,
        "notes": notes,
    }
    if check_events is not None:
        ref = Reference(output, card)
        card["check"] = {"metrics": ref.run_check(device), "tolerance": tolerance}
    with atomic_output(output / CARD) as tmp:
        Path(tmp).write_text(json.dumps(card, indent=2, default=str) + "\n")
    with atomic_output(output / CARD_MD) as tmp:
        Path(tmp).write_text(render_card(card))
    return card


@dataclass
class Reference:
    """A bundle on disk (``Reference.load``)."""

    root: Path
    card: dict

    @classmethod
    def load(cls, root: str | Path, verify: bool = True) -> Reference:
        """Read ``root``/card.json; with ``verify`` every listed file must match its SHA-256."""
        root = Path(root)
        card_file = root / CARD
        try:
            card = json.loads(card_file.read_text())
        except OSError as e:
            raise InputError(f"cannot read the reference card: {e.strerror}", file=card_file) from None
        except json.JSONDecodeError as e:
            raise InputError(f"not JSON: {e}", file=card_file) from None
        if card.get("format") != FORMAT:
            raise InputError(f"format {card.get('format')!r} != {FORMAT!r}", file=card_file, field="format")
        if verify:
            for name, entry in card.get("files", {}).items():
                f = root / name
                if not f.is_file():
                    raise InputError("file listed in the card is missing", file=f)
                if sha256(f) != entry["sha256"]:
                    raise InputError("content does not match the card's SHA-256", file=f, field="sha256")
        return cls(root, card)

    def path(self, name: str) -> Path | None:
        """Bundle file of model ``name`` (module_map, embedding, filter, gnn), None if absent."""
        f = self.root / MODEL_FILES[name][0]
        return f if f.is_file() else None

    @property
    def campaign(self) -> dict:
        return yaml.safe_load((self.root / CAMPAIGN).read_text()) or {}

    def run_check(self, device: str = "cpu") -> dict[str, float]:
        """Run the bundled chain on the check event; the ``CHECK_METRICS`` numbers, plus counts."""
        from .evaluation import run_evaluate
        from .inference import run_infer

        events = self.root / CHECK_EVENTS
        if not events.is_file():
            raise InputError("the bundle has no check event", file=events)
        campaign = self.campaign
        inference = stage_section(campaign, "inference")
        evaluation = {**(campaign.get("evaluation") or {}), "formats": ["png"]}
        with tempfile.TemporaryDirectory() as tmp:
            tracks = Path(tmp) / "tracks.h5"
            run_infer(
                events,
                tracks,
                inference,
                module_map=self.path("module_map"),
                embedding=self.path("embedding"),
                filter_model=self.path("filter"),
                gnn_model=self.path("gnn"),
                device=device,
            )
            summary = run_evaluate(
                [events], [tracks], None, Path(tmp) / "eval", evaluation, gnn_model=self.path("gnn")
            )
        out = {f"{style}_{name}": summary["tracking"][style][name]["value"] for style, name in CHECK_METRICS}
        out["target_particles"] = summary["tracking"]["ATLAS"]["target_particles"]
        out["tracks"] = summary["tracking"]["ATLAS"]["tracks"]
        return out

    def check(self, device: str = "cpu") -> dict[str, tuple[float, float]]:
        """Rerun the check; raise AssertionError when a number is off the card by more than its
        tolerance. Returns {metric: (card, now)}."""
        stored = self.card.get("check")
        if not stored:
            raise InputError("the card has no check numbers", file=self.root / CARD, field="check")
        now = self.run_check(device)
        tol = float(stored["tolerance"])
        result = {k: (float(v), float(now[k])) for k, v in stored["metrics"].items()}
        # the rates may move by the tolerance; the target count is truth and must be exact
        allowed = {f"{style}_{name}": tol for style, name in CHECK_METRICS}
        off = {k: v for k, v in result.items() if k != "tracks" and abs(v[0] - v[1]) > allowed.get(k, 0.0)}
        if off:
            raise AssertionError(f"check numbers off the card (tolerance {tol}): {off}")
        return result


def _effective(campaign: dict, section: str) -> dict | None:
    """A stage section with every default filled in (seeds included), as plain data."""
    from .config import ConfigError, to_dict

    try:
        return to_dict(stage_section(campaign, section))
    except ConfigError:  # a section this version cannot resolve: record it as given
        return campaign.get(section)


def stage_section(campaign: dict, section: str):
    """The effective stage config of ``section`` in a bundle's campaign."""
    from .campaign import resolve_campaign

    return resolve_campaign(campaign, sections=[section])[section]


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _working_point_text(wp: dict | None) -> str:
    """The stored cut, how it was chosen, and the validation numbers at it (not the whole scan)."""
    if not wp:
        return "none stored"
    text = f"cut {_fmt(wp.get('score_cut'), 3)} ({wp.get('criterion')}"
    if wp.get("n_events"):
        text += f", {wp['n_events']} validation events"
    text += ")"
    row = next((r for r in wp.get("scan") or [] if r.get("cut") == wp.get("score_cut")), None)
    if row:
        text += "; there: " + ", ".join(f"{k} {_fmt(v)}" for k, v in row.items() if k != "cut")
    if wp.get("track_building"):
        text += f"; track building {json.dumps(wp['track_building'], sort_keys=True)}"
    return text


def render_card(card: dict) -> str:
    """card.md: the card for people."""
    m = card["machine"]
    t = card["test"]
    lines = [
        f"# Reference models: {card['campaign']}",
        "",
        "Made by the command below at commit "
        f"`{card.get('commit') or 'unknown'}`; packed on {m['cpu']} ({m['cores']} cores"
        f"{', ' + m['gpu'] if m.get('gpu') else ''}), Python {m['python']}, torch {m['torch']}.",
        "",
        "```",
        card.get("command") or "(command not recorded)",
        "```",
        "",
        "The campaign's configuration is `campaign.yaml`; run the models with",
        "`gnntrack infer --reference <this folder> EVENTS.h5 -o TRACKS.h5`.",
        "",
    ]
    if card.get("notes"):
        lines += [card["notes"], ""]
    d = card["data"]
    sim = d.get("simulation") or {}
    lines += [
        "## Data",
        "",
        f"- input: {d.get('input')}; shards: {d.get('shards')}",
        f"- simulation: {json.dumps(sim, sort_keys=True)}",
        "  (each event's seed is derived from the campaign seed and its event number)",
        f"- module-map sample: {json.dumps(d.get('map_sample'), sort_keys=True)}",
        "",
    ]
    for name, entry in card["models"].items():
        lines += [
            f"## {name} (`{MODEL_FILES[name][0]}`, {card['files'][MODEL_FILES[name][0]]['bytes'] / 1e6:.2f} MB)",
            "",
        ]
        if name == "module_map":
            lines += [
                f"- {entry['module_pairs']} module pairs"
                + (f" and {entry['module_triplets']} module triplets" if entry.get("module_triplets") else "")
                + f" from {entry['events']} events, symmetry {entry['symmetry']}, cuts {entry['cuts']}"
                + (f"; stores {entry['statistics']} statistics" if "statistics" in entry else ""),
                f"- build time: {_fmt(entry.get('build_seconds'), 0)} s",
                "",
            ]
            continue
        cfg = entry.get("config") or {}
        size = ", ".join(
            f"{k} {cfg[k]}" for k in ("hidden", "n_layers", "n_graph_iters", "emb_dim") if k in cfg
        )
        lines += [
            f"- {entry['class']} ({size}); {entry['epochs_run']} epochs, best epoch {entry['best_epoch']}",
            f"- training time: {_fmt(entry.get('training_seconds'), 0)} s of wall time",
            f"- optimiser seed {((entry.get('train_config') or {}).get('seed'))}; working point: "
            + _working_point_text(entry.get("working_point")),
        ]
        v = entry.get("validation_at_best_epoch") or {}
        keys = [
            k
            for k in (
                "val_loss",
                "val_efficiency",
                "val_masked_purity",
                "val_auc",
                "val_masked_auc",
                "val_eff_at_mp90",
                "val_eff_at_mp95",
            )
            if k in v
        ]
        if keys:
            lines.append(
                "- validation at the best epoch: " + ", ".join(f"{k[4:]} {_fmt(v[k])}" for k in keys)
            )
        lines.append("")
    lines += [
        f"## Test ({t['events']} held-out events)",
        "",
        "| matching | efficiency | fake rate | duplicate rate | target particles | tracks |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for style in ("ATLAS", "two_way"):
        r = t[style]
        lines.append(
            f"| {style} | {_fmt(r['efficiency'])} | {_fmt(r['fake_rate'])} | {_fmt(r['duplicate_rate'])} "
            f"| {r['target_particles']} | {r['tracks']} |"
        )
    if t.get("truth_cc_bound"):
        lines += ["", "Truth-CC bound (efficiency of truth-labelled connected components): "
                  + ", ".join(f"{k} {_fmt(v)}" for k, v in t["truth_cc_bound"].items())]  # fmt: skip
    if t.get("edges"):
        lines += [
            "",
            "| edge stage | edges/event | target-edge efficiency | masked purity |",
            "| --- | --- | --- | --- |",
        ]
        for stage, e in t["edges"].items():
            lines.append(
                f"| {stage} | {_fmt(e.get('edges_per_event'), 0)} | {_fmt(e.get('efficiency'))} | {_fmt(e.get('masked_purity'))} |"
            )
    if card.get("check"):
        c = card["check"]
        lines += [
            "",
            "## Check event (`check.h5`)",
            "",
            f"The shipped test reruns the chain on it and compares with these numbers "
            f"(tolerance {c['tolerance']}): " + ", ".join(f"{k} {_fmt(v)}" for k, v in c["metrics"].items()),
        ]
    lines += ["", "## Files", "", "| file | bytes | SHA-256 |", "| --- | --- | --- |"]
    for name, f in card["files"].items():
        lines.append(f"| {name} | {f['bytes']} | `{f['sha256']}` |")
    return "\n".join(lines) + "\n"
