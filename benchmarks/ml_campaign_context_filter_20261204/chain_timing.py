"""Mean stage times of a tracks file written by ``gnntrack infer`` (its ``timing`` group), as JSON.

python chain_timing.py TRACKS.h5 OUT.json LABEL
"""

from __future__ import annotations

import json
import sys

import h5py
import numpy as np


def main() -> None:
    path, out, label = sys.argv[1:4]
    per: dict[str, list[float]] = {}
    with h5py.File(path, "r") as f:
        keys = list(f["timing"])
        for key in keys:
            for stage, v in f["timing"][key].attrs.items():
                if isinstance(v, (float, np.floating)):
                    per.setdefault(stage, []).append(float(v))
    mean = {k: round(float(np.mean(v)), 4) for k, v in per.items()}
    with open(out, "w") as fh:
        json.dump({"label": label, "events": len(keys), "mean_s": mean, "per_event": per}, fh, indent=1)
    print(label, json.dumps(mean))


if __name__ == "__main__":
    main()
