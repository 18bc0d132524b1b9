"""`python tests/forbid_tiny_cli.py ARGS...` = `slt-pipe ARGS...` with every tiny-profile entry point
made to fail loudly, in this process and in every Python process started after it (Ray's model
workers and decode tasks included), so a paper-profile run that reaches one of them cannot pass
unnoticed. The guard and its list are in tests/forbid_tiny/forbid_tiny_guard.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

GUARD_DIR = Path(__file__).resolve().parent / "forbid_tiny"
# before anything starts Ray: local Ray's processes inherit this environment, and the directory's
# sitecustomize.py installs the guard in each of them at start-up
os.environ["PYTHONPATH"] = os.pathsep.join([str(GUARD_DIR), *filter(None, [os.environ.get("PYTHONPATH")])])
os.environ["SLT_PIPE_FORBID_TINY"] = "1"
sys.path.insert(0, str(GUARD_DIR))

import forbid_tiny_guard  # noqa: E402

forbid_tiny_guard.install(driver=True)  # this process, before any project module is imported
FORBIDDEN = forbid_tiny_guard.FORBIDDEN

if __name__ == "__main__":
    from pipeline.cli import main

    sys.argv[0] = "slt-pipe"
    main()
