"""Shared I/O layer: event and graph stores, input readers, atomic writes, input errors."""
