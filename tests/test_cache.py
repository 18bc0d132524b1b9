import json
import os
import subprocess
import sys
import textwrap

import pytest

from cache.errors import CacheError
from cache.keys import make_key
from cache.store import Cache

INPUTS = {"dataset": {"ids": ["a", "b"], "sizes": [10, 20]}, "model": {"name": "vit", "sha256": "ab"}, "image_size": 224}


def test_key_stable_and_sensitive():
    k = make_key("features", INPUTS, format_version=1)
    assert k == make_key("features", json.loads(json.dumps(INPUTS)), format_version=1)
    # key order never matters
    assert k == make_key("features", dict(reversed(list(INPUTS.items()))), format_version=1)
    changed = [
        {**INPUTS, "image_size": 112},
        {**INPUTS, "model": {"name": "vit", "sha256": "ac"}},
        {**INPUTS, "dataset": {"ids": ["a", "b"], "sizes": [10, 21]}},
    ]
    keys = {make_key("features", c, format_version=1) for c in changed}
    assert k not in keys and len(keys) == 3
    assert make_key("features", INPUTS, format_version=2) != k
    assert make_key("targets", INPUTS, format_version=1) != k


def test_publish_is_atomic_and_verifiable(tmp_path):
    cache = Cache(tmp_path)
    key = make_key("features", INPUTS, format_version=1)
    pending = cache.begin("features", key, INPUTS)
    (pending.dir / "data.bin").write_bytes(b"x" * 100)
    assert cache.get("features", key) is None  # not readable before publish
    entry = pending.publish(items=2, dataset="toy")
    assert entry.manifest["complete"] and entry.items == 2
    assert cache.verify(entry) == []
    (entry.dir / "data.bin").write_bytes(b"y" * 100)
    assert "checksum mismatch" in cache.verify(entry)[0]


def test_second_builder_is_refused(tmp_path):
    cache = Cache(tmp_path)
    with cache.begin("t", "k", {}):
        with pytest.raises(CacheError, match="another slt-pipe process"):
            cache.begin("t", "k", {})
    cache.begin("t", "k", {}).release()  # lock freed on exit


def test_crash_before_publish_leaves_nothing_readable(tmp_path):
    """A real process killed with SIGKILL after writing payload but before publishing."""
    script = textwrap.dedent(f"""
        import os, signal
        from cache.store import Cache
        p = Cache({str(tmp_path)!r}).begin("features", "k1", {{}})
        (p.dir / "data.bin").write_bytes(b"z" * 1000)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=os.getcwd())
    assert r.returncode == -9
    cache = Cache(tmp_path)
    assert cache.get("features", "k1") is None
    listed = list(cache.entries())
    assert len(listed) == 1 and isinstance(listed[0], tuple)  # shows as incomplete
    # the lock died with the process: the next run resumes from the partial payload
    p = cache.begin("features", "k1", {})
    assert (p.dir / "data.bin").read_bytes() == b"z" * 1000
    assert p.publish().manifest["complete"]


def test_corrupt_manifest_is_an_error_not_a_hit(tmp_path):
    cache = Cache(tmp_path)
    d = tmp_path / "features" / "k"
    d.mkdir(parents=True)
    (d / "manifest.json").write_text("{not json")
    with pytest.raises(CacheError, match="corrupt manifest"):
        cache.get("features", "k")
    (d / "manifest.json").write_text(json.dumps({"complete": False}))
    assert cache.get("features", "k") is None


def test_listing_tells_entries_of_one_dataset_apart(tmp_path):
    """`cache ls`: the split (and import name) of features, the language of targets, the pair of translations."""
    cache = Cache(tmp_path)
    for kind, key, inputs, manifest in [
        ("features", "f1", {}, {"split": "train"}),
        ("features", "f2", {"import": {"name": "spamo"}}, {"split": "dev"}),
        ("targets", "t1", {}, {"lang": "deu_Latn"}),
        ("translations", "x1", {"src": "deu_Latn"}, {"split": "train", "lang": "fra_Latn"}),
    ]:
        with cache.begin(kind, key, inputs) as p:
            (p.dir / "data").write_bytes(b"x")
            p.publish(dataset="toy", items=1, **manifest)
    what = {r["key"]: r["what"] for r in cache.listing()}
    assert what == {"f1": "train", "f2": "dev imported:spamo", "t1": "deu_Latn", "x1": "train deu_Latn->fra_Latn"}
