"""Imported by every Python process that has this directory on PYTHONPATH (tests/forbid_tiny_cli.py
puts it there): installs forbid_tiny_guard when SLT_PIPE_FORBID_TINY=1, then runs the sitecustomize
this one shadows, if any."""

import importlib.machinery
import importlib.util
import os
import sys

if os.environ.get("SLT_PIPE_FORBID_TINY") == "1":
    import forbid_tiny_guard

    forbid_tiny_guard.install()

_here = os.path.dirname(os.path.abspath(__file__))
_next = importlib.machinery.PathFinder.find_spec(
    "sitecustomize", [p for p in sys.path if os.path.abspath(p or os.curdir) != _here])
if _next is not None and _next.loader is not None:
    _module = importlib.util.module_from_spec(_next)
    _next.loader.exec_module(_module)
