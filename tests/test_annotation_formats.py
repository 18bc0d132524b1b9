"""Malformed annotation files in every format: one DatasetError naming the file, the line (or
pickle entry) and a fix; a UTF-8 BOM is accepted; the pasteable fixes really repair the file.

Files are written in the real on-disk layouts without frames or videos (those samples are
only skipped-and-listed), so the whole module runs in about a second.
"""

from __future__ import annotations

import csv
import io
import os
import pickle
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from cache.errors import DatasetError
from extract.datasets import open_dataset
from extract.datasets.toy import make_toy
from helpers import CSL, H2S_HEADER, SPLITS, csv_of, h2s_row, write_csl


@dataclass(frozen=True)
class Case:
    id: str
    damage: Callable[[Path], Path]
    """Breaks one annotation file under the dataset root; returns the file the error must name."""
    where: str | None
    """The line or entry the problem must name ("line 3", "info[1]"); None for a whole-file problem."""
    said: str
    """What the problem must say."""
    fix: str
    """Part of the fix."""
    splits: tuple[str, ...] = tuple(SPLITS)


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def write_lines(path: Path, lines: list[str], encoding: str = "utf-8") -> Path:
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def edit(path: Path, change: Callable[[list[str]], list[str]], encoding: str = "utf-8") -> Path:
    return write_lines(path, change(read_lines(path)), encoding)


def overwrite(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def with_line(index: int, line: str | Callable[[str], str], insert: bool = False) -> Callable[[list[str]], list[str]]:
    """A change that replaces (or inserts before) lines[index]; `line` may rewrite the old one."""
    def change(lines: list[str]) -> list[str]:
        new = line(lines[index]) if callable(line) else line
        return lines[:index] + [new] + lines[index + (0 if insert else 1):]
    return change


def set_column(row: str, sep: str, col: int, value: str) -> str:
    cols = row.split(sep)
    cols[col] = value
    return sep.join(cols)


def expect_error(root: Path, name: str, case: Case) -> DatasetError:
    path = case.damage(root)
    with pytest.raises(DatasetError) as e:
        open_dataset(name, root, list(case.splits))
    err = e.value
    assert type(err) is DatasetError
    assert err.path == str(path), err
    if case.where is not None:
        assert case.where in err.problem, err
    assert case.said in err.problem, err
    assert err.fix and case.fix in err.fix, err
    assert str(err).startswith(f"{path}: ") and f"\n  fix: {err.fix}" in str(err)
    return err


def run_fix(fix: str, after: str) -> None:
    """Run the shell command that follows `after` in a fix, as a user pasting it would."""
    command = fix.split(after, 1)[1]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["bash", "-c", command], check=True, env=env, timeout=30)


# --------------------------------------------------------------------------- PHOENIX-2014-T and the toy


@pytest.fixture()
def phx(tmp_path) -> Path:
    """The toy's annotation files in the PHOENIX-2014-T layout (no frames); returns PHOENIX-2014-T/."""
    return make_toy(tmp_path, videos=20, seed=0, frames=False)


def translations(root: Path, split: str) -> Path:
    return root / f"annotations/manual/PHOENIX-2014-T.{split}.translations.json"


def dev_row(root: Path, k: int = 1) -> str:
    return read_lines(csv_of(root, "dev"))[k]


def dev_name(root: Path, k: int = 1) -> str:
    return dev_row(root, k).split("|")[0]


def latin1_row(root: Path) -> Path:
    """Line 3 of the dev CSV pasted in from a Latin-1 file; the other lines stay UTF-8."""
    path = edit(csv_of(root, "dev"), with_line(2, lambda r: set_column(r, "|", 6, "morgen wird es heiß")))
    lines = read_lines(path)
    return overwrite(path, b"\n".join([x.encode("latin1" if i == 2 else "utf-8") for i, x in enumerate(lines)]) + b"\n")


PHOENIX_CASES = [
    Case("comma-separated", lambda r: edit(csv_of(r, "train"), lambda ls: [x.replace("|", ",") for x in ls]),
         "line 1", "the header is ','-separated, expected '|'-separated", "python3 -c"),
    Case("tab-separated", lambda r: edit(csv_of(r, "train"), lambda ls: [x.replace("|", "\t") for x in ls]),
         "line 1", "the header is tab-separated, expected '|'-separated", "python3 -c"),
    Case("missing column in the header",
         lambda r: edit(csv_of(r, "dev"), lambda ls: ["|".join(x.split("|")[:4] + x.split("|")[5:]) for x in ls]),
         "line 1", "header lacks column speaker", "name|video|start|end|speaker|orth|translation"),
    Case("renamed column", lambda r: edit(csv_of(r, "dev"), with_line(0, lambda h: h.replace("name|", "id|"))),
         "line 1", "header lacks column name", "restore the file"),
    Case("missing column in a row", lambda r: edit(csv_of(r, "dev"), with_line(2, lambda x: x.rsplit("|", 1)[0])),
         "line 3", "6 columns, expected 7 '|'-separated columns", "line 3"),
    Case("row with another delimiter", lambda r: edit(csv_of(r, "dev"), with_line(2, lambda x: x.replace("|", ","))),
         "line 3", "the row is ','-separated, expected 7 '|'-separated columns", "line 3"),
    Case("duplicate id", lambda r: edit(csv_of(r, "dev"), lambda ls: ls[:2] + [ls[1]] + ls[2:]),
         "line 3", "duplicate name", "delete line 3 or line 2"),
    Case("sample in two splits", lambda r: edit(csv_of(r, "test"), with_line(1, dev_row(r), insert=True)),
         "line 2", "also appears in", "a sample belongs to one split"),
    Case("empty split", lambda r: edit(csv_of(r, "dev"), lambda ls: ls[:1]),
         "line 1", "a header and no rows (an empty split)", "--split"),
    Case("empty file", lambda r: overwrite(csv_of(r, "dev"), b""),
         "line 1", "the file is empty", "name|video|start|end|speaker|orth|translation"),
    Case("non-UTF-8", latin1_row, "line 3", "not UTF-8 text (byte 0xdf at byte offset", "iconv -f latin1 -t utf-8"),
    Case("empty translation", lambda r: edit(csv_of(r, "dev"), with_line(2, lambda x: set_column(x, "|", 6, " "))),
         "line 3", "empty translation for", "last column of line 3"),
    Case("empty name", lambda r: edit(csv_of(r, "dev"), with_line(2, lambda x: set_column(x, "|", 0, ""))),
         "line 3", "empty name", "line 3"),
    Case("translations: invalid JSON", lambda r: write_lines(translations(r, "dev"), ["{", ' "a": {},', " oops", "}"]),
         "line 3, column 2", "not valid JSON", "valid JSON"),
    Case("translations: non-UTF-8",
         lambda r: write_lines(translations(r, "dev"), ["{", ' "x": {"fra_Latn": "sur la côte"}', "}"], "latin1"),
         "line 2", "not UTF-8 text (byte 0xf4", "iconv -f latin1 -t utf-8"),
    Case("translations: duplicate id",
         lambda r: write_lines(translations(r, "dev"), ['{"a": {"eng_Latn": "x"}, "a": {"eng_Latn": "y"}}']),
         "entry 'a'", "appears twice", "keep one"),
    Case("translations: empty text",
         lambda r: write_lines(translations(r, "dev"), [f'{{"{dev_name(r)}": {{"eng_Latn": ""}}}}']),
         "entry 'toy", "empty eng_Latn text", "write the eng_Latn sentence"),
]


@pytest.mark.parametrize("name", ["phoenix", "toy"])
@pytest.mark.parametrize("case", PHOENIX_CASES, ids=lambda c: c.id)
def test_phoenix_malformed_annotation_is_one_clear_error(phx, name, case):
    expect_error(phx, name, case)


def test_phoenix_non_utf8_names_the_exact_byte(phx):
    path = latin1_row(phx)
    data = path.read_bytes()
    offset = data.index(b"\xdf")
    line_start = data.rindex(b"\n", 0, offset) + 1
    with pytest.raises(DatasetError) as e:
        open_dataset("phoenix", phx, SPLITS)
    assert e.value.problem.startswith(f"line 3: not UTF-8 text (byte 0xdf at byte offset {offset} of the file, "
                                      f"byte {offset - line_start + 1} of the line)")


def test_phoenix_bom_crlf_is_accepted(phx):
    clean = open_dataset("phoenix", phx, SPLITS)
    for split in SPLITS:
        path = csv_of(phx, split)
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
        tj = translations(phx, split)
        tj.write_bytes(b"\xef\xbb\xbf" + tj.read_bytes())
    again = open_dataset("phoenix", phx, SPLITS)
    assert again.samples == clean.samples and again.references == clean.references


@pytest.mark.parametrize("sep", [",", "\t"])
def test_phoenix_delimiter_fix_converts_the_file(phx, sep):
    clean = open_dataset("phoenix", phx, SPLITS)
    path = edit(csv_of(phx, "train"), lambda ls: [x.replace("|", sep) for x in ls])
    with pytest.raises(DatasetError) as e:
        open_dataset("phoenix", phx, SPLITS)
    run_fix(e.value.fix, "convert it: ")
    assert open_dataset("phoenix", phx, SPLITS).samples == clean.samples
    assert not Path(f"{path}.fixed").exists()


def test_phoenix_iconv_fix_converts_a_latin1_file(phx):
    clean = open_dataset("phoenix", phx, SPLITS)
    path = csv_of(phx, "dev")
    overwrite(path, path.read_text(encoding="utf-8").encode("latin1"))
    with pytest.raises(DatasetError) as e:
        open_dataset("phoenix", phx, SPLITS)
    run_fix(e.value.fix, "convert it to UTF-8: ")
    assert open_dataset("phoenix", phx, SPLITS).samples == clean.samples
    assert any(not s.text.isascii() for s in clean.samples["dev"])  # the conversion had work to do


# --------------------------------------------------------------------------- How2Sign


def h2s_csv(root: Path, s: str) -> Path:
    return root / f"how2sign_realigned_{s}.csv"


@pytest.fixture()
def h2s(tmp_path) -> Path:
    """Realigned CSVs of the three splits in the release's layout (no videos)."""
    rows = {"train": [h2s_row("abc", 0, 0.0, 0.5, "Hi, I'm going to show you knots."),
                      h2s_row("abc", 1, 0.5, 1.0, 'Say "hello" first.'),
                      h2s_row("xyz", 0, 0.5, 1.5, "This one is cut from the full video.")],
            "val": [h2s_row("val", 0, 0.0, 0.6, "A validation sentence."), h2s_row("val", 1, 0.6, 1.2, "Another.")],
            "test": [h2s_row("tst", 0, 0.0, 0.6, "A test sentence.")]}
    for s, lines in rows.items():
        write_lines(h2s_csv(tmp_path, s), [H2S_HEADER] + lines)
    return tmp_path


def h2s_edit(s: str, change: Callable[[list[str]], list[str]], encoding: str = "utf-8") -> Callable[[Path], Path]:
    return lambda root: edit(h2s_csv(root, s), change, encoding)


def h2s_times(start: str, end: str) -> Callable[[list[str]], list[str]]:
    return with_line(1, lambda x: set_column(set_column(x, "\t", 4, start), "\t", 5, end))


H2S_CASES = [
    Case("comma-separated", h2s_edit("train", lambda ls: [x.replace("\t", ",") for x in ls]),
         "line 1", "the header is ','-separated, expected tab-separated", "python3 -c"),
    Case("missing column", h2s_edit("val", lambda ls: ["\t".join(x.split("\t")[:5] + x.split("\t")[6:]) for x in ls]),
         "line 1", "header lacks column END_REALIGNED", "separated by tabs"),
    Case("missing column in a row", h2s_edit("val", with_line(2, lambda x: x.rsplit("\t", 1)[0])),
         "line 3", "6 columns, expected 7 tab-separated columns", "line 3"),
    Case("row with another delimiter", h2s_edit("val", with_line(2, lambda x: x.replace("\t", ","))),
         "line 3", "the row is ','-separated, expected 7 tab-separated columns", "line 3"),
    Case("duplicate id", h2s_edit("train", lambda ls: ls[:2] + [ls[1]] + ls[2:]),
         "line 3", "duplicate SENTENCE_NAME 'abc_0-1-rgb_front'", "delete line 3 or line 2"),
    Case("sample in two splits", h2s_edit("test", lambda ls: ls + [h2s_row("abc", 1, 0.5, 1.0, "Moved.")]),
         "line 3", "also appears in", "a sentence belongs to one split"),
    Case("empty split", h2s_edit("val", lambda ls: ls[:1]),
         "line 1", "a header and no rows (an empty split)", "--split"),
    Case("empty file", lambda r: overwrite(h2s_csv(r, "val"), b""),
         "line 1", "the file is empty", "VIDEO_ID VIDEO_NAME"),
    Case("non-UTF-8", h2s_edit("val", with_line(2, lambda x: set_column(x, "\t", 6, "Café au lait.")), "latin1"),
         "line 3", "not UTF-8 text (byte 0xe9 at byte offset", "iconv -f latin1 -t utf-8"),
    Case("non-numeric START", h2s_edit("test", h2s_times("abc", "0.6")),
         "line 2", "START_REALIGNED 'abc' / END_REALIGNED '0.6': not numbers", "in seconds"),
    Case("empty END", h2s_edit("test", h2s_times("0.0", "")), "line 2", "not numbers", "in seconds"),
    Case("non-finite END", h2s_edit("test", h2s_times("0.0", "inf")), "line 2", "not finite", "in seconds"),
    Case("reversed START/END", h2s_edit("test", h2s_times("1.5", "0.5")),
         "line 2", "END_REALIGNED 0.5 is before START_REALIGNED 1.5", "swap"),
    Case("empty window", h2s_edit("test", h2s_times("1.0", "1.0")), "line 2", "is equal to START_REALIGNED", "swap"),
    Case("negative START", h2s_edit("test", h2s_times("-1.0", "0.5")), "line 2", "START_REALIGNED -1.0 is negative",
         "line 2"),
    Case("empty SENTENCE", h2s_edit("test", with_line(1, lambda x: set_column(x, "\t", 6, ""))),
         "line 2", "empty SENTENCE for 'tst_0-1-rgb_front'", "SENTENCE column of line 2"),
    Case("empty SENTENCE_NAME", h2s_edit("test", with_line(1, lambda x: set_column(x, "\t", 3, " "))),
         "line 2", "empty SENTENCE_NAME", "line 2"),
]


@pytest.mark.parametrize("case", H2S_CASES, ids=lambda c: c.id)
def test_how2sign_malformed_annotation_is_one_clear_error(h2s, case):
    expect_error(h2s, "how2sign", case)


def test_how2sign_dev_and_val_together_are_refused(h2s):
    with pytest.raises(DatasetError) as e:
        open_dataset("how2sign", h2s, ["train", "dev", "val"])
    assert e.value.path == str(h2s) and "two splits" in e.value.problem
    assert e.value.fix == "ask for one of them: --split train,dev"


def test_how2sign_bom_crlf_and_line_separators_in_text_are_accepted(h2s):
    clean = open_dataset("how2sign", h2s, SPLITS)
    for s in ("train", "val", "test"):
        path = h2s_csv(h2s, s)
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    assert open_dataset("how2sign", h2s, SPLITS).samples == clean.samples
    # U+2028 and \x85 are line breaks to str.splitlines; inside a sentence they must not cut the row
    edit(h2s_csv(h2s, "test"), with_line(1, lambda x: set_column(x, "\t", 6, "One\u2028sentence\x85still.")))
    [sample] = open_dataset("how2sign", h2s, ["test"]).samples["test"]
    assert sample.text == "One\u2028sentence\x85still."


def test_how2sign_delimiter_fix_converts_a_quoted_comma_csv(h2s):
    clean = open_dataset("how2sign", h2s, SPLITS)
    path = h2s_csv(h2s, "train")
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(x.split("\t") for x in read_lines(path))  # as pandas writes it
    path.write_text(out.getvalue(), encoding="utf-8")
    assert '"Say ""hello"" first."' in path.read_text(encoding="utf-8")
    with pytest.raises(DatasetError) as e:
        open_dataset("how2sign", h2s, SPLITS)
    run_fix(e.value.fix, "convert it: ")
    assert open_dataset("how2sign", h2s, SPLITS).samples == clean.samples


# --------------------------------------------------------------------------- CSL-Daily


@pytest.fixture()
def csl(tmp_path) -> Path:
    return write_csl(tmp_path, CSL, frames=0)


def labels_of(root: Path) -> Path:
    return root / "sentence_label/csl2020ct_v2.pkl"


def split_file(root: Path) -> Path:
    return root / "sentence_label/split_1.txt"


def repickle(change: Callable[[dict], object]) -> Callable[[Path], Path]:
    def damage(root: Path) -> Path:
        with open(labels_of(root), "rb") as f:
            data = pickle.load(f)
        with open(labels_of(root), "wb") as f:
            pickle.dump(change(data), f)
        return labels_of(root)
    return damage


def set_entry(i: int, **fields: object) -> Callable[[dict], dict]:
    def change(data: dict) -> dict:
        data["info"][i].update(fields)
        return data
    return change


def splits_edit(change: Callable[[list[str]], list[str]], encoding: str = "utf-8") -> Callable[[Path], Path]:
    return lambda root: edit(split_file(root), change, encoding)


RESTORE = "restore the file from the CSL-Daily release"
FIRST = next(iter(CSL))  # S000001_P0000_T00, train, on line 2 of the split file
CSL_CASES = [
    Case("unreadable pickle", lambda r: overwrite(labels_of(r), b"not a pickle"),
         None, "cannot read labels pickle (UnpicklingError", RESTORE),
    Case("truncated pickle", lambda r: overwrite(labels_of(r), labels_of(r).read_bytes()[:40]),
         None, "cannot read labels pickle", RESTORE),
    Case("pickle of a list", repickle(lambda d: d["info"]), None, "labels pickle holds a list", "csl2020ct_v2.pkl"),
    Case("pickle without info", repickle(lambda d: {"char_map": []}), None, "has no 'info' key", "csl2020ct_v2.pkl"),
    Case("info not a list", repickle(lambda d: {"info": {}}), None, "'info' is a dict", "csl2020ct_v2.pkl"),
    Case("info empty", repickle(lambda d: {"info": []}), None, "'info' list is empty", "csl2020ct_v2.pkl"),
    Case("entry not a dict", repickle(lambda d: {"info": [d["info"][0], "S000000_P0000_T00"]}),
         "info[1]", "is a str, expected a dict", RESTORE),
    Case("entry without name", repickle(set_entry(1, name=None)), "info[1]", "'name' is None", RESTORE),
    Case("label_char of the wrong type", repickle(set_entry(2, label_char=7)),
         "info[2] ('S000002_P0001_T00')", "'label_char' is int, expected a list of characters", RESTORE),
    Case("empty label_char", repickle(set_entry(2, label_char=[" "])),
         "info[2] ('S000002_P0001_T00')", "empty label_char", "delete the line starting S000002_P0001_T00|"),
    Case("label_gloss of the wrong type", repickle(set_entry(3, label_gloss=3)),
         "info[3] ('S000003_P0002_T00')", "'label_gloss' is int", RESTORE),
    Case("duplicate id in the pickle", repickle(set_entry(1, name=FIRST)),
         "info[1]", f"duplicate name {FIRST!r} (first at info[0])", RESTORE),
    Case("unknown split name", splits_edit(with_line(3, "S000002_P0001_T00|val")),
         "line 4", "unknown split 'val' for 'S000002_P0001_T00', expected train/dev/test", "delete line 4"),
    Case("id missing from the pickle", splits_edit(lambda ls: ls + ["S000009_P0000_T00|train"]),
         "line 6", "'S000009_P0000_T00' has no entry in csl2020ct_v2.pkl", "delete line 6"),
    Case("comma-separated line", splits_edit(with_line(3, "S000002_P0001_T00,dev")),
         "line 4", "(it is ','-separated)", "name|split"),
    Case("tab-separated line", splits_edit(with_line(3, "S000002_P0001_T00\tdev")),
         "line 4", "(it is tab-separated)", "name|split"),
    Case("space-separated line", splits_edit(with_line(3, "S000002_P0001_T00 dev")),
         "line 4", "(it is space-separated)", "name|split"),
    Case("comma-separated file", splits_edit(lambda ls: [x.replace("|", ",") for x in ls]),
         "line 1", "the file is ','-separated, expected 'name|split' lines", "python3 -c"),
    Case("duplicate id in the split file", splits_edit(lambda ls: ls + [ls[1]]),
         "line 6", f"{FIRST!r} is listed twice (first on line 2)", "delete line 6 or line 2"),
    Case("sample in two splits", splits_edit(lambda ls: ls + [f"{FIRST}|dev"]),
         "line 6", "is listed in two splits, train and dev (first on line 2)", "a video belongs to one split"),
    Case("empty split file", splits_edit(lambda ls: ls[:1]), None, "no 'name|split' lines", "split_1.txt"),
    Case("requested split without videos", splits_edit(lambda ls: [x for x in ls if not x.endswith("|test")]),
         None, "split 'test' has no videos (splits present: ['dev', 'train'])", "--split dev,train"),
    Case("non-UTF-8", splits_edit(with_line(2, "S00000é_P0000_T00|train", insert=True), "latin1"),
         "line 3", "not UTF-8 text (byte 0xe9 at byte offset", "iconv -f latin1 -t utf-8"),
]


@pytest.mark.parametrize("case", CSL_CASES, ids=lambda c: c.id)
def test_csl_daily_malformed_annotation_is_one_clear_error(csl, case):
    expect_error(csl, "csl-daily", case)


def test_csl_daily_bom_crlf_split_file_is_accepted(csl):
    clean = open_dataset("csl-daily", csl, SPLITS)
    path = split_file(csl)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    assert open_dataset("csl-daily", csl, SPLITS).samples == clean.samples


@pytest.mark.parametrize("sep", [",", "\t", " "])
def test_csl_daily_delimiter_fix_converts_the_split_file(csl, sep):
    clean = open_dataset("csl-daily", csl, SPLITS)
    edit(split_file(csl), lambda ls: [x.replace("|", sep) for x in ls])
    with pytest.raises(DatasetError) as e:
        open_dataset("csl-daily", csl, SPLITS)
    run_fix(e.value.fix, "convert it: ")
    assert open_dataset("csl-daily", csl, SPLITS).samples == clean.samples
