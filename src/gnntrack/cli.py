"""``gnntrack``: every pipeline stage as a command, for users who don't run Snakemake.

Each subcommand makes the same library call as the workflow rule of the same name. Stage
settings come from a campaign YAML file (``--config``; repeated, the files are merged in order as
``snakemake --configfile`` merges them) and ``--set key=value`` overrides of the command's own
section; without either the stage defaults apply. The stage's config is resolved from the
campaign by ``gnntrack.campaign.resolve_campaign``, the function the workflow's rules take their
params from, so ``-c config/config.yaml -c config/itk_mu200.yaml`` runs a stage as
``snakemake --configfile config/itk_mu200.yaml`` does. The campaign is checked whole at start-up
(``check_campaign``), so a campaign the workflow refuses is refused here too, before anything
runs. Bad input or config ends with a one-line message on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

from gnntrack.campaign import (
    STAGE_CLASSES,
    WORKFLOW_KEYS,
    check_campaign,
    load_campaign,
    resolve_campaign,
    stage_class,
)
from gnntrack.config import ConfigError
from gnntrack.io.errors import InputError
from gnntrack.io.pyg import MissingDependencyError

__all__ = [
    "STAGE_CLASSES",
    "WORKFLOW_KEYS",
    "build_parser",
    "check_campaign",
    "main",
    "stage_class",
    "stage_config",
]

EXIT_BAD_INPUT = 2


def stage_config(section: str, campaign: dict | None = None, overrides: list[str] | None = None):
    """The stage dataclass of ``section`` from a campaign mapping plus ``key=value`` overrides.

    ``gnntrack.campaign.resolve_campaign`` for one section: the config the workflow's rule of
    the same stage gets from the same campaign (e.g. inference's graph-construction settings).
    """
    return resolve_campaign(campaign, {section: overrides or []}, sections=[section])[section]


# --------------------------------------------------------------------------- subcommands
def _cfg(args, section):
    return stage_config(section, load_campaign(args.config), args.set)


def _track_building(args):
    """The campaign's ``inference.track_building`` (``--set`` applies to the command's own section)."""
    return stage_config("inference", load_campaign(args.config)).track_building


def cmd_simulate(args):
    from gnntrack.simulation import run_simulate

    run_simulate(args.output, _cfg(args, "simulation"), shard=args.shard)


def cmd_convert(args):
    from gnntrack.conversion.convert import run_convert

    run_convert(list(args.inputs), args.output, _cfg(args, "convert"))


def cmd_build_module_map(args):
    from gnntrack.graph_construction import run_build_module_map

    run_build_module_map(list(args.events), args.output, _cfg(args, "module_map"))


def cmd_train_metric_learning(args):
    from gnntrack.graph_construction import run_train_metric_learning

    run_train_metric_learning(
        args.train, args.val, args.output, _cfg(args, "metric_learning"), device=args.device
    )


def cmd_build_graphs(args):
    from gnntrack.graph_construction import run_build_graphs

    cfg = _cfg(args, "graph_construction")
    run_build_graphs(args.events, args.output, cfg, args.module_map, args.embedding, device=args.device)


def cmd_train_filter(args):
    from gnntrack.edge_filter import run_train_filter

    run_train_filter(
        args.train_events,
        args.train_graphs,
        args.val_events,
        args.val_graphs,
        args.output,
        _cfg(args, "filter"),
        device=args.device,
    )


def cmd_train_gnn(args):
    from gnntrack.gnn import run_train_gnn

    run_train_gnn(
        args.train_events,
        args.train_graphs,
        args.val_events,
        args.val_graphs,
        args.output,
        _cfg(args, "gnn"),
        device=args.device,
        track_building=_track_building(args),
    )


def cmd_train_hgnn(args):
    from gnntrack.track_building.hgnn import run_train_hgnn

    tb = stage_config("inference", load_campaign(args.config), args.set).track_building
    run_train_hgnn(
        args.train_events,
        args.train_graphs,
        args.val_events,
        args.val_graphs,
        args.output,
        tb.hgnn,
        device=args.device,
        min_hits=tb.min_hits,
    )


def cmd_working_point(args):
    from gnntrack.gnn import run_choose_working_point

    run_choose_working_point(
        args.model,
        args.val_events,
        args.val_graphs,
        args.output,
        _cfg(args, "gnn"),
        _track_building(args),
        device=args.device,
    )


def cmd_apply_filter(args):
    from gnntrack.edge_filter import run_apply_filter

    run_apply_filter(
        args.events, args.graphs, args.model, args.output, _cfg(args, "filter"), device=args.device
    )


def cmd_score_gnn(args):
    from gnntrack.edge_classification import run_score_graphs

    run_score_graphs(args.events, args.graphs, args.model, args.output, "gnn", device=args.device)


def cmd_infer(args):
    from gnntrack.campaign import merge_campaigns
    from gnntrack.inference import run_infer
    from gnntrack.reference import Reference

    models = {"module_map": args.module_map, "embedding": args.embedding, "filter": args.filter_model, "gnn": args.gnn_model}  # fmt: skip
    hgnn = args.hgnn_model
    campaign = load_campaign(args.config)
    if args.reference is not None:
        ref = Reference.load(args.reference)
        campaign = merge_campaigns(ref.campaign, campaign)
        check_campaign(campaign)
        models = {k: v if v is not None else ref.path(k) for k, v in models.items()}
    if models["gnn"] is None:
        raise ConfigError("infer: give --gnn-model (or --reference)")
    run_infer(
        args.events,
        args.output,
        stage_config("inference", campaign, args.set),
        module_map=models["module_map"],
        embedding=models["embedding"],
        filter_model=models["filter"],
        gnn_model=models["gnn"],
        device=args.device,
        hgnn_model=hgnn,
        own_process=True,
    )


def cmd_pack_reference(args):
    from gnntrack.reference import pack_reference

    card = pack_reference(
        args.campaign_dir,
        load_campaign(args.config),
        args.output,
        check_events=args.check_events,
        command=args.command_line,
        notes=args.notes,
        device=args.device,
    )
    print(f"{args.output}: {', '.join(card['files'])}")


def cmd_check_reference(args):
    from gnntrack.reference import Reference

    ref = Reference.load(args.reference)
    for k, (card, now) in ref.check(args.device).items():
        print(f"{k}: card {card:.4f}, now {now:.4f}")


def cmd_reassociate(args):
    from gnntrack.reassociation import run_reassociate

    run_reassociate(args.events, args.tracks, args.output, _cfg(args, "reassociation"))


def _stage_files(items: list[str]) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for item in items:
        stage, sep, files = item.partition("=")
        if not sep or not files:
            raise ConfigError(f"--graphs {item!r}: expected STAGE=FILE[,FILE...]")
        out.setdefault(stage, []).extend(Path(f) for f in files.split(","))
    return out


def cmd_evaluate(args):
    from gnntrack.evaluation import run_evaluate

    info = {"name": load_campaign(args.config).get("campaign", "cli")}
    run_evaluate(
        args.events,
        args.tracks,
        _stage_files(args.graphs),
        args.output,
        _cfg(args, "evaluation"),
        campaign=info,
    )


def cmd_export(args):
    from gnntrack.export import run_export

    models = {}
    for item in args.model:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise ConfigError(f"--model {item!r}: expected NAME=PATH")
        models[name] = Path(path)
    checks = run_export(models, args.output, args.sample_events, args.sample_graphs)
    print(yaml.safe_dump(checks, sort_keys=False), end="")


def cmd_export_pyg(args):
    from gnntrack.io.pyg import export_pyg

    paths = export_pyg(
        args.events, args.graphs, args.output,
        scores=args.scores, prefixed=args.prefixed, event_prefix=args.event_prefix,
    )  # fmt: skip
    print(f"wrote {len(paths)} .pyg files to {args.output}")


def cmd_import_pyg(args):
    from gnntrack.io.pyg import import_pyg

    keys = import_pyg(args.inputs, args.events, args.output, stage=args.stage, trust=args.trust_pickle)
    print(f"wrote {len(keys)} graphs to {args.output}")


# --------------------------------------------------------------------------- parser
def _common(p: argparse.ArgumentParser, device: bool = False) -> None:
    p.add_argument(
        "-c",
        "--config",
        type=Path,
        action="append",
        help="campaign YAML (the stage's section is used); repeat to merge files in order, as "
        "snakemake --configfile merges them over config/config.yaml",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a stage setting (YAML value)",
    )
    if device:
        p.add_argument("--device", default="auto", help="torch device: auto (CUDA if present), cpu, cuda[:N]")


def _models(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--module-map", type=Path, help="module map (graph_construction.method=module_map)")
    g.add_argument("--embedding", type=Path, help="metric-learning model (method=metric_learning)")
    g.add_argument(
        "--reference",
        type=Path,
        help="reference model bundle (e.g. models/reference/physics_mu200): its models and its "
        "campaign's settings; -c/--set and explicit model options override them",
    )
    p.add_argument("--filter-model", type=Path, help="edge filter model (when the filter runs)")
    p.add_argument("--gnn-model", type=Path, help="GNN model (required without --reference)")
    p.add_argument(
        "--hgnn-model", type=Path, help="HGNN track builder (inference.track_building.method=hgnn)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gnntrack",
        description="GNN track reconstruction: every pipeline stage as a command, making the same "
        "call as the Snakemake rule of the same name.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, func, help, device=False):
        p = sub.add_parser(name, help=help, description=help)
        _common(p, device)
        p.set_defaults(func=func)
        return p

    p = add("simulate", cmd_simulate, "simulate one shard of events -> GNN4ITk ROOT ntuple")
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("-o", "--output", type=Path, required=True)

    p = add("convert", cmd_convert, "ROOT ntuples or TrackML events -> events HDF5 shard")
    p.add_argument("inputs", nargs="+", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True)

    p = add("build-module-map", cmd_build_module_map, "train events -> module map")
    p.add_argument("events", nargs="+", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True)

    p = add("train-metric-learning", cmd_train_metric_learning, "train the embedding model", device=True)
    p.add_argument("--train", nargs="+", type=Path, required=True)
    p.add_argument("--val", nargs="+", type=Path, required=True)
    p.add_argument("-o", "--output", type=Path, required=True)

    p = add("build-graphs", cmd_build_graphs, "events shard -> graphs (module map or embedding)", device=True)
    p.add_argument("events", type=Path)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--module-map", type=Path)
    g.add_argument("--embedding", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True)

    for name, func, help in (
        ("train-filter", cmd_train_filter, "train the edge filter"),
        ("train-gnn", cmd_train_gnn, "train the GNN edge classifier"),
    ):
        p = add(name, func, help, device=True)
        for opt in ("--train-events", "--train-graphs", "--val-events", "--val-graphs"):
            p.add_argument(opt, nargs="+", type=Path, required=True)
        p.add_argument("-o", "--output", type=Path, required=True)

    p = add(
        "train-hgnn",
        cmd_train_hgnn,
        "train the HGNN track builder (inference.track_building.hgnn) on GNN-scored graphs",
        device=True,
    )
    for opt in ("--train-events", "--train-graphs", "--val-events", "--val-graphs"):
        p.add_argument(opt, nargs="+", type=Path, required=True, help="graphs: GNN-scored (score-gnn)")
    p.add_argument("-o", "--output", type=Path, required=True)

    p = add(
        "working-point",
        cmd_working_point,
        "choose a trained GNN's edge cut on validation events (gnn.working_point, inference.track_building)",
        device=True,
    )
    p.add_argument("--model", type=Path, required=True)
    for opt in ("--val-events", "--val-graphs"):
        p.add_argument(opt, nargs="+", type=Path, required=True)
    p.add_argument("-o", "--output", type=Path, required=True)

    for name, func, help in (
        ("apply-filter", cmd_apply_filter, "keep the edges of a graphs shard above the filter cut"),
        ("score-gnn", cmd_score_gnn, "add GNN edge scores to a graphs shard"),
    ):
        p = add(name, func, help, device=True)
        p.add_argument("events", type=Path)
        p.add_argument("graphs", type=Path)
        p.add_argument("--model", type=Path, required=True)
        p.add_argument("-o", "--output", type=Path, required=True)

    p = add("infer", cmd_infer, "full inference chain on an events shard -> tracks", device=True)
    p.add_argument("events", type=Path)
    _models(p)
    p.add_argument("-o", "--output", type=Path, required=True)

    p = add(
        "pack-reference",
        cmd_pack_reference,
        "a finished campaign's models -> reference bundle with model cards",
        device=True,
    )
    p.add_argument(
        "campaign_dir", type=Path, help="the campaign's results folder, e.g. results/physics_mu200"
    )
    p.add_argument(
        "--check-events", type=Path, help="small events file the card's check numbers are measured on"
    )
    p.add_argument("--command-line", help="the command that ran the campaign (recorded in the card)")
    p.add_argument("--notes", help="free text for the card")
    p.add_argument("-o", "--output", type=Path, required=True, help="bundle folder")

    p = add(
        "check-reference",
        cmd_check_reference,
        "rerun a reference bundle's check event against its card",
        device=True,
    )
    p.add_argument("reference", type=Path)

    p = add("reassociate", cmd_reassociate, "tracks -> ordered clusters and per-event CSVs")
    p.add_argument("events", type=Path)
    p.add_argument("tracks", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")

    p = add("evaluate", cmd_evaluate, "tracks + truth -> summary.json, report.md, plots")
    p.add_argument("--events", nargs="+", type=Path, required=True)
    p.add_argument("--tracks", nargs="+", type=Path, required=True)
    p.add_argument("--graphs", action="append", default=[], metavar="STAGE=FILE[,FILE...]")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")

    p = add("export", cmd_export, "models -> ONNX + TorchScript, checked against PyTorch")
    p.add_argument("--model", action="append", required=True, metavar="NAME=PATH")
    p.add_argument("--sample-events", type=Path, required=True)
    p.add_argument("--sample-graphs", type=Path, required=True)
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")

    p = add(
        "export-pyg",
        cmd_export_pyg,
        "events + graphs shard -> one acorn .pyg file (PyG Data) per event; needs torch_geometric",
    )
    p.add_argument("events", type=Path)
    p.add_argument("graphs", type=Path)
    p.add_argument(
        "--scores",
        metavar="STAGE",
        help="score stage written as acorn's `scores` (default: gnn, else filter, else the only one)",
    )
    p.add_argument(
        "--prefixed", action="store_true", help="acorn's variable_with_prefix names (hit_x, edge_y, ...)"
    )
    p.add_argument("--event-prefix", default="", help="acorn's event_prefix: files <prefix>_event<N>.pyg")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")

    p = add(
        "import-pyg",
        cmd_import_pyg,
        "acorn .pyg files -> graphs shard of an events shard (gnntrack labels); needs torch_geometric",
    )
    p.add_argument("inputs", nargs="+", type=Path, help=".pyg files or folders of them")
    p.add_argument("--events", type=Path, required=True, help="events shard the graphs belong to")
    p.add_argument(
        "--stage", default="acorn", help="stage name of the graphs file; acorn's scores go to scores/<stage>"
    )
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="unpickle fully (acorn's edge-classifier outputs need it); only for trusted files",
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="graphs file to write")

    # `gnntrack bench` is gnntrack.inference.bench's own command line, forwarded as is by main()
    sub.add_parser(
        "bench", help="per-stage inference timing table (see gnntrack bench --help)", add_help=False
    )
    return parser


def _fail(command: str, exc: Exception) -> int:
    message = " ".join(str(exc).split())  # one line, even when a wrapped library error has several
    print(f"gnntrack {command}: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


class _SilentParser(argparse.ArgumentParser):
    """A parser that raises on bad arguments instead of printing usage and exiting."""

    def error(self, message):
        raise argparse.ArgumentError(None, message)


def _bench(argv: list[str]) -> int:
    """``gnntrack bench``: its campaign file checked like every other command's, then run as is."""
    from gnntrack.inference.bench import add_bench_arguments
    from gnntrack.inference.bench import main as bench_main

    parser = add_bench_arguments(_SilentParser(prog="gnntrack bench", add_help=False))
    try:
        known, _ = parser.parse_known_args(argv)
    except argparse.ArgumentError:  # bad arguments: bench's own parser answers
        known = None
    if known is not None and known.config:
        try:
            check_campaign(load_campaign(known.config))
        except ConfigError as exc:
            return _fail("bench", exc)
    return bench_main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        return _bench(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    try:
        if args.config:
            check_campaign(load_campaign(args.config))
        args.func(args)
    except (InputError, ConfigError, FileNotFoundError, MissingDependencyError) as exc:
        return _fail(args.command, exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
