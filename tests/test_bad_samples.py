"""One skip-and-list policy for bad samples (readers, runner, extract stage) and repair in place.

Readers keep a sample whose frames are missing or empty, with `Sample.problem` naming the item
and the fix; extraction skips it, as it does samples that fail to decode (a corrupt PNG, a
How2Sign window past the end of its video), publishes the rest and exits 1. Restoring the
files changes the key; the next extract recomputes only the shards that had failures, and the
result equals a clean run byte for byte. The CLI runs in-process on one shared local Ray;
those runs take a minute or more in all, so they are marked slow, and fast tests cover the
runner's skip path and shard adoption without Ray (tests/test_extract.py covers the How2Sign
cases through the stage, and Ray's quiet start, in the default suite).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cache.feature_store import FeatureStoreWriter, ShardData
from cache.features import FeatureReader
from extract.datasets import open_dataset
from extract.vision.runner import ShardComputer, ShardPlan, decode_video, plan_shards
from extract.vision.stream_writers import adopt_shards
from helpers import CSL, H2S_HEADER, PHX, entry_stores, frames_of, h2s_row, write_csl, write_how2sign, write_mp4
from pipeline.config import build_config

SHARD = 2
PHX_VIDEOS = 12  # 10 train videos of 22-37 frames: 5 shards


def words(text: str) -> str:
    """Whitespace-free text: rich may wrap or pad long lines."""
    return "".join(text.split())


def extract_cli(dataset: str, root: Path, cache: Path, split: str):
    from pipeline.cli import app

    return CliRunner().invoke(app, ["extract", "--profile", "tiny", "--dataset", dataset, "--root", str(root),
                                    "--cache", str(cache), "--split", split, "--set", f"extract.shard_videos={SHARD}"])


def only_entry(cache: Path) -> Path:
    entries = [p for p in (cache / "features").iterdir() if p.is_dir() and not p.name.endswith(".partial")]
    assert len(entries) == 1, entries
    return entries[0]


def manifest(entry: Path) -> dict:
    return json.loads((entry / "manifest.json").read_text())


def file_hashes(entry: Path) -> dict[str, str]:
    """sha256 of every payload file the manifests of the set's stream entries list, recomputed from disk."""
    out = {}
    for prefix, d in entry_stores(entry).items():
        files = manifest(d)["files"]
        assert files and all(rel.startswith("features.zarr/") for rel in files)
        out.update({prefix + rel: hashlib.sha256((d / rel).read_bytes()).hexdigest() for rel in files})
    return out


# --------------------------------------------------------------------------- PHOENIX (toy layout)


@pytest.fixture(scope="module")
def phx_clean(toy_corpus) -> Path:
    """The PHX_VIDEOS-video toy corpus, read only (tests damage copies of it)."""
    return toy_corpus(PHX_VIDEOS)


def damage(root: Path) -> dict[str, str]:
    """Break three train samples of a toy copy in place: {what: sample id}."""
    base = root / PHX
    names = [s.id for s in open_dataset("phoenix", root, ["train"]).samples["train"]]
    missing, empty, corrupt = names[0], names[1], names[5]  # shards 0, 0 and 2 of 5
    shutil.rmtree(frames_of(base, "train", missing))
    for p in frames_of(base, "train", empty).iterdir():
        p.unlink()
    png = sorted(frames_of(base, "train", corrupt).iterdir())[3]
    png.write_bytes(png.read_bytes()[:60])  # truncated PNG: found only when decoded
    return {"missing": missing, "empty": empty, "corrupt": corrupt, "png": str(png)}


@pytest.fixture()
def phx_bad(phx_clean, tmp_path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "phx"
    shutil.copytree(phx_clean, root)
    return root, damage(root)


def test_phoenix_reader_keeps_the_split_and_names_each_bad_sample(phx_clean, phx_bad):
    root, bad = phx_bad
    base = root / PHX
    csv = base / "annotations/manual/PHOENIX-2014-T.train.corpus.csv"
    clean = open_dataset("phoenix", phx_clean, ["train", "dev"])
    ds = open_dataset("phoenix", root, ["train", "dev"])
    assert [s.id for s in ds.samples["train"]] == [s.id for s in clean.samples["train"]]
    skipped = {sid: (reason, fix) for sid, reason, fix in ds.skipped("train")}
    assert sorted(skipped) == sorted([bad["missing"], bad["empty"]])  # the corrupt PNG shows only when decoded
    for what, text in (("missing", "frame folder is missing"), ("empty", "frame folder has no .png frames")):
        folder = frames_of(base, "train", bad[what])
        reason, fix = skipped[bad[what]]
        assert reason.startswith(f"{folder}: {text} (sample {bad[what]!r}, {csv.name} line ")
        line = reason.split(" line ")[1].split(";")[0]
        assert fix == f"restore {folder} from the release, or delete line {line} from {csv}"
        assert csv.read_text().splitlines()[int(line) - 1].startswith(bad[what] + "|")
    assert ds.fingerprint("train") != clean.fingerprint("train")
    assert ds.fingerprint("dev") == clean.fingerprint("dev")
    moved = open_dataset("phoenix", shutil.copytree(root, root.parent / "moved" / "x"), ["train"])
    assert moved.fingerprint("train") == ds.fingerprint("train")  # problems are keyed root-relative


def test_restoring_a_folder_changes_the_fingerprint(phx_clean, phx_bad):
    root, bad = phx_bad
    base = root / PHX
    before = open_dataset("phoenix", root, ["train"]).fingerprint("train")
    shutil.rmtree(frames_of(base, "train", bad["empty"]))  # empty -> missing: same features, other reason
    assert open_dataset("phoenix", root, ["train"]).fingerprint("train") != before
    shutil.copytree(frames_of(phx_clean / PHX, "train", bad["missing"]), frames_of(base, "train", bad["missing"]))
    ds = open_dataset("phoenix", root, ["train"])
    assert [sid for sid, _, _ in ds.skipped("train")] == [bad["empty"]]


def test_only_the_restored_samples_shard_changes_fingerprint(phx_clean, phx_bad):
    root, bad = phx_bad
    before = open_dataset("phoenix", root, ["train"])
    shutil.copytree(frames_of(phx_clean / PHX, "train", bad["missing"]), frames_of(root / PHX, "train", bad["missing"]))
    after = open_dataset("phoenix", root, ["train"])
    a = plan_shards(before.samples["train"], SHARD, before.sample_digests("train"))
    b = plan_shards(after.samples["train"], SHARD, after.sample_digests("train"))
    assert [[s.id for s in p.samples] for p in a] == [[s.id for s in p.samples] for p in b]  # same membership
    assert [p.index for p, q in zip(a, b) if p.fingerprint != q.fingerprint] == [0]
    assert all(p.fingerprint for p in a) and plan_shards(before.samples["train"], SHARD)[0].fingerprint == ""


class _Recipe:
    """The first three values of each frame (clip) as its feature: the runner's logic without a model."""

    frame_keys = ("v",)
    clip_keys = ("v",)

    def max_decode_side(self) -> None:
        return None

    def prepare(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        return {"v": frames}


class _Extractor:
    recipe = _Recipe()
    spatial_dim = motion_dim = 3
    device = type("Device", (), {"type": "cpu"})()  # FeatureExtractor.device's type picks the batch sizes

    def spatial_batch(self, batch: dict[str, np.ndarray]):
        import torch

        return torch.from_numpy(batch["v"].reshape(len(batch["v"]), -1)[:, :3].astype(np.float32))

    def motion_batch(self, clips: dict[str, np.ndarray]):
        import torch

        return torch.from_numpy(clips["v"].reshape(len(clips["v"]), -1)[:, :3].astype(np.float32))


def test_runner_lists_a_problem_sample_and_never_decodes_it(phx_bad):
    root, bad = phx_bad
    samples = {s.id: s for s in open_dataset("phoenix", root, ["train"]).samples["train"]}
    empty, good = samples[bad["empty"]], samples[sorted(samples)[2]]
    cfg = build_config({"profile": "tiny"}).extract
    fx = _Extractor()
    shard = ShardPlan(0, (empty, good), "fp")
    # Only the good sample is decoded: were the problem sample given a decode, ids would shift.
    decoded = iter([decode_video(good.frames, cfg, fx.recipe)])
    kind, data = list(ShardComputer(fx, cfg).run(shard, decoded))[-1]
    assert kind == "shard" and data.ids == [good.id] and data.fingerprint == "fp"
    assert len(data.spatial[0]) == len(good.frames.files)
    [(sid, reason, fix)] = data.failures
    assert sid == empty.id and "frame folder has no .png frames" in reason and fix.startswith("restore ")


def _shard(k: int, fp: str, failures: list[tuple[str, ...]] = ()) -> ShardData:
    rows = np.arange(12 * (k + 1), dtype=np.float16).reshape(-1, 4)
    return ShardData(k, [f"v{k}"], [rows], [rows[:1]], list(failures), fp)


def test_adopt_shards_links_matching_shards_without_failures_only(tmp_path):
    def writer(d: Path) -> FeatureStoreWriter:
        return FeatureStoreWriter(d, spatial_dim=4, motion_dim=4, dtype="float16", attrs={"shard_videos": 1})

    old = writer(tmp_path / "old")
    for data in (_shard(0, "a"), _shard(1, "b", [("x", "gone", "restore it")]), _shard(2, "c"), _shard(3, "")):
        old.write_shard(data)
    new = writer(tmp_path / "new")
    plan = [ShardPlan(0, (), "a"), ShardPlan(1, (), "b"), ShardPlan(2, (), "c2"), ShardPlan(3, (), "")]
    assert adopt_shards(new, plan, [("oldkey", tmp_path / "old")]) == {"oldkey": [0]}
    assert new.done_shards() == {0}
    src, dst = (tmp_path / d / "features.zarr/shards/00000" for d in ("old", "new"))
    files = sorted(p.relative_to(src) for p in src.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(dst) for p in dst.rglob("*") if p.is_file())
    assert all((src / f).stat().st_ino == (dst / f).stat().st_ino for f in files)
    new.write_shard(_shard(1, "b"))
    assert new.finish([0, 1]) == (2, [])


@pytest.fixture(scope="module")
def phx_runs(local_ray, phx_clean, tmp_path_factory) -> dict:
    """Three extracts: damaged corpus, the same after restoring its files (repair), clean corpus."""
    root = tmp_path_factory.mktemp("phx_runs") / "phx"
    shutil.copytree(phx_clean, root)
    bad = damage(root)
    cache = tmp_path_factory.mktemp("phx_cache")
    first = extract_cli("phoenix", root, cache, "train")
    first_entry = only_entry(cache)
    shutil.rmtree(root / PHX / "features")
    shutil.copytree(phx_clean / PHX / "features", root / PHX / "features")
    repair = extract_cli("phoenix", root, cache, "train")
    repaired = [p for p in (cache / "features").iterdir() if p.is_dir() and p != first_entry]
    fresh = tmp_path_factory.mktemp("phx_fresh_cache")
    clean = extract_cli("phoenix", phx_clean, fresh, "train")
    return {"bad": bad, "first": first, "first_entry": first_entry, "repair": repair, "repaired": repaired,
            "clean": clean, "clean_entry": only_entry(fresh), "root": root}


@pytest.mark.slow
def test_phoenix_extract_skips_and_lists_bad_samples_and_publishes_the_rest(phx_runs):
    bad, res, entry = phx_runs["bad"], phx_runs["first"], phx_runs["first_entry"]
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    out = words(res.output)
    base = phx_runs["root"] / PHX
    for what in ("missing", "empty"):
        assert words(f"skipped phoenix/train/{bad[what]}: {frames_of(base, 'train', bad[what])}: ") in out
    assert words(f"skipped phoenix/train/{bad['corrupt']}: {bad['png']}: unreadable image") in out
    assert out.count("fix:restore") == 3
    assert words(f"phoenix/train: 3 of 10 sample(s) skipped; the other 7 are in features/{entry.name}") in out
    m = manifest(entry)
    assert [f[0] for f in m["failures"]] == sorted([bad["missing"], bad["empty"], bad["corrupt"]])
    assert all(len(f) == 3 and f[2] for f in m["failures"])
    reasons = {f[0]: f[1] for f in m["failures"]}
    assert "frame folder is missing" in reasons[bad["missing"]] and bad["png"] in reasons[bad["corrupt"]]
    reader = FeatureReader(entry)
    assert m["items"] == 7 and len(reader.ids) == 7 and not set(reader.ids) & set(reasons)


@pytest.mark.slow
def test_repair_recomputes_only_the_failed_shards_and_equals_a_clean_run(phx_runs):
    res, first = phx_runs["repair"], phx_runs["first_entry"]
    assert res.exit_code == 0, res.output
    assert len(phx_runs["repaired"]) == 1
    entry = phx_runs["repaired"][0]
    out = words(res.output)
    assert words("2 of 5 shards computed") in out  # shards 0 and 2 held the bad samples
    m = manifest(entry)
    assert m["failures"] == [] and m["items"] == 10
    old, new = entry_stores(first), entry_stores(entry)
    assert sorted(old) == sorted(new) == ["tiny-videomae/", "tiny-vit/"]
    for name in old:  # each stream repaired on its own, from its own older entry
        assert words(f"repair: reusing 3 of 5 {name[:-1]} shards from stream/{old[name].name}") in out
        assert manifest(new[name])["repaired_from"] == {old[name].name: [1, 3, 4]}
        array = "spatial" if name == "tiny-vit/" else "motion"
        reused = new[name] / f"features.zarr/shards/00001/{array}/c/0/0"
        assert reused.stat().st_ino == (old[name] / f"features.zarr/shards/00001/{array}/c/0/0").stat().st_ino  # a link
    assert phx_runs["clean"].exit_code == 0, phx_runs["clean"].output
    clean = phx_runs["clean_entry"]
    assert clean.name == entry.name  # same files, same key
    assert file_hashes(entry) == file_hashes(clean)


# --------------------------------------------------------------------------- How2Sign


def test_how2sign_reader_keeps_a_split_with_a_missing_clip(tmp_path):
    root = write_how2sign(tmp_path)
    csv = root / "how2sign_realigned_train.csv"
    csv.write_text(csv.read_text() + h2s_row("nop", 0, 0.0, 1.0, "No video for this one.") + "\n", encoding="utf-8")
    ds = open_dataset("how2sign", root, ["train"])
    assert len(ds.samples["train"]) == 4
    [(sid, reason, fix)] = ds.skipped("train")
    assert sid == "nop_0-1-rgb_front"
    assert reason.startswith(f"{root}: no video for 'nop_0-1-rgb_front' (how2sign_realigned_train.csv line 5)")
    assert "nop-1-rgb_front.mp4" in reason
    assert fix == f"none needed (the sample is skipped), or put nop_0-1-rgb_front.mp4 in {root / 'train/rgb_front/clips'}/"
    before = ds.fingerprint("train")
    write_mp4(root / "train/rgb_front/clips/nop_0-1-rgb_front.mp4", frames=16)
    again = open_dataset("how2sign", root, ["train"])
    assert again.skipped("train") == [] and again.fingerprint("train") != before


@pytest.fixture(scope="module")
def h2s_run(local_ray, tmp_path_factory):
    """test split: a clip, a window of a 2 s video, a window past its end, a row without any video."""
    root = tmp_path_factory.mktemp("h2s")
    rows = [h2s_row("a", 0, 0.0, 1.0, "A whole clip."), h2s_row("b", 0, 0.5, 1.5, "Cut from the full video."),
            h2s_row("b", 1, 1.0, 3.5, "Ends past the end of the video."), h2s_row("d", 0, 0.0, 1.0, "No video.")]
    csv = root / "how2sign_realigned_test.csv"
    csv.write_text("\n".join([H2S_HEADER] + rows) + "\n", encoding="utf-8")
    write_mp4(root / "clips/a_0-1-rgb_front.mp4", frames=20)
    write_mp4(root / "videos/b-1-rgb_front.mp4", frames=48)
    cache = tmp_path_factory.mktemp("h2s_cache")
    return root, csv, extract_cli("how2sign", root, cache, "test"), only_entry(cache)


@pytest.mark.slow
def test_how2sign_extract_skips_missing_clip_and_window_past_the_end(h2s_run):
    root, csv, res, entry = h2s_run
    assert res.exit_code == 1, res.output
    out = words(res.output)
    video = root / "videos/b-1-rgb_front.mp4"
    assert words(f"skipped how2sign/test/b_1-1-rgb_front: {video}: window [1.0, 3.5) s ends past the end of "
                 f"b-1-rgb_front.mp4 (2.0 s); skipped; fix: none needed, or correct END_REALIGNED on line 4 of "
                 f"{csv} (How2Sign's realigned END times overrun their videos, how2sign-data issue #9)") in out
    assert words(f"skipped how2sign/test/d_0-1-rgb_front: {root}: no video for 'd_0-1-rgb_front'") in out
    assert words("how2sign/test: 2 of 4 sample(s) skipped; the other 2 are in") in out
    m = manifest(entry)
    assert [f[0] for f in m["failures"]] == ["b_1-1-rgb_front", "d_0-1-rgb_front"]
    assert all(len(f) == 3 for f in m["failures"])
    assert FeatureReader(entry).ids == ["a_0-1-rgb_front", "b_0-1-rgb_front"]


# --------------------------------------------------------------------------- CSL-Daily


def test_csl_daily_reader_keeps_a_split_with_a_missing_frame_folder(tmp_path):
    root = write_csl(tmp_path / "CSL-Daily", CSL)
    folder = root / "sentence/frames_512x512/S000001_P0000_T00"
    before = open_dataset("csl-daily", root, ["train"]).fingerprint("train")
    shutil.rmtree(folder)
    ds = open_dataset("csl-daily", root, ["train"])
    assert [s.id for s in ds.samples["train"]] == ["S000000_P0000_T00", "S000001_P0000_T00"]
    [(sid, reason, fix)] = ds.skipped("train")
    assert sid == "S000001_P0000_T00"
    assert reason == f"{folder}: frame folder is missing (sample 'S000001_P0000_T00', split train)"
    assert fix == (f"restore {folder} from the release, or delete the line S000001_P0000_T00|train from "
                   f"{root / 'sentence_label/split_1.txt'}")
    assert ds.fingerprint("train") != before
