"""One exception type for bad input, so every stage reports file, event and field the same way."""

from __future__ import annotations


class InputError(Exception):
    """Bad input data: names the file, the event and the field at fault.

    The CLI turns it into a one-line message and a non-zero exit status.
    """

    def __init__(self, message: str, *, file=None, event=None, field: str | None = None):
        self.file = None if file is None else str(file)
        self.event = event
        self.field = field
        self.reason = message
        where = []
        if self.file is not None:
            where.append(f"file {self.file}")
        if event is not None:
            where.append(f"event {event}")
        if field is not None:
            where.append(f"field {field!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
