"""Print the digests of everything the toy pipeline writes: cache keys, payload bytes, trained weights.

A redesign that must not change behaviour runs this before and after and diffs the output:
    python tests/output_digests.py WORKDIR > digests.txt
Manifests and run logs hold wall times and host names, so they are left out; a
.safetensors file is hashed by its tensors and sorted metadata (its header's order varies).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

STEPS = ["make-toy --out toy --videos 24 --seed 0",
         "extract --dataset toy --root toy --profile tiny --cache cache --workers 0",
         "embed-targets --dataset toy --root toy --profile tiny --cache cache --langs deu,eng,fra",
         "train --dataset toy --root toy --profile tiny --cache cache --langs deu,eng,fra --out run "
         "--set train.steps=40 --set train.eval_every=0"]
SKIP = {"manifest.json", "metrics.jsonl", "run.json", "train.log"}


def sha256(path: Path) -> str:
    if path.suffix == ".safetensors":  # the header's metadata order varies run to run: hash the content
        from safetensors import safe_open

        h = hashlib.sha256()
        with safe_open(str(path), "pt") as f:
            h.update(json.dumps(f.metadata(), sort_keys=True).encode())
            for name in sorted(f.keys()):
                h.update(name.encode() + f.get_tensor(name).numpy().tobytes())
        return h.hexdigest()[:16]
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def main(work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("slt-pipe")
    for step in STEPS:
        subprocess.run([str(exe), *step.split()], cwd=work, check=True, env={**os.environ, "NO_COLOR": "1"},
                       stdout=subprocess.DEVNULL)
    for top in ("cache", "run"):
        for path in sorted((work / top).rglob("*")):
            if path.is_file() and path.name not in SKIP and "events.out" not in path.name and ".lock" not in path.name:
                print(f"{sha256(path)}  {path.relative_to(work)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
