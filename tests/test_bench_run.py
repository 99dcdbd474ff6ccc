"""``gnntrack bench``: variants, table/JSON/plot output, baseline comparison, command line."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from synthetic import make_event

from gnntrack.config import ConfigError, from_dict
from gnntrack.graph_construction import build_module_map
from gnntrack.inference import BenchConfig, InferenceConfig, main, run_bench
from gnntrack.inference.bench import variant_chain
from gnntrack.inference.report import compare_to_baseline, format_table
from gnntrack.inference.timing import STAGES
from gnntrack.io.event_store import write_events
from gnntrack.models import FilterModel, InteractionGNN, save_model
from gnntrack.models.embedding import EmbeddingMLP


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    write_events(
        d / "events.h5", [make_event(n_particles=50, seed=200 + s, event_number=s) for s in range(2)]
    )
    build_module_map([make_event(n_particles=50, seed=s) for s in range(4)]).write(d / "map.h5")
    torch.manual_seed(1)
    save_model(EmbeddingMLP(hidden=32, n_layers=2, r_max=0.4, k_max=12), d / "emb.pt")
    save_model(FilterModel(hidden=32, n_layers=2), d / "filter.pt")
    save_model(InteractionGNN(hidden=16, n_graph_iters=2), d / "gnn.pt")
    return d


def test_run_bench_metric_learning_writes_table_json_plot(files, tmp_path):
    cfg = {"n_events": 2, "warmup": 0, "cpu_runtimes": ["eager", "torchscript"], "runtime_probe_events": 1}
    res = run_bench(
        files / "events.h5",
        tmp_path / "out",
        cfg,
        {"track_building": {"score_cut": 0.4, "min_hits": 2}},
        embedding=files / "emb.pt",
        filter_model=files / "filter.pt",
        gnn_model=files / "gnn.pt",
        device="cpu",
    )
    names = [v["name"] for v in res["variants"]]
    assert names == ["baseline", "faiss", "grid", "kdtree", "cc", "precision"]
    assert "module_map_device" in res["skipped_variants"]
    assert res["runtime_choice"]["chosen"] in ("eager", "torchscript")
    assert set(res["runtime_choice"]["seconds"]) == {"eager", "torchscript"}
    base = res["variants"][0]
    for v in res["variants"]:
        s = v["summary"]
        assert s["n_events"] == 2
        assert s["stages"]["total"]["mean"] > 0
        assert s["stages"]["embedding"]["mean"] > 0
        assert s["peak_host_rss_bytes"] > 0
        # fp32 variants are bit-identical: same graphs, same tracks, same efficiency
        assert s["edges"] == base["summary"]["edges"]
        assert v["efficiency"] == base["efficiency"]
        assert v["efficiency_flag"] is False
    assert base["settings"]["neighbour_backend"] == "brute"
    assert res["variants"][2]["settings"]["neighbour_backend"] == "grid"
    out = tmp_path / "out"
    on_disk = json.loads((out / "bench.json").read_text())
    assert on_disk["variants"][1]["label"] == "+ Faiss"
    table = (out / "bench.md").read_text()
    for row in ("Data loading", "Embedding", "Build edges", "Filtering", "GNN", "Labelling", "**Total**",
                "Peak host RSS", "Edges after filter", "Track efficiency"):  # fmt: skip
        assert f"| {row} |" in table
    assert " ± " in table
    assert (out / "bench.png").stat().st_size > 1000


def test_module_map_bench_skips_neighbour_variants(files, tmp_path):
    res = run_bench(
        [files / "events.h5"],
        tmp_path / "mm",
        {
            "n_events": 1,
            "warmup": 0,
            "variants": ["baseline", "faiss", "cc", "module_map_device"],
            "plot": False,
        },
        {},
        module_map=files / "map.h5",
        gnn_model=files / "gnn.pt",
        device="cpu",
    )
    assert [v["name"] for v in res["variants"]] == ["baseline", "cc", "module_map_device"]
    assert res["skipped_variants"] == {"faiss": "no neighbour search with a module map"}
    assert res["variants"][0]["summary"]["stages"]["embedding"]["mean"] == 0.0
    assert res["variants"][-1]["settings"]["module_map_on_device"] is True
    assert not (tmp_path / "mm" / "bench.png").exists()


def test_failing_variant_is_reported_and_the_others_kept(files, tmp_path, monkeypatch):
    import gnntrack.inference.bench as bench

    real = bench.run_variant

    def flaky(pipe, source, cfg):
        if pipe.cfg.track_building.backend != "scipy" or pipe.cfg.module_map_on_device:
            raise RuntimeError("backend exploded")
        return real(pipe, source, cfg)

    monkeypatch.setattr(bench, "run_variant", flaky)
    kw = dict(module_map=files / "map.h5", gnn_model=files / "gnn.pt", device="cpu")
    cfg = {"n_events": 1, "warmup": 0, "variants": ["baseline", "module_map_device"], "plot": False}
    res = run_bench([files / "events.h5"], tmp_path / "f", cfg, {}, **kw)
    assert [v["name"] for v in res["variants"]] == ["baseline"]
    assert res["failed_variants"] == {"module_map_device": "RuntimeError: backend exploded"}
    assert (
        "Variant module_map_device FAILED: RuntimeError: backend exploded"
        in (tmp_path / "f" / "bench.md").read_text()
    )
    cfg["variants"] = ["module_map_device"]
    with pytest.raises(RuntimeError, match="no benchmark variant ran"):
        run_bench([files / "events.h5"], tmp_path / "g", cfg, {}, **kw)


def test_variant_chain_is_cumulative_on_cpu():
    chain = variant_chain(InferenceConfig(), torch.device("cpu"), cpu_runtime="onnx")
    cfgs = {v["name"]: v["cfg"] for v in chain}
    assert (
        cfgs["baseline"].neighbour_backend == "brute" and cfgs["baseline"].track_building.backend == "scipy"
    )
    assert cfgs["grid"].neighbour_backend == "grid"
    assert cfgs["kdtree"].neighbour_backend == "kdtree"
    assert cfgs["precision"].runtime == "onnx" and cfgs["precision"].neighbour_backend == "kdtree"
    assert cfgs["cc"].track_building.backend == "scipy"
    assert not cfgs["baseline"].module_map_on_device


def _fake(label, total, eff):
    stage = {"mean": total, "std": 0.0}
    return {
        "label": label,
        "settings": {},
        "efficiency": eff,
        "summary": {
            "stages": {s: stage for s in (*STAGES, "total")},
            "edges": {k: {"mean": 10.0, "std": 0.0} for k in ("build_edges", "filtering", "gnn")},
            "peak_host_rss_bytes": 2**30,
            "peak_device_bytes": None,
        },
    }


def test_efficiency_drop_is_flagged_beyond_0p2_points():
    variants = [_fake("Baseline", 4.0, 0.9000), _fake("A", 2.0, 0.8985), _fake("B", 1.0, 0.8975)]
    compare_to_baseline(variants)
    assert variants[1]["speedup_vs_baseline"] == pytest.approx(2.0)
    assert variants[1]["efficiency_flag"] is False  # -0.15 points
    assert variants[2]["efficiency_flag"] is True  # -0.25 points
    result = {
        "variants": variants,
        "n_events": 3,
        "mean_hits": 100.0,
        "machine": {"device_name": "CPU test", "date": "today"},
    }
    table = format_table(result)
    assert "89.75 % (-0.25) ⚠" in table and "×4.00" in table


def test_bench_config_validation():
    with pytest.raises(ConfigError):
        from_dict(BenchConfig, {"variants": ["baseline", "warp_drive"]})
    with pytest.raises(ConfigError):
        from_dict(BenchConfig, {"cpu_runtimes": ["tensorrt"]})
    with pytest.raises(ConfigError):
        from_dict(BenchConfig, {"n_events": 0})
    assert copy.deepcopy(BenchConfig()).variants[0] == "baseline"


@pytest.fixture
def allocator_calls(monkeypatch):
    """Records calls of ``hold_freed_memory`` from the bench instead of changing the allocator of
    the test process for good."""
    calls = []
    monkeypatch.setattr("gnntrack.inference.bench.hold_freed_memory", lambda: calls.append(1) or True)
    return calls


def test_main_prints_table_and_reports_bad_input(files, tmp_path, capsys, allocator_calls):
    argv = [str(files / "events.h5"), "--module-map", str(files / "map.h5"), "--gnn-model", str(files / "gnn.pt"),
            "-o", str(tmp_path / "cli"), "--device", "cpu", "--n-events", "1", "--warmup", "0",
            "--variants", "baseline,cc", "--no-plot"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| Stage (s/event) | Baseline | + scipy CC |" in out
    # the command runs in its own process: timed under the allocator gnntrack infer runs with
    assert allocator_calls == [1]
    assert json.loads((tmp_path / "cli" / "bench.json").read_text())["hold_memory"] is True
    assert "freed memory held for the next event" in out
    argv[0] = str(tmp_path / "missing.h5")
    assert main(argv) == 2
    assert "does not exist" in capsys.readouterr().err


def test_run_bench_changes_the_allocator_only_for_its_own_process(files, tmp_path, allocator_calls):
    """A library caller keeps its allocator; a bench process (``own_process``) holds freed memory
    unless ``inference.hold_memory`` is off, and the JSON and table say which."""
    kw = dict(module_map=files / "map.h5", gnn_model=files / "gnn.pt", device="cpu")
    cfg = {"n_events": 1, "warmup": 0, "variants": ["baseline"], "plot": False}
    res = run_bench(files / "events.h5", tmp_path / "lib", cfg, {}, **kw)
    assert allocator_calls == [] and res["hold_memory"] is False
    assert "glibc defaults" in format_table(res)
    res = run_bench(
        files / "events.h5", tmp_path / "off", cfg, {"hold_memory": False}, own_process=True, **kw
    )
    assert allocator_calls == [] and res["hold_memory"] is False
    res = run_bench(files / "events.h5", tmp_path / "own", cfg, {}, own_process=True, **kw)
    assert allocator_calls == [1] and res["hold_memory"] is True
    assert json.loads((tmp_path / "own" / "bench.json").read_text())["hold_memory"] is True
