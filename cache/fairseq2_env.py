"""Import fairseq2 (and so sonar) without a system libsndfile.

fairseq2n dlopens `libsndfile.so.1` at import. The `soundfile` wheel ships that very
library (SONAME libsndfile.so.1), so loading it globally first satisfies fairseq2n and
spares users an `apt-get install libsndfile1`. A system copy, when present, wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from pathlib import Path
from typing import Any

from cache.errors import SltPipeError


@functools.cache
def ensure_fairseq2() -> None:
    """Make `import fairseq2` / `import sonar` work; call before importing either."""
    if ctypes.util.find_library("sndfile") is None:
        try:
            import _soundfile_data  # the soundfile wheel's bundled libraries
        except ImportError as e:
            raise SltPipeError(
                "libsndfile is missing (fairseq2 needs libsndfile.so.1)",
                fix="pip install soundfile, or apt-get install libsndfile1",
            ) from e
        libs = sorted(Path(_soundfile_data.__file__).parent.glob("libsndfile*.so*"))
        if not libs:
            raise SltPipeError("the soundfile wheel has no libsndfile", fix="apt-get install libsndfile1")
        ctypes.CDLL(str(libs[0]), mode=ctypes.RTLD_GLOBAL)
    import fairseq2  # noqa: F401  (fail here, with the real error, if the stack is broken)


def check_fairseq2() -> dict[str, Any]:
    """Import fairseq2 (as the loaders do) and say what was imported: {"versions": {package: version or
    "?"}, "libsndfile": the system library, or None for the soundfile wheel's copy}. Raises what the
    import raises (SltPipeError for a missing libsndfile)."""
    from importlib.metadata import version

    ensure_fairseq2()

    def of(package: str) -> str:
        try:
            return version(package)
        except Exception:  # noqa: BLE001 - any metadata problem: unknown version
            return "?"

    return {"versions": {p: of(p) for p in ("fairseq2", "fairseq2n", "sonar-space", "torch")},
            "libsndfile": ctypes.util.find_library("sndfile")}
