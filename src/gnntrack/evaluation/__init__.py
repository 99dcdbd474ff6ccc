"""Physics evaluation: the evaluate stage (summary, report, plots); the metrics are ``gnntrack.metrics``."""

from .config import MATCHING_STYLES, EvaluationConfig
from .run import run_evaluate

__all__ = ["MATCHING_STYLES", "EvaluationConfig", "run_evaluate"]
