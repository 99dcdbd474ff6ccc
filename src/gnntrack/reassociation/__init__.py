"""Cluster re-association: track candidates (spacepoints) -> ordered cluster lists for Athena."""

from .reassociate import ReassociationConfig, reassociate_event, run_reassociate

__all__ = ["ReassociationConfig", "reassociate_event", "run_reassociate"]
