"""Physics evaluation: track matching, efficiency / fake / duplicate rates, edge metrics, plots."""

from .config import MATCHING_STYLES, EvaluationConfig
from .matching import apply_style, event_rates, match_pairs
from .run import run_evaluate

__all__ = ["MATCHING_STYLES", "EvaluationConfig", "apply_style", "event_rates", "match_pairs", "run_evaluate"]
