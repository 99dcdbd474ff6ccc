"""Mean stage times of a tracks file written by ``gnntrack infer`` (``read_timing``), as JSON.

python chain_timing.py TRACKS.h5 OUT.json LABEL
"""

from __future__ import annotations

import json
import sys

import numpy as np

from gnntrack.io.track_store import read_timing


def main() -> None:
    path, out, label = sys.argv[1:4]
    timing = read_timing(path)
    per: dict[str, list[float]] = {}
    for stages in timing.values():
        for stage, seconds in stages.items():
            per.setdefault(stage, []).append(float(seconds))
    mean = {k: round(float(np.mean(v)), 4) for k, v in per.items()}
    with open(out, "w") as fh:
        json.dump({"label": label, "events": len(timing), "mean_s": mean, "per_event": per}, fh, indent=1)
    print(label, json.dumps(mean))


if __name__ == "__main__":
    main()
