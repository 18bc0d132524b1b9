"""How long a cached re-run takes: `python -m bench.cached_rerun [--dir D] [--videos N] [--repeat R]`.

Builds (or reuses, under --dir) a toy of N videos and its features and targets caches with
the tiny profile, then times cached re-runs of `slt-pipe extract` and `slt-pipe embed-targets`
as subprocesses, as a user runs them, and prints for each command side by side (medians of
R runs):

  total          wall time of the plain command
  python         wall time of `python -c pass` (the interpreter's own start)
  3rd-party imp  self time of every non-slt-pipe module import (`python -X importtime`)
  slt-pipe imp   self time of slt-pipe's own modules' import
  slt-pipe work  wall of an `-X importtime` run - python - both import columns: what slt-pipe
                 itself does once its modules are loaded

The import and work columns come from separate `-X importtime` runs (which add a little
overhead of their own), so they need not add up to the total exactly. The issue's targets: total under 3 s on a
2-core machine, slt-pipe's own part (its imports and its work) under 0.5 s. Then the
heaviest third-party imports are listed with the slt-pipe module that pulled each in.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # before bench/, whose extract.py would shadow the package
OWN = ("cache", "extract", "pipeline", "train", "bench")
"""slt-pipe's top-level packages."""
TARGET_TOTAL_S = 3.0
TARGET_OWN_S = 0.5
LANGS = "deu,eng,fra"


@dataclass
class Imports:
    """One `-X importtime` run, in seconds."""

    third_party: float
    own: float
    heaviest: list[tuple[str, float, str]]
    """(package, cumulative seconds, the slt-pipe module that imported it) of the heaviest top-level imports."""


def commands(root: Path, cache: Path, steps: int) -> dict[str, list[str]]:
    common = ["--profile", "tiny", "--dataset", "toy", "--root", str(root), "--cache", str(cache)]
    return {"extract": ["extract", *common],
            "embed-targets": ["embed-targets", *common, "--langs", LANGS, "--set", f"embed.tiny_sonar_steps={steps}",
                              "--set", "embed.device=cpu"]}


def cli(args: list[str], *, python_flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    # cwd is the repository: a folder named like an slt-pipe package in the cwd would shadow it
    return subprocess.run([sys.executable, *python_flags, "-m", "pipeline.cli", *args], cwd=REPO,
                          capture_output=True, text=True)


def wall(argv: list[str]) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{res.stdout}{res.stderr}")
    return took


def parse_importtime(stderr: str) -> Imports:
    """Self times split into slt-pipe's and the rest; each heavy top-level package with its importer."""
    rows: list[tuple[int, int, int, str]] = []  # (depth, self us, cumulative us, module)
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        head = line.split("|")
        self_us, cum_us, name = int(head[0].split(":")[1]), int(head[1]), head[2]
        depth = (len(name) - len(name.lstrip(" "))) // 2
        rows.append((depth, self_us, cum_us, name.strip()))
    own = sum(s for _, s, _, n in rows if n.split(".")[0] in OWN)
    third = sum(s for _, s, _, n in rows if n.split(".")[0] not in OWN)
    heavy = []
    for i, (depth, _, cum, name) in enumerate(rows):
        if "." in name or name.split(".")[0] in OWN or cum < 100_000:
            continue
        importer = next((n for d, _, _, n in rows[i + 1:] if d < depth and n.split(".")[0] in OWN), "-")
        if all(h[0] != name for h in heavy):
            heavy.append((name, cum / 1e6, importer))
    heavy.sort(key=lambda h: -h[1])
    return Imports(third / 1e6, own / 1e6, heavy[:6])


def build(root: Path, cache: Path, videos: int, cmds: dict[str, list[str]]) -> None:
    if not (root / "PHOENIX-2014-T-release-v3").is_dir():
        from extract.datasets.toy import make_toy

        print(f"making a {videos}-video toy in {root} ...", flush=True)
        make_toy(root, videos=videos, seed=0)
    for name, args in cmds.items():
        t0 = time.perf_counter()
        res = cli(args)
        if res.returncode != 0:
            raise SystemExit(f"slt-pipe {name} failed:\n{res.stdout}{res.stderr}")
        state = "cached already" if "cached" in res.stdout + res.stderr and name == "extract" else "done"
        print(f"build {name}: {time.perf_counter() - t0:.1f} s ({state})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "slt-pipe-cached-rerun",
                    help="where the toy and its caches live (reused between runs)")
    ap.add_argument("--videos", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tiny-sonar-steps", type=int, default=100, help="only the first build depends on it")
    a = ap.parse_args()
    root, cache = a.dir / f"toy-{a.videos}", a.dir / f"slt-cache-{a.videos}"
    cmds = commands(root, cache, a.tiny_sonar_steps)
    build(root, cache, a.videos, cmds)

    python_s = statistics.median(wall([sys.executable, "-c", "pass"]) for _ in range(a.repeat))
    print(f"\ncached re-runs, median of {a.repeat}; targets: total < {TARGET_TOTAL_S} s, "
          f"slt-pipe's own part (imports + work) < {TARGET_OWN_S} s")
    header = ("command", "total", "python", "3rd-party imp", "slt-pipe imp", "slt-pipe work", "own part", "verdict")
    print("  ".join(f"{h:>13}" for h in header))
    heavy: dict[str, list[tuple[str, float, str]]] = {}
    for name, args in cmds.items():
        res = cli(args)
        said = res.stdout + res.stderr
        if res.returncode != 0 or "cached" not in said:
            raise SystemExit(f"the re-run of {name} was not a cached no-op:\n{said}")
        total = statistics.median(wall([sys.executable, "-m", "pipeline.cli", *args]) for _ in range(a.repeat))
        imports, works = [], []
        for _ in range(a.repeat):
            # work is taken within one -X importtime run: on a busy machine two runs' import times differ by seconds
            t0 = time.perf_counter()
            timed = parse_importtime(cli(args, python_flags=("-X", "importtime")).stderr)
            works.append(max(0.0, time.perf_counter() - t0 - python_s - timed.third_party - timed.own))
            imports.append(timed)
        third = statistics.median(i.third_party for i in imports)
        own_imp = statistics.median(i.own for i in imports)
        work = statistics.median(works)
        own = own_imp + work
        ok = "ok" if total < TARGET_TOTAL_S and own < TARGET_OWN_S else "MISSES TARGET"
        print("  ".join(f"{c:>13}" for c in (name, f"{total:.2f} s", f"{python_s:.2f} s", f"{third:.2f} s",
                                              f"{own_imp:.2f} s", f"{work:.2f} s", f"{own:.2f} s", ok)))
        heavy[name] = imports[0].heaviest
    for name, rows in heavy.items():
        listed = ", ".join(f"{pkg} {s:.2f} s (via {who})" for pkg, s, who in rows) or "none over 0.1 s"
        print(f"heaviest imports of {name}: {listed}")


if __name__ == "__main__":
    main()
