"""One-process inference (graph construction -> filter -> GNN -> track building) and its benchmark."""

from .bench import add_bench_arguments, main, run_bench
from .config import BenchConfig, InferenceConfig
from .pipeline import EventResult, Pipeline, run_infer
from .timing import STAGES, StageTimer

__all__ = [
    "STAGES",
    "BenchConfig",
    "EventResult",
    "InferenceConfig",
    "Pipeline",
    "StageTimer",
    "add_bench_arguments",
    "main",
    "run_bench",
    "run_infer",
]
