"""Dataset readers: PHOENIX layout (on the toy), validation errors, fingerprints, CSL-Daily, How2Sign."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cache.errors import DatasetError
from extract.datasets import PngFolder, VideoFile, open_dataset, validate_frames
from extract.datasets.base import list_frame_files, natural_key
from extract.vision.decode import read_frames
from helpers import CSL, PHX, SPLITS, csv_of, frames_of, write_csl, write_how2sign


@pytest.fixture()
def phoenix_copy(toy_corpus, tmp_path) -> Path:
    """A private copy of the 20-video toy corpus that a test may damage; returns PHOENIX-2014-T/."""
    shutil.copytree(toy_corpus(20), tmp_path / "toy")
    return tmp_path / "toy" / PHX


def first_name(root: Path, split: str) -> str:
    return csv_of(root, split).read_text(encoding="utf-8").splitlines()[1].split("|")[0]


# --------------------------------------------------------------------------- PHOENIX reader


def test_unknown_dataset_lists_valid_names(tmp_path):
    with pytest.raises(DatasetError) as e:
        open_dataset("phoenix-2015", tmp_path, SPLITS)
    for name in ("phoenix", "toy", "csl-daily", "how2sign"):
        assert name in str(e.value)


def test_not_a_release_names_the_root(tmp_path):
    with pytest.raises(DatasetError) as e:
        open_dataset("phoenix", tmp_path, SPLITS)
    assert e.value.path == str(tmp_path) and e.value.fix


def test_reads_samples_texts_glosses_and_translations(phoenix_copy):
    ds = open_dataset("phoenix", phoenix_copy, SPLITS)
    assert ds.root == phoenix_copy and ds.name == "phoenix"
    s = ds.samples["dev"][0]
    assert isinstance(s.frames, PngFolder) and s.frames.files[0] == "images0001.png"
    assert s.gloss and s.gloss.isupper() and s.text.islower()
    assert set(ds.references["dev"]) == {"deu_Latn", "eng_Latn", "fra_Latn"}
    assert [x.id for x in ds.samples["train"]] == sorted(x.id for x in ds.samples["train"])
    assert csv_of(phoenix_copy, "dev") in ds.annotation_files


def test_only_requested_splits_are_read(phoenix_copy):
    csv_of(phoenix_copy, "test").unlink()
    ds = open_dataset("phoenix", phoenix_copy, ["train", "dev"])
    assert set(ds.samples) == {"train", "dev"}


def test_missing_split_csv_is_an_error(phoenix_copy):
    csv_of(phoenix_copy, "test").unlink()
    with pytest.raises(DatasetError) as e:
        open_dataset("phoenix", phoenix_copy, SPLITS)
    assert e.value.path == str(csv_of(phoenix_copy, "test"))


def test_frames_in_name_slash_1_are_accepted(phoenix_copy):
    name = first_name(phoenix_copy, "dev")
    folder = frames_of(phoenix_copy, "dev", name)
    tmp = folder.parent / (name + ".tmp")
    folder.rename(tmp)
    folder.mkdir()
    tmp.rename(folder / "1")
    ds = open_dataset("phoenix", phoenix_copy, SPLITS)
    sample = next(s for s in ds.samples["dev"] if s.id == name)
    assert sample.frames.dir == folder / "1"
    assert read_frames(sample.frames).shape[0] == len(sample.frames.files)


@pytest.mark.parametrize("bad_row, what", [
    ("only|three|columns", "columns"),
    ("|x/1/*.png|-1|-1|Signer01|MORGEN|morgen", "empty name"),
    ("newname|x/1/*.png|-1|-1|Signer01|MORGEN|", "empty translation"),
])
def test_malformed_row_names_file_and_line(phoenix_copy, bad_row, what):
    path = csv_of(phoenix_copy, "dev")
    lines = path.read_text(encoding="utf-8").splitlines()
    lines.insert(2, bad_row)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError) as e:
        open_dataset("phoenix", phoenix_copy, SPLITS)
    assert e.value.path == str(path)
    assert "line 3" in e.value.problem and what in e.value.problem
    assert e.value.fix


def test_duplicate_name_names_both_lines(phoenix_copy):
    path = csv_of(phoenix_copy, "train")
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(lines + [lines[1]]) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError) as e:
        open_dataset("phoenix", phoenix_copy, SPLITS)
    assert e.value.path == str(path) and f"line {len(lines) + 1}" in e.value.problem
    assert "duplicate" in e.value.problem and "line 2" in e.value.problem


def test_bad_header_is_an_error(phoenix_copy):
    path = csv_of(phoenix_copy, "dev")
    path.write_text(path.read_text(encoding="utf-8").replace("name|video", "id|video", 1), encoding="utf-8")
    with pytest.raises(DatasetError, match="line 1"):
        open_dataset("phoenix", phoenix_copy, SPLITS)


# A missing or empty frame folder no longer refuses the split: see tests/test_bad_samples.py.


def test_bad_translations_json_is_an_error(phoenix_copy):
    path = phoenix_copy / "annotations/manual/PHOENIX-2014-T.dev.translations.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(DatasetError) as e:
        open_dataset("phoenix", phoenix_copy, SPLITS)
    assert e.value.path == str(path)


def test_translations_are_optional(phoenix_copy):
    (phoenix_copy / "annotations/manual/PHOENIX-2014-T.dev.translations.json").unlink()
    ds = open_dataset("phoenix", phoenix_copy, SPLITS)
    assert set(ds.references["dev"]) == {"deu_Latn"}
    assert "eng_Latn" in ds.references["train"]


def test_frame_files_sort_numerically(tmp_path):
    for i in (1, 2, 10, 9, 100):
        (tmp_path / f"images{i}.png").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not a frame")
    assert list_frame_files(tmp_path) == ("images1.png", "images2.png", "images9.png", "images10.png", "images100.png")
    assert natural_key("a2") < natural_key("a10")


def test_corrupt_png_is_reported_by_validate_frames_and_read_frames(phoenix_copy):
    ds = open_dataset("phoenix", phoenix_copy, SPLITS)
    sample = ds.samples["dev"][0]
    bad = sample.frames.dir / sample.frames.files[3]
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    assert validate_frames(ds, deep=False) == []
    problems = validate_frames(ds, deep=True)
    assert [(sid, path) for sid, path, _ in problems] == [(sample.id, bad)]
    assert problems[0][2]
    with pytest.raises(DatasetError) as e:
        read_frames(sample.frames)
    assert e.value.path == str(bad) and e.value.fix


def test_missing_frame_file_is_reported(phoenix_copy):
    ds = open_dataset("phoenix", phoenix_copy, ["dev"])
    sample = ds.samples["dev"][-1]
    gone = sample.frames.dir / sample.frames.files[0]
    gone.unlink()
    assert [(sid, p) for sid, p, _ in validate_frames(ds, deep=False)] == [(sample.id, gone)]
    with pytest.raises(DatasetError) as e:
        read_frames(sample.frames)
    assert e.value.path == str(gone)


# --------------------------------------------------------------------------- fingerprints


def test_fingerprint_survives_a_copy_to_another_dir(phoenix_copy, tmp_path):
    copy = tmp_path / "elsewhere" / "deeper"
    shutil.copytree(phoenix_copy.parent.parent, copy)
    a = open_dataset("phoenix", phoenix_copy, SPLITS)
    b = open_dataset("toy", copy, SPLITS)
    for split in SPLITS:
        fa, fb = a.fingerprint(split), b.fingerprint(split)
        assert json.dumps(fa, sort_keys=True)  # JSON-able
        fa.pop("dataset"), fb.pop("dataset")
        assert fa == fb
        assert a.text_fingerprint(split) == b.text_fingerprint(split)
    assert a.fingerprint("dev", "content") == open_dataset("phoenix", copy, SPLITS).fingerprint("dev", "content")


def test_fingerprint_follows_frame_sizes_and_content(phoenix_copy):
    before = open_dataset("phoenix", phoenix_copy, SPLITS)
    stat, content = before.fingerprint("dev"), before.fingerprint("dev", "content")
    train, text = before.fingerprint("train"), before.text_fingerprint("dev")
    frame = before.samples["dev"][0].frames
    path = frame.dir / frame.files[0]
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # same size, different bytes
    path.write_bytes(bytes(data))
    same_size = open_dataset("phoenix", phoenix_copy, SPLITS)
    assert same_size.fingerprint("dev") == stat
    assert same_size.fingerprint("dev", "content") != content
    path.write_bytes(bytes(data) + b"\0")
    grown = open_dataset("phoenix", phoenix_copy, SPLITS)
    assert grown.fingerprint("dev") != stat
    assert grown.fingerprint("train") == train
    assert grown.text_fingerprint("dev") == text


def test_fingerprint_and_text_fingerprint_follow_sentences(phoenix_copy):
    before = open_dataset("phoenix", phoenix_copy, SPLITS)
    fp = {split: before.fingerprint(split) for split in SPLITS}
    text = {split: before.text_fingerprint(split) for split in SPLITS}
    path = csv_of(phoenix_copy, "test")
    lines = path.read_text(encoding="utf-8").splitlines()
    cols = lines[1].split("|")
    cols[6] = "übermorgen gibt es überall schnee"
    lines[1] = "|".join(cols)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    after = open_dataset("phoenix", phoenix_copy, SPLITS)
    assert after.fingerprint("test") != fp["test"]
    assert after.text_fingerprint("test") != text["test"]
    assert after.text_fingerprint("dev") == text["dev"]
    assert after.fingerprint("dev") == fp["dev"]


# --------------------------------------------------------------------------- CSL-Daily


@pytest.mark.parametrize("header", [True, False])
def test_csl_daily_reader(tmp_path, header):
    root = write_csl(tmp_path / "CSL-Daily", CSL, header=header)
    ds = open_dataset("csl-daily", tmp_path, SPLITS)  # the parent folder works too
    assert ds.source_lang == "zho_Hans" and ds.root == root
    assert [s.id for s in ds.samples["train"]] == ["S000000_P0000_T00", "S000001_P0000_T00"]
    s = ds.samples["dev"][0]
    assert s.text == "今天天气很好2" and s.gloss == "今天 天气 好"
    assert ds.references["dev"]["zho_Hans"][s.id] == s.text
    assert read_frames(s.frames).shape == (4, 32, 24, 3)
    assert ds.fingerprint("dev")["samples"] == 1


def test_csl_daily_errors(tmp_path):
    root = write_csl(tmp_path, CSL)
    split_file = root / "sentence_label/split_1.txt"
    good = split_file.read_text(encoding="utf-8")
    split_file.write_text(good + "S000009_P0000_T00|train\n", encoding="utf-8")
    with pytest.raises(DatasetError) as e:
        open_dataset("csl-daily", root, SPLITS)
    assert e.value.path == str(split_file) and "line 6" in e.value.problem
    split_file.write_text(good + "S000001_P0000_T00 train\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="line 6"):
        open_dataset("csl-daily", root, SPLITS)
    split_file.write_text(good, encoding="utf-8")
    (root / "sentence_label/csl2020ct_v2.pkl").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError) as e:
        open_dataset("csl-daily", root, ["train"])
    assert e.value.path == str(root / "sentence_label/csl2020ct_v2.pkl")


# --------------------------------------------------------------------------- How2Sign


def test_how2sign_reader_clips_and_cut_videos(tmp_path):
    root = write_how2sign(tmp_path)
    ds = open_dataset("how2sign", root, SPLITS)
    assert ds.source_lang == "eng_Latn" and {k: len(v) for k, v in ds.samples.items()} == {"train": 3, "dev": 1, "test": 1}
    by_id = {s.id: s for s in ds.samples["train"]}
    clip = by_id["abc_0-1-rgb_front"]
    assert clip.frames == VideoFile(root / "train/rgb_front/clips/abc_0-1-rgb_front.mp4")
    assert by_id["abc_1-1-rgb_front"].text == 'Say "hello" first.'
    cut = by_id["xyz_0-1-rgb_front"].frames
    assert cut == VideoFile(root / "videos/xyz-1-rgb_front.mp4", 0.5, 1.5)
    assert read_frames(clip.frames).shape == (16, 64, 64, 3)
    assert read_frames(cut).shape[0] == 24
    assert ds.samples["dev"][0].split == "dev" and ds.samples["test"][0].frames.start == 0.0
    assert ds.references["dev"]["eng_Latn"] == {"val_0-1-rgb_front": "A validation sentence."}
    fp = ds.fingerprint("train")
    assert fp["samples"] == 3 and fp["annotations"] == {"how2sign_realigned_train.csv": fp["annotations"]["how2sign_realigned_train.csv"]}


def test_how2sign_errors(tmp_path):
    root = write_how2sign(tmp_path)
    csv = root / "how2sign_realigned_train.csv"
    good = csv.read_text(encoding="utf-8")
    csv.write_text(good + "abc\tonly three\n", encoding="utf-8")
    with pytest.raises(DatasetError) as e:
        open_dataset("how2sign", root, ["train"])
    assert e.value.path == str(csv) and "line 5" in e.value.problem
    csv.write_text(good + "\t".join(["abc", "abc-1-rgb_front", "abc_0", "abc_0-1-rgb_front", "0", "1", "Dup."]) + "\n",
                   encoding="utf-8")
    with pytest.raises(DatasetError, match="line 5: duplicate SENTENCE_NAME"):
        open_dataset("how2sign", root, ["train"])
    csv.write_text(good.replace("\t", ","), encoding="utf-8")
    with pytest.raises(DatasetError, match="tab-separated"):
        open_dataset("how2sign", root, ["train"])
    with pytest.raises(DatasetError, match="unknown How2Sign split"):
        open_dataset("how2sign", root, ["validation"])
