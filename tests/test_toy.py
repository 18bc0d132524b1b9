"""The toy corpus: byte-identical per seed, PHOENIX layout, held-out combinations, real signal."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from cache.errors import DatasetError
from extract.datasets import open_dataset
from extract.datasets.toy import (
    GLOSSES,
    LOOKS,
    REGIONS,
    TEMPS,
    TIMES,
    WEATHER,
    ToyVideo,
    make_toy,
    plan_corpus,
    render_video,
    sentence,
)
from extract.vision.decode import read_frames

LANGS = ("deu_Latn", "eng_Latn", "fra_Latn")


def tree_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def toy20(toy_corpus) -> Path:
    """The 20-video toy corpus, seed 0 (read only)."""
    return toy_corpus(20)


def test_same_seed_is_byte_identical_and_seed_matters(tmp_path, toy20):
    again = tmp_path / "again"
    make_toy(again, videos=20, seed=0, workers=1)  # a different thread count must not matter
    first = tree_hashes(toy20)
    assert first == tree_hashes(again)
    assert len([p for p in first if p.endswith(".png")]) > 20 * 15
    other = tmp_path / "other"
    make_toy(other, videos=20, seed=1)
    second = tree_hashes(other)
    assert set(first) != set(second) or first != second
    shared = set(first) & set(second)
    assert any(first[p] != second[p] for p in shared)


def test_layout_is_the_phoenix_release(toy20):
    root = toy20 / "PHOENIX-2014-T-release-v3" / "PHOENIX-2014-T"
    for split in ("train", "dev", "test"):
        csv = root / f"annotations/manual/PHOENIX-2014-T.{split}.corpus.csv"
        lines = csv.read_text(encoding="utf-8").splitlines()
        assert lines[0] == "name|video|start|end|speaker|orth|translation"
        name, video, start, end, speaker, orth, text = lines[1].split("|")
        assert video == f"{name}/1/*.png" and start == end == "-1" and speaker.startswith("Signer")
        assert orth.isupper() and text == text.lower()
        frames = sorted((root / "features/fullFrame-210x260px" / split / name).iterdir())
        assert frames[0].name == "images0001.png"


def test_reader_reads_it_from_every_root_level(toy20):
    release = toy20 / "PHOENIX-2014-T-release-v3"
    datasets = [open_dataset("toy", toy20, ["train", "dev", "test"]),
                open_dataset("phoenix", release, ["train", "dev", "test"]),
                open_dataset("phoenix", release / "PHOENIX-2014-T", ["train", "dev", "test"])]
    counts = [{k: len(v) for k, v in d.samples.items()} for d in datasets]
    assert counts[0] == counts[1] == counts[2] == {"train": 16, "dev": 2, "test": 2}
    ds = datasets[0]
    assert ds.source_lang == "deu_Latn"
    for split, samples in ds.samples.items():
        for s in samples:
            assert {lang for lang in LANGS if s.id in ds.references[split][lang]} == set(LANGS)
            assert ds.references[split]["deu_Latn"][s.id] == s.text
    assert datasets[1].fingerprint("dev") == datasets[2].fingerprint("dev")


def test_dev_and_test_hold_out_combinations_but_not_glosses(toy20):
    ds = open_dataset("toy", toy20, ["train", "dev", "test"])
    train = {s.gloss for s in ds.samples["train"]}
    for split in ("dev", "test"):
        assert all(s.gloss not in train for s in ds.samples[split])
    train_glosses = {g for seq in train for g in seq.split()}
    assert train_glosses == set(GLOSSES)
    assert 20 <= len(GLOSSES) <= 30


def test_plan_is_80_10_10_and_deterministic():
    plan = plan_corpus(240, 3)
    assert plan == plan_corpus(240, 3) and plan != plan_corpus(240, 4)
    sizes = {s: sum(v.split == s for v in plan) for s in ("train", "dev", "test")}
    assert sizes == {"train": 192, "dev": 24, "test": 24}


def test_every_slot_value_changes_every_language():
    base = (0, 0, 0, 1)
    for slot, values in enumerate((TIMES, REGIONS, WEATHER, [None] + TEMPS)):
        texts = []
        for v in range(len(values)):
            combo = list(base)
            combo[slot] = v
            texts.append(sentence(tuple(combo)))
        for key in ("orth",) + LANGS:
            assert len({t[key] for t in texts}) == len(values), (slot, key)
    s = sentence((1, 0, 0, 0))
    assert s == {"orth": "MORGEN NORD REGEN", "deu_Latn": "morgen gibt es im norden regen",
                 "eng_Latn": "tomorrow there will be rain in the north",
                 "fra_Latn": "demain il y aura de la pluie dans le nord"}


def test_looks_are_distinct():
    assert len({lk.colour for lk in LOOKS.values()}) == len(GLOSSES)
    assert len({(lk.shape, lk.path) for lk in LOOKS.values()}) == len(GLOSSES)


def _vivid_pixels(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frame index, rgb) of the saturated pixels: the signer and background are greyish,
    every sign colour is vivid, so only these need comparing (keeps the test fast)."""
    spread = frames.max(axis=-1) - frames.min(axis=-1)
    t, y, x = np.nonzero(spread > 100)
    return t, frames[t, y, x].astype(np.int16)


def test_video_shows_the_signs_of_its_sentence_in_order():
    for video in plan_corpus(20, 0)[:6]:
        frames = render_video(video, 0)
        assert frames.dtype == np.uint8 and frames.shape[1:] == (210, 260, 3)
        glosses = sentence(video.combo)["orth"].split()
        assert 6 * len(glosses) <= len(frames) <= 10 * len(glosses)
        t, rgb = _vivid_pixels(frames)
        firsts = []
        for g in GLOSSES:
            close = np.abs(rgb - np.asarray(LOOKS[g].colour, np.int16)).max(axis=-1) <= 16
            hits = np.flatnonzero(np.bincount(t[close], minlength=len(frames)) >= 30)
            if g in glosses:
                assert 6 <= len(hits) <= 10, (video.name, g, hits)
                firsts.append(hits[0])
            else:
                assert len(hits) == 0, (video.name, g, hits)
        assert firsts == sorted(firsts)


def test_jitter_makes_videos_of_one_sentence_differ():
    video = plan_corpus(20, 0)[0]
    twin = ToyVideo(name="twin", split=video.split, combo=video.combo, speaker=video.speaker, index=video.index + 1000)
    fa, fb = render_video(video, 0), render_video(twin, 0)
    assert fa.shape != fb.shape or not np.array_equal(fa, fb)


def test_reader_frames_match_the_renderer(toy20):
    ds = open_dataset("toy", toy20, ["dev"])
    sample = ds.samples["dev"][0]
    video = next(v for v in plan_corpus(20, 0) if v.name == sample.id)
    assert np.array_equal(read_frames(sample.frames), render_video(video, 0))


def test_too_few_videos_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="at least"):
        make_toy(tmp_path, videos=3)
