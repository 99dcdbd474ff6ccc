"""``gnntrack bench``: per-stage inference timing of cumulative optimisations, ATLAS-table style.

Each variant is the previous one plus one change (the GNN4ITk ACAT 2024 table; docs/performance.md):

1. ``baseline``            brute-force neighbour search, scipy connected components, fp32 eager,
                           module map applied on the CPU
2. ``faiss``               Faiss exact range search
3. ``grid``                FRNN-style fixed-radius grid search
4. ``cc``                  cuGraph (GPU; torch FastSV when RAPIDS is absent) / scipy (CPU)
5. ``precision``           GPU: bf16 (or fp16) autocast; CPU: the fastest of bf16 autocast,
                           TorchScript, ONNX Runtime and torch.compile, *measured* on the events
                           and accepted only if its edge decisions agree with fp32
6. ``module_map_device``   module map applied on the pipeline device

All variants run in one process on the same events with the same models, so the columns are
comparable; each reports mean ± std seconds per event per stage, peak host RSS and device
memory, edges after each stage and the track efficiency (flagged when it drops by more than
0.2 points against the baseline).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import logging
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..campaign import load_campaign, merge_campaigns, resolve_campaign
from ..config import ConfigError, to_dict
from ..device import resolve_device
from ..io.atomic import atomic_output
from ..io.errors import InputError
from ..io.event_store import event_keys, read_event
from .allocator import hold_freed_memory
from .config import VARIANTS, BenchConfig, InferenceConfig, as_bench_config, as_inference_config
from .pipeline import Pipeline
from .report import compare_to_baseline, format_table, plot_bars, summarise_variant, write_json
from .timing import PeakMemory, StageTimer

log = logging.getLogger(__name__)

LEARNED_STAGES = ("embedding", "filtering", "gnn")


# --------------------------------------------------------------------------- variants
def _replace(cfg: InferenceConfig, **changes) -> InferenceConfig:
    tb = changes.pop("cc_backend", None)
    if tb is not None:
        changes["track_building"] = dataclasses.replace(cfg.track_building, backend=tb)
    return dataclasses.replace(cfg, **changes)


def cc_backend_for(device: torch.device) -> str:
    """cuGraph on a GPU when importable, else the torch-native FastSV; scipy on the CPU."""
    from ..track_building.components import cugraph_available

    if device.type == "cuda":
        return "cugraph" if cugraph_available() else "torch"
    return "scipy"


def gpu_amp_dtype() -> str:
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp16"


def variant_chain(
    base: InferenceConfig,
    device: torch.device,
    cpu_runtime: str | None = None,
    method: str = "metric_learning",
) -> list[dict]:
    """The cumulative variants: name, column label, full InferenceConfig, and ``skip`` (a reason)
    for a variant that does not apply here (its change is then not made)."""
    from ..graph_construction.neighbours import HAS_FAISS

    on_gpu = device.type == "cuda"
    ml = method == "metric_learning"
    cfg = _replace(
        base,
        neighbour_backend="brute",
        cc_backend="scipy",
        amp="none",
        runtime="eager",
        module_map_on_device=False,
    )
    out = [{"name": "baseline", "label": "Baseline", "cfg": cfg, "skip": None}]
    skip = None if ml else "no neighbour search with a module map"
    if skip is None and not HAS_FAISS:
        skip = "faiss is not importable"
    cfg = cfg if skip else _replace(cfg, neighbour_backend="faiss")
    out.append({"name": "faiss", "label": "+ Faiss", "cfg": cfg, "skip": skip})
    skip = None if ml else "no neighbour search with a module map"
    cfg = cfg if skip else _replace(cfg, neighbour_backend="grid")
    out.append({"name": "grid", "label": "+ grid (FRNN)", "cfg": cfg, "skip": skip})
    skip = (
        "no neighbour search with a module map"
        if not ml
        else "the k-d tree runs on the CPU"
        if on_gpu
        else None
    )
    cfg = cfg if skip else _replace(cfg, neighbour_backend="kdtree")
    out.append({"name": "kdtree", "label": "+ k-d tree", "cfg": cfg, "skip": skip})
    cc = cc_backend_for(device)
    cfg = _replace(cfg, cc_backend=cc)
    label = {"cugraph": "+ cuGraph", "torch": "+ torch CC"}.get(cc, "+ scipy CC")
    out.append({"name": "cc", "label": label, "cfg": cfg, "skip": None})
    if on_gpu:
        amp = gpu_amp_dtype()
        cfg = _replace(cfg, amp=amp)
        label = f"+ AMP {amp}"
    else:
        choice = cpu_runtime or "eager"
        cfg = _replace(cfg, **_cpu_runtime_settings(choice))
        label = RUNTIME_LABELS[choice]
    out.append({"name": "precision", "label": label, "cfg": cfg, "skip": None})
    skip = None if not ml else "no module map with metric learning"
    cfg = cfg if skip else _replace(cfg, module_map_on_device=True)
    label = "+ map on GPU" if on_gpu else "+ map on device"
    out.append({"name": "module_map_device", "label": label, "cfg": cfg, "skip": skip})
    assert [v["name"] for v in out] == list(VARIANTS)
    return out


RUNTIME_LABELS = {
    "eager": "+ fp32 eager",
    "bf16": "+ AMP bf16",
    "torchscript": "+ TorchScript",
    "onnx": "+ ONNX Runtime",
    "compile": "+ torch.compile",
}


def _cpu_runtime_settings(candidate: str) -> dict:
    if candidate == "bf16":
        return {"amp": "bf16", "runtime": "eager"}
    return {"amp": "none", "runtime": candidate}


# --------------------------------------------------------------------------- event access
class EventSource:
    """The first ``n`` events over the given shards; truth kept in memory for the efficiency row.

    ``columns``: the hit columns to read per event (None: all), as the pipeline reads them."""

    def __init__(self, files: Sequence[str | Path], n: int, columns: Sequence[str] | None = None):
        self.columns = {"hits": list(columns)} if columns is not None else None
        self.items: list[tuple[Path, str]] = []
        for f in files:
            for key in event_keys(f):
                if len(self.items) >= n:
                    break
                self.items.append((Path(f), key))
        if not self.items:
            raise InputError("no events in the benchmark input files", file=files[0] if files else None)
        self._truth: dict[str, tuple] = {}

    def read_hits(self, i: int):
        path, key = self.items[i]
        return read_event(path, key, tables=("hits",), columns=self.columns, truth=False)

    def truth(self, i: int):
        path, key = self.items[i]
        if key not in self._truth:
            ev = read_event(path, key, tables=("particles",))
            target = np.asarray(ev.particles.get("is_target", np.zeros(0, bool)), dtype=bool)
            self._truth[key] = (ev.hit_particle, len(target), target)
        return self._truth[key]

    def __len__(self) -> int:
        return len(self.items)


def _timed_event(pipe: Pipeline, source: EventSource, i: int):
    """One event through the pipeline with the data-loading stage including the file read."""
    timer = StageTimer(pipe.device)
    with PeakMemory(pipe.device) as mem:
        with timer.stage("data_loading"):
            event = source.read_hits(i)
            pipe.check_hits(event.hits, source.items[i][0], event.key)
            ev = pipe.load(event.hits, event.key, event.run_number, event.event_number)
        res = pipe.run_tensors(ev, timer)
    return res, mem


# --------------------------------------------------------------------------- CPU runtime choice
def _decision_flips(
    ref: torch.Tensor, other: torch.Tensor, cut: float, inclusive: bool
) -> tuple[float, float]:
    if ref.numel() == 0:
        return 0.0, 0.0
    passes = (lambda s: s >= cut) if inclusive else (lambda s: s > cut)
    flips = float((passes(ref) != passes(other)).float().mean())
    return flips, float((ref - other).abs().max())


def choose_cpu_runtime(
    models: dict, base: InferenceConfig, source: EventSource, cfg: BenchConfig, device
) -> dict:
    """Measure every CPU runtime candidate on real events; pick the fastest accurate one.

    Speed: least seconds per event of the learned stages (embedding + filtering + GNN) after one
    warm-up event (tracing / compilation excluded). Accuracy: on the fp32 graph of each probe
    event, the fraction of filter and GNN edge decisions (score > cut) that differ from fp32
    eager must not exceed ``cfg.max_decision_flips``.
    """
    chain = variant_chain(base, device, method=ref_method(models))
    before = chain[VARIANTS.index("precision") - 1]["cfg"]
    ref = Pipeline(before, device=device, **models)
    n_probe = min(cfg.runtime_probe_events, len(source))
    seconds, accuracy, errors = {}, {}, {}
    for cand in cfg.cpu_runtimes:
        try:
            pipe = Pipeline(_replace(before, **_cpu_runtime_settings(cand)), device=device, **models)
            # warm-up: tracing, export, compilation; TorchScript's profiling executor needs two calls
            for i in range(max(cfg.warmup, 2 if cand == "torchscript" else 1)):
                _timed_event(pipe, source, i % len(source))
            times, flips, maxdiff = [], 0.0, 0.0
            for i in range(n_probe):
                res, _ = _timed_event(pipe, source, i)
                times.append(sum(res.timing.get(s, 0.0) for s in LEARNED_STAGES))
                f, d = _compare_scores(ref, pipe, source, i)
                flips, maxdiff = max(flips, f), max(maxdiff, d)
            seconds[cand] = float(np.min(times))  # least disturbed by other load on the machine
            accuracy[cand] = {"decision_flips": flips, "max_abs_score_diff": maxdiff}
            log.info("runtime %s: %.3f s/event learned stages, flips %.2e", cand, seconds[cand], flips)
        except Exception as exc:  # a runtime that cannot run this model is reported, not fatal
            errors[cand] = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("runtime candidate %s failed: %s", cand, errors[cand])
    valid = {c: s for c, s in seconds.items() if accuracy[c]["decision_flips"] <= cfg.max_decision_flips}
    chosen = min(valid, key=valid.get) if valid else "eager"
    return {"seconds": seconds, "accuracy": accuracy, "errors": errors, "chosen": chosen}


def ref_method(models: dict) -> str:
    return "module_map" if models.get("module_map") is not None else "metric_learning"


def _compare_scores(ref: Pipeline, pipe: Pipeline, source: EventSource, i: int) -> tuple[float, float]:
    event = source.read_hits(i)
    ev = ref.load(event.hits, event.key)
    timer = StageTimer(ref.device)
    flips, maxdiff = 0.0, 0.0
    with torch.inference_mode():
        edges = ref.build_graph(ev, timer)
        edges = edges[:, : ref.cfg.filter_chunk]
        if ref.filter_model is not None:
            x = ref._x(ev, ref.filter_model)
            a = torch.sigmoid(ref._runners["filter"](x, edges))
            b = torch.sigmoid(pipe._runners["filter"](x, edges))
            f, d = _decision_flips(a, b, ref.cfg.filter_cut, inclusive=True)
            flips, maxdiff = max(flips, f), max(maxdiff, d)
            edges = edges[:, a >= ref.cfg.filter_cut]
        x = ref._x(ev, ref.gnn_model)
        a = torch.sigmoid(ref._runners["gnn"](x, edges))
        b = torch.sigmoid(pipe._runners["gnn"](x, edges))
        f, d = _decision_flips(a, b, ref.cfg.track_building.score_cut, inclusive=False)
    return max(flips, f), max(maxdiff, d)


# --------------------------------------------------------------------------- the benchmark
def _machine(device: torch.device) -> dict:
    from ..device import cpu_name

    cpu = cpu_name()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "device": str(device),
        "device_name": gpu or f"CPU {cpu} ({torch.get_num_threads()} threads)",
        "cpu": cpu,
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _matching():
    """The track-matching functions (``gnntrack.metrics.tracks``), or None where they cannot be
    imported: the timing table is then made without the efficiency row instead of failing."""
    try:
        from ..metrics import tracks as matching
    except ImportError as exc:
        log.warning("track efficiency not computed: %s", exc)
        return None
    return matching


def run_variant(pipe: Pipeline, source: EventSource, cfg: BenchConfig) -> tuple[list[dict], object, list]:
    """Warm up, then time every event; returns per-event records, summed matching rates, tracks."""
    for i in range(min(cfg.warmup, len(source))):
        _timed_event(pipe, source, i)
    m = _matching()
    records, rates, tracks = [], (m.Rates() if m else None), []
    for i in range(len(source)):
        res, mem = _timed_event(pipe, source, i)
        t = res.tracks.numpy()
        if m is not None:
            hit_particle, n_particles, target = source.truth(i)
            t = m.filter_tracks(t, cfg.min_track_hits)
            match = m.apply_style(m.match_pairs(t, hit_particle, res.n_hits, n_particles), cfg.matching, 0.5)
            rates.add(m.event_rates(match, target))
        tracks.append(t)
        records.append(
            {
                "key": res.key,
                "n_hits": res.n_hits,
                "timing": res.timing,
                "edges": res.n_edges,
                "n_tracks": len(res.tracks),
                "peak_host_rss_bytes": mem.host,
                "peak_device_bytes": mem.device_bytes,
            }
        )
    return records, rates, tracks


def run_bench(
    event_files: Sequence[str | Path] | str | Path,
    output: str | Path,
    cfg: BenchConfig | dict | None = None,
    inference_cfg: InferenceConfig | dict | None = None,
    module_map=None,
    embedding=None,
    filter_model=None,
    gnn_model=None,
    device: str | torch.device = "auto",
    hgnn_model=None,
    own_process: bool = False,
) -> dict:
    """Run the benchmark and write ``output/bench.json``, ``bench.md`` (the table), ``bench.png``.

    ``inference_cfg`` holds the physics settings (cuts, radius, track building); each variant
    overrides only the performance settings. Returns the JSON content. ``own_process``: the caller
    is a process that runs this benchmark and exits (``gnntrack bench``, the workflow's bench
    rule), so the process-wide ``inference.hold_memory`` applies, as ``gnntrack infer`` applies it
    (``run_infer``): every variant is then timed under the allocator the production chain runs
    with (``hold_memory`` in the JSON and the table's notes).
    """
    cfg = as_bench_config(cfg)
    base = as_inference_config(inference_cfg)
    held = hold_freed_memory() if own_process and base.hold_memory else False
    if isinstance(event_files, (str, Path)):
        event_files = [event_files]
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    dev = resolve_device(device)
    proto = Pipeline.from_files(base, module_map, embedding, filter_model, gnn_model, dev, hgnn_model)
    models = {
        "module_map": proto.module_map if proto.method == "module_map" else None,
        "embedding": proto.embedding,
        "filter_model": proto.filter_model,
        "gnn_model": proto.gnn_model,
        "hgnn_model": proto.hgnn_model,
    }
    source = EventSource(event_files, cfg.n_events, proto.required_hit_columns())
    runtime_choice = None
    if dev.type != "cuda" and "precision" in cfg.variants:
        runtime_choice = choose_cpu_runtime(models, base, source, cfg, dev)
    chain = variant_chain(base, dev, runtime_choice["chosen"] if runtime_choice else None, proto.method)
    variants, skipped, failed = [], {}, {}
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)

    def result() -> dict:
        return {
            "machine": _machine(dev),
            "graph_method": proto.method,
            "n_events": len(source),
            "mean_hits": float(np.mean([r["n_hits"] for r in variants[0]["events"]])) if variants else 0.0,
            "event_files": [str(f) for f in event_files],
            "bench_config": to_dict(cfg),
            "inference_config": to_dict(base),
            "hold_memory": held,
            "runtime_choice": runtime_choice,
            "skipped_variants": skipped,
            "failed_variants": failed,
            "variants": variants,
        }

    def write(res: dict) -> None:
        write_json(res, out / "bench.json")
        with atomic_output(out / "bench.md") as tmp:
            tmp.write_text(format_table(res))

    for v in chain:
        if v["name"] not in cfg.variants:
            continue
        if v["skip"]:
            skipped[v["name"]] = v["skip"]
            continue
        log.info("bench variant %s", v["name"])
        try:
            pipe = Pipeline(v["cfg"], device=dev, **models)
            records, rates, _ = run_variant(pipe, source, cfg)
        except Exception as exc:  # one broken variant (e.g. a backend bug) must not lose the others
            log.exception("bench variant %s failed", v["name"])
            failed[v["name"]] = f"{type(exc).__name__}: {exc}"
            continue
        vcfg = v["cfg"]
        variants.append(
            {
                "name": v["name"],
                "label": v["label"],
                "settings": {
                    "neighbour_backend": vcfg.neighbour_backend
                    if proto.method == "metric_learning"
                    else None,
                    "cc_backend": vcfg.track_building.backend,
                    "amp": vcfg.amp,
                    "runtime": vcfg.runtime,
                    "module_map_on_device": vcfg.module_map_on_device,
                },
                "summary": summarise_variant(records),
                "efficiency": rates.efficiency if rates is not None else None,
                "rates": dataclasses.asdict(rates) if rates is not None else None,
                "events": records,
            }
        )
        compare_to_baseline(variants)
        write(result())  # after every variant: a run stopped by a time limit keeps its columns
    res = result()
    if not variants:
        write_json(res, out / "bench.json")
        raise RuntimeError(f"no benchmark variant ran: failed {failed or '-'}, skipped {skipped or '-'}")
    write(res)
    if cfg.plot and variants:
        plot_bars(res, out / "bench.png")
    return res


# --------------------------------------------------------------------------- command line
def add_bench_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``gnntrack bench`` arguments (also used by ``python -m gnntrack.inference.bench``)."""
    parser.add_argument("events", nargs="+", type=Path, help="events HDF5 shards (held-out events)")
    g = parser.add_mutually_exclusive_group(required=True)
    g.add_argument("--module-map", type=Path, help="module map file (graph construction by module map)")
    g.add_argument(
        "--embedding", type=Path, help="metric-learning model (graph construction by radius search)"
    )
    parser.add_argument("--filter-model", type=Path, help="edge filter model (optional)")
    parser.add_argument("--gnn-model", type=Path, required=True)
    parser.add_argument("--hgnn-model", type=Path, help="HGNN track builder (track_building.method=hgnn)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder (bench.json/md/png)")
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        action="append",
        help="campaign YAML: its 'bench' and 'inference' sections (inference's graph-construction "
        "settings left null from 'graph_construction'); repeat to merge files in order",
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda[:N]")
    parser.add_argument("--n-events", type=int, help="events to time per variant")
    parser.add_argument("--warmup", type=int, help="untimed warm-up events per variant")
    parser.add_argument("--variants", help=f"comma-separated subset of {','.join(VARIANTS)}")
    parser.add_argument("--cpu-runtimes", help="comma-separated CPU runtime candidates")
    parser.add_argument("--threads", type=int, help="torch intra-op threads")
    parser.add_argument("--no-plot", action="store_true", help="skip the bar plot")
    return parser


def _bench_settings_from_args(args) -> dict:
    """The ``bench`` settings given as options (they win over the campaign's ``bench`` section)."""
    data = {}
    if args.n_events is not None:
        data["n_events"] = args.n_events
    if args.warmup is not None:
        data["warmup"] = args.warmup
    if args.variants:
        data["variants"] = [v.strip() for v in args.variants.split(",") if v.strip()]
    if args.cpu_runtimes:
        data["cpu_runtimes"] = [v.strip() for v in args.cpu_runtimes.split(",") if v.strip()]
    if args.threads is not None:
        data["threads"] = args.threads
    if args.no_plot:
        data["plot"] = False
    return data


def configs_from_args(args) -> tuple[BenchConfig, InferenceConfig]:
    """The ``bench`` and ``inference`` configs of the command line: the campaign files (``-c``,
    merged in order) with the options over its ``bench`` section, resolved as the workflow's
    bench rule resolves them (``gnntrack.campaign``)."""
    campaign = merge_campaigns(load_campaign(args.config), {"bench": _bench_settings_from_args(args)})
    resolved = resolve_campaign(campaign, sections=("bench", "inference"))
    return resolved["bench"], resolved["inference"]


def main(argv: list[str] | None = None) -> int:
    parser = add_bench_arguments(
        argparse.ArgumentParser(prog="gnntrack bench", description=__doc__.splitlines()[0])
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    try:
        bench_cfg, inf_cfg = configs_from_args(args)
        result = run_bench(
            args.events,
            args.output,
            bench_cfg,
            inf_cfg,
            module_map=args.module_map,
            embedding=args.embedding,
            filter_model=args.filter_model,
            gnn_model=args.gnn_model,
            device=args.device,
            hgnn_model=args.hgnn_model,
            own_process=True,
        )
    except (InputError, ConfigError, FileNotFoundError) as exc:
        print(f"gnntrack bench: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
