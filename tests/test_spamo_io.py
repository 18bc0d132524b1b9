"""SpaMo's feature files in and out (issue #26): every naming imported, bad files listed and the rest
published, export in SpaMo's script layout and back byte for byte, and the proof on the same inputs:
files written by SpaMo's procedure (transformers' own classes) import to what `extract --profile paper`
computes, and train and evaluate run on the imported entry."""

from __future__ import annotations

import dataclasses
import filecmp
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from cache.errors import CacheError, SltPipeError
from cache.features import FeatureReader
from extract.datasets import open_dataset
from extract.spamo_files import clip_count, export_paths
from helpers import (
    CSL,
    cosines,
    random_clip,
    random_videomae,
    scramble_weights,
    spamo_motion,
    spamo_spatial,
    write_csl,
    write_how2sign,
)
from pipeline import spamo_stage
from pipeline.config import build_config

TOY = 12  # the toy size tests/test_bad_samples.py uses too: 10 train videos of 22-37 frames
SPLITS = ["train", "dev", "test"]


def console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=400, no_color=True), buf


def cfg_of(cache: Path, root: Path, dataset: str = "toy", splits=SPLITS, fingerprint: str = "stat", **train):
    return build_config({"profile": "tiny", "dataset": {"name": dataset, "root": str(root), "splits": list(splits),
                                                        "fingerprint": fingerprint},
                         "cache": {"dir": str(cache)}, "train": train})


def run_import(cfg, source: Path, **kw) -> tuple[spamo_stage.ImportReport, str]:
    con, buf = console()
    report = spamo_stage.import_features(cfg, source, console=con, out=con, **kw)
    return report, buf.getvalue()


def write_spamo(out: Path, dataset, seed: int = 0, starts: dict[str, str] | None = None) -> dict:
    """SpaMo's script layout of random float32 features for every video of `dataset`: frames from its
    frame folders (else 20), clips by SpaMo's windowing. Returns split -> id -> (spatial, motion)."""
    from extract.datasets import PngFolder

    rng = np.random.default_rng(seed)
    arrays: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for split, samples in dataset.samples.items():
        for s in samples:
            frames = len(s.frames.files) if isinstance(s.frames, PngFolder) else 20
            sp = rng.standard_normal((frames, 2048), dtype=np.float32)
            mo = rng.standard_normal((clip_count(frames), 1024), dtype=np.float32)
            paths = export_paths(out, dataset.name, split, s.id, (starts or {}).get(s.id))
            for path, array in zip(paths, (sp, mo)):
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, array)
            arrays.setdefault(split, {})[s.id] = (sp, mo)
    return arrays


def assert_entry_holds(entry, arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    reader = FeatureReader(entry.dir)
    assert sorted(reader.ids) == sorted(arrays)
    for vid, (sp, mo) in arrays.items():
        got_sp, got_mo = reader.get_stored(vid)
        assert got_sp.dtype == np.float32 and np.array_equal(got_sp, sp) and np.array_equal(got_mo, mo), vid


@pytest.fixture(scope="module")
def toy(toy_corpus) -> Path:
    return toy_corpus(TOY)


@pytest.fixture(scope="module")
def spamo(tmp_path_factory, toy):
    """(SpaMo script-layout folder of random features for the toy, split -> id -> arrays). Read only."""
    out = tmp_path_factory.mktemp("spamo") / "save_dir"
    return out, write_spamo(out, open_dataset("toy", toy, SPLITS))


# --------------------------------------------------------------------------- layouts


def relayout(src: Path, dst: Path, kind: str) -> Path:
    """A copy (hard links) of SpaMo's script output in another naming users hold; returns the folder to import."""
    spatial, motion = src / "clip-vit-large-patch14_feat_Phoenix14T", src / "mae_feat_Phoenix14T"
    where = {"script": (dst / spatial.name, dst / motion.name, "_s2wrapping", "_overlap-8"),
             "plain": (dst / spatial.name, dst / motion.name, "", ""),
             "pretrained": (dst / spatial.name, dst / motion.name, "_s2wrapping", "_overlap-8-pretrained"),
             "released": (dst / "PHOENIX14T/spa_feat_p14t", dst / "PHOENIX14T/mo_feat_p14t", "", ""),
             "released-inside": (dst / "PHOENIX14T/spa_feat_p14t", dst / "PHOENIX14T/mo_feat_p14t", "", "")}[kind]
    for folder, new, old_post, new_post in ((spatial, where[0], "_s2wrapping", where[2]),
                                            (motion, where[1], "_overlap-8", where[3])):
        for f in folder.rglob("*.npy"):
            target = new / f.parent.name / f.name.replace(f"{old_post}.npy", f"{new_post}.npy")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(f, target)
    return dst / "PHOENIX14T" if kind == "released-inside" else dst


LAYOUTS = {"script": "script output", "plain": "script output without suffixes",
           "pretrained": "script output, SpaMo's training names", "released": "released features",
           "released-inside": "released features"}


@pytest.mark.parametrize("kind", list(LAYOUTS))
def test_every_naming_is_detected_reported_and_imported_whole(tmp_path, toy, spamo, kind):
    src, arrays = spamo
    folder = relayout(src, tmp_path / "in", kind)
    report, text = run_import(cfg_of(tmp_path / "cache", toy), folder)
    assert report.layout.startswith(f"SpaMo layout: {LAYOUTS[kind]} (") and text.count("SpaMo layout:") == 1
    assert not report.failures and report.computed == SPLITS
    for split in SPLITS:
        entry = report.entries[split]
        assert_entry_holds(entry, arrays[split])
        inputs = entry.manifest["inputs"]
        assert inputs["import"]["layout"] == LAYOUTS[kind] and inputs["import"]["files"] == 2 * len(arrays[split])
        assert [s["width"] for s in inputs["models"]["streams"]] == [2048, 1024]
        listed = json.loads((entry.dir / spamo_stage.FILES_LISTING).read_text())
        rel, digest = next(iter(listed.items()))
        assert digest == __import__("hashlib").sha256((folder / rel).read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ["how2sign", "csl-daily"])
def test_how2sign_start_times_and_csl_daily_folders_round_trip(tmp_path, name):
    """How2Sign's names carry START_REALIGNED (`{id}_{start}_s2wrapping.npy`) and its val split is SpaMo's
    `dev` folder; CSL-Daily has its own DS. Import reads them, export writes the same bytes back."""
    from extract.spamo_files import how2sign_starts

    root = write_how2sign(tmp_path / "h2s") if name == "how2sign" else write_csl(tmp_path / "csl", CSL)
    dataset = open_dataset(name, root, SPLITS)
    starts = how2sign_starts(dataset.annotation_files) if name == "how2sign" else None
    arrays = write_spamo(tmp_path / "in", dataset, starts=starts)
    if name == "how2sign":
        assert (tmp_path / "in/mae_feat_How2Sign/dev/val_0-1-rgb_front_0.0_overlap-8.npy").is_file()
    cfg = cfg_of(tmp_path / "cache", root, name)
    report, _ = run_import(cfg, tmp_path / "in")
    assert not report.failures
    for split in SPLITS:
        assert_entry_holds(report.entries[split], arrays[split])
    spamo_stage.export_features(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, features="imported:spamo")),
                                tmp_path / "out", console=console()[0])
    assert_same_tree(tmp_path / "in", tmp_path / "out")


def assert_same_tree(a: Path, b: Path) -> None:
    names = sorted(str(p.relative_to(a)) for p in a.rglob("*.npy"))
    assert names and names == sorted(str(p.relative_to(b)) for p in b.rglob("*.npy"))
    _, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert not mismatch and not errors, mismatch + errors


# --------------------------------------------------------------------------- export


def test_export_writes_spamos_layout_and_import_after_export_is_the_same_entry(tmp_path, toy, spamo):
    src, arrays = spamo
    cfg = cfg_of(tmp_path / "cache", toy, features="imported:spamo")
    first, _ = run_import(cfg, src)
    spamo_stage.export_features(cfg, tmp_path / "out", console=console()[0])
    assert_same_tree(src, tmp_path / "out")  # names, splits, float32, shapes: SpaMo's own bytes
    again, text = run_import(cfg, tmp_path / "out")
    assert again.computed == [] and "cached features toy/train" in text  # the same files: the same key
    assert {s: e.key for s, e in again.entries.items()} == {s: e.key for s, e in first.entries.items()}
    # float16 storage is another entry; it exports the float16-rounded values
    half, _ = run_import(cfg, src, dtype="float16")
    assert half.entries["train"].key != first.entries["train"].key
    spamo_stage.export_features(cfg, tmp_path / "half", keys=[half.entries["dev"].key], console=console()[0])
    (vid, (sp, _)), = arrays["dev"].items()
    got = np.load(export_paths(tmp_path / "half", "toy", "dev", vid)[0])
    assert got.dtype == np.float32 and np.array_equal(got, sp.astype(np.float16).astype(np.float32))
    assert not np.array_equal(got, sp)


def _stream(name: str, model: str, width: int) -> dict:
    return {"name": name, "kind": "frame" if name in ("clip", "dinov3") else "clip", "width": width, "model": model}


SPAMO_RECIPE = {"spatial_scales": [1, 2], "clip_len": 16, "clip_stride": 8, "motion_pool": "first"}


@pytest.mark.parametrize(("streams", "recipe", "said"), [
    # the user's case: other encoders, SpaMo's widths (1024-wide snapshots, S2); width checks let it through
    ([_stream("dinov3", "facebook/dinov3-vitl16-pretrain-lvd1689m", 2048),
      _stream("vjepa2", "facebook/vjepa2-vitl-fpc64-256", 1024)], SPAMO_RECIPE,
     "it holds the streams dinov3 (facebook/dinov3-vitl16-pretrain-lvd1689m), vjepa2 (facebook/vjepa2-vitl-fpc64-256); "
     "SpaMo's are clip, videomae"),
    ([_stream("clip", "openai/clip-vit-large-patch14", 2048), _stream("videomae", "MCG-NJU/videomae-large", 1024)],
     {**SPAMO_RECIPE, "motion_pool": "mean"}, "its recipe has motion_pool = mean; SpaMo's has motion_pool = first"),
    ([_stream("clip", "tiny", 128), _stream("videomae", "tiny", 64)], SPAMO_RECIPE,
     "its streams are 128 / 64 wide; SpaMo's are 2048 / 1024"),
])
def test_export_refuses_features_that_are_not_spamos_recipe(tmp_path, toy, streams, recipe, said):
    """SpaMo's file names say CLIP ViT-L/14 S2 and VideoMAE-L: export writes them only for that recipe,
    by the encoders' identity in the store, not by its widths."""
    from cache.feature_store import FeatureStoreWriter, ShardData
    from cache.store import Cache

    dims = (streams[0]["width"], streams[1]["width"])
    with Cache(tmp_path / "cache").begin("features", "k" * 20, {}) as pending:
        w = FeatureStoreWriter(pending.dir, spatial_dim=dims[0], motion_dim=dims[1], dtype="float16",
                               attrs={"models": {"streams": streams}, **recipe})
        w.write_shard(ShardData(0, ["v"], [np.zeros((3, dims[0]))], [np.zeros((1, dims[1]))], []))
        w.finish([0])
        pending.publish(dataset="toy", split="train", items=1)
    with pytest.raises(SltPipeError) as e:
        spamo_stage.export_features(cfg_of(tmp_path / "cache", toy), tmp_path / "out", keys=["k" * 20],
                                    console=console()[0])
    assert e.value.problem == (f"features/{'k' * 20} is not SpaMo's recipe (CLIP ViT-L/14 S2 + VideoMAE-L first "
                               f"token): {said}; its files would be named as SpaMo's and mislabel them")
    assert "--profile paper" in e.value.fix
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- bad folders


def spoil(folder: Path, vid: str, case: str, frames: int) -> str:
    """Damage one train video's files in a copy of the script layout; returns what its message says."""
    sp = folder / f"clip-vit-large-patch14_feat_Phoenix14T/train/{vid}_s2wrapping.npy"
    mo = folder / f"mae_feat_Phoenix14T/train/{vid}_overlap-8.npy"
    rng = np.random.default_rng(9)
    if case == "missing spatial":
        sp.unlink()
        return f"no SpaMo spatial file {sp}; fix: make it with python scripts/vit_extract_feature.py"
    if case == "missing motion":
        mo.unlink()
        return f"no SpaMo motion file {mo}; fix: make it with python scripts/mae_extract_feature.py"
    if case == "wrong width":
        np.save(sp, rng.standard_normal((frames, 1024), dtype=np.float32))
        return f"{sp}: spatial array of shape [{frames}, 1024], expected [rows, 2048]"
    if case == "truncated":
        sp.write_bytes(sp.read_bytes()[:5000])
        return f"{sp}: truncated .npy file: {5000 - 128} of the {frames * 2048 * 4} bytes its header declares"
    if case == "non-finite":
        bad = np.load(mo)
        bad[0, :3] = [np.nan, np.inf, -np.inf]
        np.save(mo, bad)
        return f"{mo}: 3 non-finite values (NaN or inf)"
    if case == "clip count":
        np.save(mo, rng.standard_normal((clip_count(frames) + 1, 1024), dtype=np.float32))
        return f"{mo}: {clip_count(frames) + 1} clips, SpaMo's windowing (16-frame clips every 8 frames"
    if case == "not npy":
        sp.write_text("frame,feature\n0,0.1\n")  # a CSV export saved under the .npy name
        return f"{sp}: not a .npy file (it starts with b'frame,fe', a .npy file with b'\\x93NUMPY')"
    if case == "pickled":
        np.save(sp, np.array([{"frame": 0}] * frames, dtype=object), allow_pickle=True)
        return f"{sp}: a .npy file of Python objects (object), not of numbers: SpaMo's files hold float32 arrays"
    assert case == "frame count"
    np.save(sp, rng.standard_normal((frames - 1, 2048), dtype=np.float32))
    return f"{sp}: {frames - 1} frames, the video has {frames}"


BAD = ["missing spatial", "missing motion", "wrong width", "truncated", "non-finite", "clip count", "frame count",
       "not npy", "pickled"]


@pytest.mark.parametrize("case", BAD)
def test_a_bad_file_is_listed_with_its_fix_and_the_rest_published(tmp_path, toy, spamo, case):
    from pipeline.cli import app

    src, arrays = spamo
    folder = tmp_path / "in"
    shutil.copytree(src, folder)
    vid = sorted(arrays["train"])[3]
    said = spoil(folder, vid, case, len(arrays["train"][vid][0]))
    res = CliRunner().invoke(app, ["import-features", "--from", "spamo", str(folder), "--dataset", "toy", "--root",
                                   str(toy), "--cache", str(tmp_path / "cache"), "--split", "train"])
    assert res.exit_code == 1, res.output
    out = "".join(res.output.split())
    assert "".join(f"skipped toy/train/{vid}: {said}".split()) in out, res.output
    assert "Traceback" not in res.output and out.count("skippedtoy/train/") == 1
    assert "allow_pickle" not in res.output  # numpy's advice would run code from the file
    (entry_dir,) = [p for p in (tmp_path / "cache/features").iterdir() if p.is_dir()]
    manifest = json.loads((entry_dir / "manifest.json").read_text())
    assert [f[0] for f in manifest["failures"]] == [vid] and manifest["items"] == len(arrays["train"]) - 1
    from cache.store import Cache

    assert_entry_holds(Cache(tmp_path / "cache").get("features", entry_dir.name),
                       {k: v for k, v in arrays["train"].items() if k != vid})


def test_no_spamo_files_is_one_error_naming_what_was_looked_for(tmp_path, toy):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SltPipeError, match=r"no SpaMo feature files of toy.*clip-vit-large-patch14_feat_Phoenix14T"
                                           r".*found an empty folder"):
        run_import(cfg_of(tmp_path / "cache", toy), tmp_path / "empty")
    with pytest.raises(SltPipeError, match="SpaMo feature folder does not exist"):
        run_import(cfg_of(tmp_path / "cache", toy), tmp_path / "absent")
    (tmp_path / "file").write_text("")
    with pytest.raises(SltPipeError, match="SpaMo feature folder is not a directory"):
        run_import(cfg_of(tmp_path / "cache", toy), tmp_path / "file")
    assert not (tmp_path / "cache/features").exists()


def test_files_of_another_corpus_are_named_by_a_few_of_theirs(tmp_path, toy, spamo):
    src, arrays = spamo
    folder = tmp_path / "in"
    for f in src.rglob("*.npy"):  # the same layout, other videos' names
        target = folder / f.relative_to(src).parent / f.name.replace("toy", "other")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(f, target)
    with pytest.raises(SltPipeError) as e:
        run_import(cfg_of(tmp_path / "cache", toy), folder)
    problem = e.value.problem
    n = len(arrays["train"])
    assert f"found {n} file(s) in {folder}/clip-vit-large-patch14_feat_Phoenix14T/train but none of this dataset's" \
           f" videos: other" in problem and f"(and {n - 4} more)" in problem, problem
    assert len(problem.replace(str(folder), "")) < 500 and not (tmp_path / "cache/features").exists()  # was 1,500


def test_a_split_of_no_usable_video_is_one_error_and_no_entry(tmp_path, toy, spamo):
    """Every spatial file single-scale (1024 wide, SpaMo's --scales 1): one summarising error, exit 2, no
    entry, where there were N near-identical lines and an entry of 0 videos; train then names the import."""
    from pipeline.cli import app
    from pipeline.dataset import configured_dataset
    from pipeline.spamo_stage import find_selected, missing_fix

    src, arrays = spamo
    folder = tmp_path / "in"
    shutil.copytree(src, folder)
    for f in (folder / "clip-vit-large-patch14_feat_Phoenix14T/train").iterdir():
        np.save(f, np.load(f)[:, :1024])
    res = CliRunner().invoke(app, ["import-features", "--from", "spamo", str(folder), "--dataset", "toy", "--root",
                                   str(toy), "--cache", str(tmp_path / "cache"), "--split", "train"])
    assert isinstance(res.exception, SltPipeError), res.output  # pipeline.cli.main: one error line, exit 2
    out = " ".join((res.output + res.exception.render()).split())
    n = len(arrays["train"])
    assert f"import toy/train: none of its {n} videos has usable SpaMo files" in out, res.output
    assert f"{n} videos: {folder}/clip-vit-large-patch14_feat_Phoenix14T/train/" in out
    assert "spatial array of shape" in out and "expected [rows, 2048]" in out
    assert "skipped toy/train/" not in out and "Traceback" not in out
    assert not [p for p in (tmp_path / "cache/features").iterdir()]  # no entry, no partial, no lock
    cfg = cfg_of(tmp_path / "cache", toy, splits=["train"], features="imported:spamo")
    found, missing = find_selected(cfg, configured_dataset(cfg))
    assert missing == ["train"] and "slt-pipe import-features --from spamo" in missing_fix(cfg, missing)


# --------------------------------------------------------------------------- which entry train reads


def test_train_features_selects_the_newest_import_of_these_videos(tmp_path, toy, spamo):
    from pipeline.train_stage import find_features, train_inputs

    src, arrays = spamo
    folder = tmp_path / "in"
    shutil.copytree(src, folder)
    cfg = cfg_of(tmp_path / "cache", toy, features="imported:spamo")
    dataset = open_dataset("toy", toy, SPLITS)
    first, _ = run_import(cfg, folder)
    assert find_features(cfg, dataset) == ({s: e.dir for s, e in first.entries.items()}, [])
    vid = sorted(arrays["dev"])[0]  # a changed file is a new entry, and the newest is read
    np.save(folder / f"mae_feat_Phoenix14T/dev/{vid}_overlap-8.npy", arrays["dev"][vid][1] + 1)
    second, _ = run_import(cfg, folder)
    assert second.computed == ["dev"] and second.entries["dev"].key != first.entries["dev"].key
    assert find_features(cfg, dataset)[0]["dev"] == second.entries["dev"].dir
    # another dataset identity (every byte hashed) has no import: train names the import to run
    content = cfg_of(tmp_path / "cache", toy, fingerprint="content", features="imported:spamo")
    assert find_features(content, dataset) == ({}, SPLITS)
    with pytest.raises(CacheError) as e:
        train_inputs(content, dataset)
    assert f"slt-pipe import-features --from spamo {folder.resolve()} --name spamo --dataset toy" in e.value.render()
    assert find_features(cfg_of(tmp_path / "cache", toy), dataset)[1] == SPLITS  # 'extracted': not the import
    with pytest.raises(SltPipeError, match="neither 'extracted' nor 'imported:NAME'"):
        find_features(cfg_of(tmp_path / "cache", toy, features="spamo"), dataset)


# --------------------------------------------------------------------------- the proof on the same inputs


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory):
    """CLIP and VideoMAE snapshots with the paper's widths (1024, so S2 gives SpaMo's 2048) and one layer,
    32 px inputs, weights `scramble`d so the features depend on the frames."""
    from extract.vision.assets import save_clip_snapshot, save_videomae_snapshot

    d = tmp_path_factory.mktemp("snaps")
    clip = save_clip_snapshot(scramble_weights(random_clip(1024, 1, 16, 256, 16, 32), 31), d / "clip")
    mae = save_videomae_snapshot(scramble_weights(random_videomae(1024, 1, 16, 256, 32), 32), d / "mae",
                                 pretraining=False)
    return clip, mae


@pytest.mark.slow  # 19 s: the default run is near its 10-minute budget; CI runs it with -m slow
def test_spamos_procedure_imports_to_what_extract_computes_and_trains(tmp_path, toy, snapshots):
    """SpaMo-layout files made by SpaMo's procedure (transformers' classes, tests/helpers.py) from the toy's
    PHOENIX-layout frames; imported, they equal `extract --profile paper` on the same snapshots (cosine >=
    0.999 per vector, while another video's vectors are not); then train and evaluate read the import."""
    import torch
    from transformers import CLIPVisionModel, VideoMAEModel

    from pipeline import extract_stage, train_stage
    from pipeline.embed_stage import embed_targets

    torch.set_num_threads(2)
    clip, mae = snapshots
    dataset = open_dataset("toy", toy, SPLITS)
    cm, vm = CLIPVisionModel.from_pretrained(clip).eval(), VideoMAEModel.from_pretrained(mae).eval()
    for split, samples in dataset.samples.items():
        for s in samples:
            for path, array in zip(export_paths(tmp_path / "spamo", "toy", split, s.id),
                                   (spamo_spatial(clip, s.frames.paths(), model=cm),
                                    spamo_motion(mae, s.frames.paths(), model=vm))):
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, array)
    cache = tmp_path / "cache"
    imported, _ = run_import(cfg_of(cache, toy), tmp_path / "spamo")
    assert not imported.failures
    paper = build_config({"profile": "paper", "dataset": {"name": "toy", "root": str(toy), "splits": SPLITS},
                          "cache": {"dir": str(cache)},
                          "extract": {"clip": {"weights": str(clip), "arch": "snapshot"}, "workers": 0,
                                      "videomae": {"weights": str(mae), "arch": "snapshot"}, "dtype": "float32"}})
    extracted = extract_stage.extract(paper, Console(stderr=True, quiet=True))
    worst = {"spatial": 1.0, "motion": 1.0}
    for split in SPLITS:
        mine, theirs = FeatureReader(imported.entries[split].dir), FeatureReader(extracted.entries[split].dir)
        assert sorted(mine.ids) == sorted(theirs.ids) == sorted(s.id for s in dataset.samples[split])
        for vid in mine.ids:
            for name, a, b in zip(("spatial", "motion"), mine.get_stored(vid), theirs.get_stored(vid)):
                assert a.shape == b.shape and a.shape[1] == {"spatial": 2048, "motion": 1024}[name]
                worst[name] = min(worst[name], float(cosines(a, b).min()))
    assert worst["spatial"] >= 0.999 and worst["motion"] >= 0.999, worst
    # the extracted set (two stream entries) is SpaMo's recipe: it exports, as the bytes it stores
    from pipeline.spamo_stage import export_features

    train = extracted.entries["train"]
    export_features(paper, tmp_path / "exported", keys=[train.key], console=Console(stderr=True, quiet=True))
    vid = sorted(FeatureReader(train.dir).ids)[0]
    for path, stored in zip(export_paths(tmp_path / "exported", "toy", "train", vid), FeatureReader(train.dir).get_stored(vid)):
        assert np.load(path).tobytes() == stored.tobytes()
    ids = sorted(FeatureReader(imported.entries["train"].dir).ids)
    a, b = FeatureReader(imported.entries["train"].dir).get_stored(ids[0]), \
        FeatureReader(extracted.entries["train"].dir).get_stored(ids[1])
    n = min(len(a[0]), len(b[0]))
    control = float(cosines(a[0][:n], b[0][:n]).min())
    print(f"SpaMo's procedure, imported, vs extract --profile paper: min cosine {worst}; another video: {control:.4f}")
    assert control < 0.999  # the check tells videos apart: it can fail
    # train and evaluate on the imported entry (tiny text models; the features are SpaMo's widths)
    run = tmp_path / "run"
    cfg = build_config({"profile": "tiny", "dataset": {"name": "toy", "root": str(toy), "splits": SPLITS},
                        "cache": {"dir": str(cache)},
                        "embed": {"langs": ["deu_Latn"], "device": "cpu", "tiny_sonar_steps": 20},
                        "train": {"features": "imported:spamo", "steps": 3, "eval_every": 0, "out": str(run),
                                  "device": "cpu", "batch_size": 4}})
    quiet = Console(stderr=True, quiet=True)
    embed_targets(cfg, quiet)
    result = train_stage.train(cfg, console=quiet)
    assert result.step == 3
    recorded = json.loads((run / "inputs.json").read_text())["features"]
    assert recorded == {s: str(e.dir) for s, e in imported.entries.items()}
    scores = train_stage.evaluate(run, split="test", langs="deu", blaser=[], console=quiet)
    assert "deu_Latn" in scores
