"""Print the digests of everything the toy pipeline writes: cache keys, payload bytes, trained weights.

A redesign that must not change behaviour runs this before and after and diffs the output:
    python tests/output_digests.py WORKDIR [tiny|paper] > digests.txt
(`paper` runs the paper profile's loaders and recipe on the toy's models in the users' formats.)
The commands run as `python -m pipeline.cli` of whichever tree is first on PYTHONPATH.
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

TINY = ["make-toy --out toy --videos 24 --seed 0",
        "extract --dataset toy --root toy --profile tiny --cache cache --workers 0",
        "embed-targets --dataset toy --root toy --profile tiny --cache cache --langs deu,eng,fra",
        "train --dataset toy --root toy --profile tiny --cache cache --langs deu,eng,fra --out run "
        "--set train.steps=40 --set train.eval_every=0"]
PAPER = ["make-toy --out toy --videos 24 --seed 0 --assets assets --cache cache",  # models in the users' formats
         "extract --config assets/rehearsal.toml --cache cache --workers 0",
         "embed-targets --config assets/rehearsal.toml --cache cache --langs deu,eng,fra",
         "train --config assets/rehearsal.toml --cache cache --langs deu,eng,fra --out run "
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


def main(work: Path, profile: str) -> None:
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "NO_COLOR": "1", "FAIRSEQ2_USER_ASSET_DIR": str(work / "assets/sonar/cards")}
    for step in PAPER if profile == "paper" else TINY:
        subprocess.run([sys.executable, "-m", "pipeline.cli", *step.split()], cwd=work, check=True, env=env,
                       stdout=subprocess.DEVNULL)
    for top in ("cache", "run"):
        for path in sorted((work / top).rglob("*")):
            if path.is_file() and path.name not in SKIP and "events.out" not in path.name and ".lock" not in path.name:
                print(f"{sha256(path)}  {path.relative_to(work)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "tiny")
