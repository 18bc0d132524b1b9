"""`slt-pipe doctor`: a pre-flight check of the configured profile, without doing any of the work.

Each check is a function of the effective `Config` that returns `Row`s (check, status, detail,
fix, and the full facts for `--json`); `run_checks` runs them all in table order. Nothing
heavy happens: no model is built (architectures are compared on the meta device), no tensor
is read beyond safetensors headers (the encoders' `check` in extract/vision/encoders/), the toy
corpus is not generated, no Ray is started or joined (a TCP connect to the address at most),
and no SONAR or NLLB weights are loaded (their files are looked for where the loaders would
look). Statuses: ok, warn (works, but read the detail), FAIL (a blocker: the stage that needs
it would stop). `blocker` is true exactly for FAIL rows; the CLI exits 1 when there is one.
"""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from cache.errors import SltPipeError
from pipeline.config import Config

OK, WARN, FAIL = "ok", "warn", "FAIL"
SHORT_SHA = 12
"""Characters of a sha256 shown in the table (--json has the full digest)."""
CONNECT_TIMEOUT_S = 2.0
MP4_SAMPLE = 200
"""mp4 datasets: frame counts are read from this many containers and extrapolated beyond it."""
DTYPE_BYTES = {"float16": 2, "float32": 4, "bfloat16": 2}


@dataclass
class Row:
    check: str
    status: str
    """ok, warn or FAIL."""
    detail: str
    fix: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    """Everything behind the detail, for --json (full hashes, paths, counts)."""

    @property
    def blocker(self) -> bool:
        return self.status == FAIL

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["blocker"] = self.blocker
        return out


def fail(check: str, e: SltPipeError, *, data: dict[str, Any] | None = None, prefix: str = "") -> Row:
    """A FAIL row from an slt-pipe error: its problem (and the path at fault) and its fix."""
    where = f"{e.path}: " if e.path else ""
    return Row(check, FAIL, f"{prefix}{where}{e.problem}", e.fix, data or {})


@dataclass
class Context:
    """What one check learns that a later one needs (feature widths, frame counts)."""

    weights_problem: str | None = None
    frames: list[int] | None = None
    """Frames per video over the configured splits (None: unknown)."""
    frames_note: str | None = None
    frames_estimated: bool = False


# --------------------------------------------------------------------------- feature weights


def _short(files: list[dict[str, Any]]) -> str:
    return ", ".join(f"{f['file']} {f['sha256'][:SHORT_SHA]}" for f in files)


def _ignored(ignored: dict[str, int]) -> str:
    return "; ignored by name: " + ", ".join(f"{k} ({v})" for k, v in ignored.items()) if ignored else "; nothing ignored"


def _arch_text(arch: str, config: Any) -> str:
    name = f"{arch} (its config.json)" if arch == "snapshot" else arch
    return f"{name}: {config.num_hidden_layers} layers x {config.hidden_size}"


def _weights_row(name: str, cls: Any, cfg: Config, ctx: Context) -> Row:
    """One paper stream's row: constructing the encoder finds, checks and describes its weights."""
    from cache.errors import WeightsError
    from extract.vision.weights import files_identity, weight_files

    try:
        enc = cls(cfg.extract)
        r = enc.resolved
        files = files_identity(weight_files(r.weights.path))
    except WeightsError as err:
        ctx.weights_problem = ctx.weights_problem or name
        return fail(name, err, data=asdict(getattr(cfg.extract, cls.name)))
    w, config = r.weights, r.config
    arch = enc.settings()[-1]
    data: dict[str, Any] = {"encoder": cls.name, "path": str(w.path), "format": w.format, "found": w.found,
                            "snapshot": str(w.snapshot) if w.snapshot else None, "arch": arch,
                            "layers": config.num_hidden_layers, "width": config.hidden_size,
                            "ignored_by_name": r.ignored, "files": files}
    detail = (f"{w.format} format, found via {w.found}: {w.path}; fills {_arch_text(arch, config)} "
              f"(every tensor, by name and shape); sha256 {_short(files)}{_ignored(r.ignored)}")
    return Row(name, OK, detail, None, data)


def check_feature_models(cfg: Config, ctx: Context) -> list[Row]:
    """A row per stream of extract.streams: the tiny family needs no files; a paper encoder's weights
    are found and checked to fill its architecture."""
    from extract.vision.streams import stream_classes

    try:
        classes = stream_classes(cfg.extract)
    except SltPipeError as err:
        ctx.weights_problem = "feature models"
        return [fail("feature models", err)]
    if all(c.family == "tiny" for c in classes):
        return [Row("feature models", OK, f"tiny profile: seeded {' and '.join(cfg.extract.streams)}, built in "
                    "memory; no files needed", None, {"streams": cfg.extract.streams})]
    return [_weights_row(f"{'spatial' if c.kind == 'frame' else 'motion'} weights ({c.title})", c, cfg, ctx)
            for c in classes]


# --------------------------------------------------------------------------- fairseq2 and SONAR


def check_fairseq2(cfg: Config, ctx: Context) -> list[Row]:
    import ctypes.util
    from importlib.metadata import version

    from cache.fairseq2_env import ensure_fairseq2

    name = "fairseq2 environment"
    try:
        ensure_fairseq2()
    except SltPipeError as err:
        return [fail(name, err)]
    except Exception as err:  # noqa: BLE001 - a broken stack shows as any import error
        return [Row(name, FAIL, f"import fairseq2 failed ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})",
                    "re-run ./setup.sh: fairseq2n is built against exactly torch 2.9.1 (see README, Set up)")]
    lib = ctypes.util.find_library("sndfile")
    where = f"system {lib}" if lib else "the soundfile wheel's bundled copy (preloaded)"
    versions = {p: _version(version, p) for p in ("fairseq2", "fairseq2n", "sonar-space", "torch")}
    return [Row(name, OK, f"fairseq2 {versions['fairseq2']} imports; libsndfile from {where}", None,
                {"versions": versions, "libsndfile": lib or "soundfile wheel"})]


def _version(version: Callable[[str], str], package: str) -> str:
    try:
        return version(package)
    except Exception:  # noqa: BLE001
        return "?"


def _sonar_row(label: str, spec: str, fairseq2_ok: bool) -> Row:
    name = f"SONAR {label}"
    if spec == "tiny":
        return Row(name, OK, "'tiny': trained on the corpus by embed-targets (kept in the cache); no files needed",
                   None, {"spec": spec})
    if not fairseq2_ok:
        return Row(name, FAIL, f"cannot look up asset {spec}: fairseq2 does not import",
                   "fix the fairseq2 environment row first", {"spec": spec})
    import hashlib

    from cache.errors import WeightsError
    from cache.sonar_models import _card_source, _card_str, _check_asset_file, _local_path, _retrieve_card, fairseq2_cache_dir

    try:
        card = _retrieve_card(spec)
    except WeightsError as err:
        return fail(name, err, data={"spec": spec})
    data: dict[str, Any] = {"spec": spec, "card": _card_source(card), "model_family": _card_str(card, "model_family"),
                            "model_arch": _card_str(card, "model_arch")}
    found, problems, fixes, notes = [], [], [], []
    local_problem = False
    for what in ("checkpoint", "tokenizer"):
        uri = _card_str(card, what)
        try:
            local = _check_asset_file(spec, card, what)
        except WeightsError as err:
            problems.append(err.problem + (f" (looked for {err.path})" if err.path else ""))
            fix = err.fix
            if _local_path(card, what) is not None:
                local_problem = True  # a file the card names on this machine: no download helps
                fix = (f"put the {what} at {err.path}, or point '{what}:' of the card {spec}@user ({data['card']}) "
                       "at the file you have")
            if fix and fix not in fixes:
                fixes.append(fix)
            data[what] = {"uri": uri, "on_disk": False, "error": err.problem, "path": err.path}
            continue
        if local is not None:
            size = local.stat().st_size if local.is_file() else None
            if size == 0:
                local_problem = True
                problems.append(f"{what} {local} is an empty file")
                fixes.append(f"replace {local} with the complete {what} (it may have been truncated)")
                data[what] = {"uri": uri, "on_disk": True, "path": str(local), "bytes": 0}
                continue
            found.append(f"{what} {local}" + (f" ({_human(size)})" if size is not None else ""))
            data[what] = {"uri": uri, "on_disk": True, "path": str(local), "bytes": size}
        elif uri and uri.startswith("hg://"):
            notes.append(f"{what} {uri} is read from the Hugging Face cache by fairseq2 (not checked)")
            data[what] = {"uri": uri, "on_disk": None}
        elif os.environ.get("SLT_PIPE_DOWNLOAD") == "1":
            cached = fairseq2_cache_dir() / hashlib.sha1(str(uri).encode()).hexdigest()[:24]
            on = cached.exists()
            (found if on else notes).append(f"{what} {'downloaded: ' + str(cached) if on else str(uri) + ' will be downloaded (SLT_PIPE_DOWNLOAD=1)'}")
            data[what] = {"uri": uri, "on_disk": on, "path": str(cached)}
        else:
            cached = fairseq2_cache_dir() / hashlib.sha1(str(uri).encode()).hexdigest()[:24]
            found.append(f"{what} downloaded: {cached}")
            data[what] = {"uri": uri, "on_disk": True, "path": str(cached)}
    head = f"card {spec} ({data['card']}; {data['model_family']}, arch {data['model_arch']})"
    if problems:
        fix = fixes[0] if len(fixes) == 1 else "; ".join(fixes) if local_problem else (
            f"put the checkpoint and tokenizer on disk and point a fairseq2 card at them: write "
            f"$FAIRSEQ2_USER_ASSET_DIR/sonar.yaml (default ~/.config/fairseq2/assets/) with 'name: {spec}@user', "
            "'checkpoint: \"file:///path/to/checkpoint.pt\"' and 'tokenizer: \"file:///path/to/tokenizer.model\"' "
            "(README, Real data), or set SLT_PIPE_DOWNLOAD=1 on a machine with internet to let fairseq2 download "
            "both into $FAIRSEQ2_CACHE_DIR")
        return Row(name, FAIL, f"{head}: " + "; ".join(problems), fix, data)
    status = WARN if notes else OK
    return Row(name, status, f"{head}: " + "; ".join(found + notes)
               + " (checkpoint fill is checked when embed-targets loads it)", None, data)


def check_sonar(cfg: Config, ctx: Context, fairseq2_ok: bool = True) -> list[Row]:
    return [_sonar_row("encoder", cfg.embed.sonar_encoder, fairseq2_ok),
            _sonar_row("decoder", cfg.embed.sonar_decoder, fairseq2_ok)]


# --------------------------------------------------------------------------- NLLB

NLLB_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
NLLB_TOKENIZER = ("sentencepiece.bpe.model", "tokenizer.json")


def check_nllb(cfg: Config, ctx: Context) -> list[Row]:
    from cache.errors import WeightsError
    from extract.vision.weights import weight_files

    name = "NLLB translator"
    model = cfg.embed.nllb_model
    if cfg.embed.translator != "nllb":
        return [Row(name, OK, f"not needed: embed.translator = {cfg.embed.translator!r}", None,
                    {"needed": False, "model": model})]
    if model == "tiny":
        return [Row(name, OK, "'tiny': trained on the corpus by embed-targets; no files needed", None,
                    {"needed": True, "model": model})]
    path = Path(model).expanduser()
    looks_local = path.is_absolute() or model.startswith((".", "~")) or path.exists()
    if looks_local:
        snap, found = path, "local folder"
        if not path.is_dir():
            return [Row(name, FAIL, f"{path}: NLLB snapshot folder is missing",
                        "set embed.nllb_model to the folder holding config.json, the weights and the tokenizer "
                        "(or an HF id in the Hugging Face cache)", {"needed": True, "model": model})]
    else:
        from cache.hf_cache import hf_cache_dir, hf_snapshot

        try:
            snap = hf_snapshot(model, ("config.json",))
        except Exception:  # noqa: BLE001 - an id the hub rejects (HFValidationError)
            snap = None
        found = f"Hugging Face cache ({model})"
        if snap is None:
            return [Row(name, FAIL, f"{hf_cache_dir()}: NLLB model {model} is not in the Hugging Face cache "
                        f"(embed.translator = nllb)", f"on a machine with internet run `huggingface-cli download {model}` "
                        "and copy the cache here (set HF_HOME), or set embed.nllb_model=/path/to/snapshot",
                        {"needed": True, "model": model, "hf_cache": str(hf_cache_dir())})]
    data: dict[str, Any] = {"needed": True, "model": model, "found": found, "path": str(snap)}
    missing = []
    if not (snap / "config.json").is_file():
        missing.append("config.json")
    weights = next((snap / n for n in NLLB_WEIGHTS if (snap / n).is_file()), None)
    if weights is None:
        missing.append(f"weights ({' / '.join(NLLB_WEIGHTS)})")
    tok = [n for n in NLLB_TOKENIZER if (snap / n).is_file()]
    if not tok:
        missing.append(f"tokenizer ({' or '.join(NLLB_TOKENIZER)})")
    fix = ("complete the folder (config.json, the weights, the tokenizer) or point embed.nllb_model at a complete "
           "snapshot folder" if looks_local else
           f"re-download the snapshot (huggingface-cli download {model}) or set embed.nllb_model=/path/to/snapshot")
    if missing:
        data["missing"] = missing
        return [Row(name, FAIL, f"{snap}: NLLB snapshot lacks {', '.join(missing)}", fix, data)]
    try:
        files = weight_files(weights)  # type: ignore[arg-type]
    except WeightsError as err:
        return [fail(name, err, data=data)]
    size = sum(f.stat().st_size for f in files)
    data.update(weights=[str(f) for f in files], bytes=size, tokenizer=tok)
    return [Row(name, OK, f"found via {found}: {snap}; weights {weights.name} ({_human(size)}), tokenizer "  # type: ignore[union-attr]
                f"{', '.join(tok)} (every tensor is checked when embed-targets loads it)", None, data)]


# --------------------------------------------------------------------------- dataset


def _toy_entry(cfg: Config):
    """The generated toy corpus's cache entry, or None when it has not been generated (never generates)."""
    from cache.keys import make_key
    from cache.store import Cache
    from pipeline.dataset import TOY_FORMAT

    inputs = {"videos": cfg.dataset.toy_videos, "seed": cfg.dataset.toy_seed}
    return Cache(cfg.cache.dir).get("datasets", make_key("toy", inputs, format_version=TOY_FORMAT))


def _phoenix_layout_gaps(root: Path, split: str) -> tuple[int, int, list[str]] | None:
    """(missing or empty frame folders, samples, first few folders) of one PHOENIX-layout split, or
    None when its CSV cannot be read (the reader's own error says why)."""
    from extract.datasets.base import list_frame_files
    from extract.datasets.phoenix import FRAMES, FRAMES_256, corpus_csv, read_corpus_csv, resolve_root

    try:
        base = resolve_root(root)
        rows = read_corpus_csv(corpus_csv(base, split))
    except SltPipeError:
        return None
    frames_dir = base / (FRAMES_256 if (base / FRAMES_256 / split).is_dir() else FRAMES) / split
    bad = [str(frames_dir / n) for n in rows
           if not (list_frame_files(frames_dir / n) or list_frame_files(frames_dir / n / "1"))]
    return len(bad), len(rows), bad[:5]


def _frame_counts(samples: Sequence[Any], fps: float | None) -> tuple[list[int], bool]:
    """Frames per sample: exact for frame folders; mp4s are probed (headers only), a sample of
    them when there are many, and the mean is used for the rest (returns estimated=True)."""
    from extract.datasets.base import PngFolder
    from extract.vision.decode import count_frames

    counts: list[int | None] = [len(s.frames.files) if isinstance(s.frames, PngFolder) else None for s in samples]
    videos = [i for i, c in enumerate(counts) if c is None]
    estimated = False
    if videos:
        step = max(1, len(videos) // MP4_SAMPLE)
        probed: dict[int, int] = {}
        for i in videos[::step]:
            try:
                probed[i] = count_frames(samples[i].frames, fps=fps)
            except SltPipeError:
                probed[i] = 0  # a bad video: extract skips it (and reports it)
        mean = round(sum(probed.values()) / max(1, len(probed)))
        estimated = len(probed) < len(videos)
        for i in videos:
            counts[i] = probed.get(i, mean)
    return [int(c or 0) for c in counts], estimated


def check_dataset(cfg: Config, ctx: Context) -> list[Row]:
    from cache.errors import DatasetError
    from extract.datasets import open_dataset

    d = cfg.dataset
    root = d.root
    rows: list[Row] = []
    if d.name == "toy" and root is None:
        try:
            entry = _toy_entry(cfg)
        except SltPipeError as err:
            return [fail("dataset toy", err)]
        if entry is None:
            ctx.frames_note = "toy corpus not generated yet"
            return [Row("dataset toy", OK, f"generated in the cache on first use ({d.toy_videos} videos, seed "
                        f"{d.toy_seed}, under {Path(cfg.cache.dir) / 'datasets'})", None,
                        {"generated": False, "videos": d.toy_videos, "seed": d.toy_seed})]
        root = entry.dir
    if root is None:
        ctx.frames_note = "no dataset root"
        return [Row(f"dataset {d.name}", FAIL, f"no root given for dataset {d.name!r}",
                    "pass --root DIR or set [dataset] root in slt-pipe.toml (slt-pipe init --root DIR)", {})]
    try:
        ds = open_dataset(d.name, root, d.splits)
    except DatasetError as whole:
        ds = None
        first_error = whole
    if ds is not None:
        per_split = {s: ds.samples[s] for s in d.splits}
        folders = ds.frames_folders
        bad: dict[str, DatasetError] = {}
    else:
        per_split, folders, bad = {}, {}, {}
        for s in d.splits:
            try:
                one = open_dataset(d.name, root, [s])
                per_split[s] = one.samples[s]
                folders.update(one.frames_folders)
            except DatasetError as err:
                bad[s] = err
        if not bad:  # each split opens alone: the problem is across splits (a duplicate name)
            ctx.frames_note = "dataset does not open"
            return [fail(f"dataset {d.name}", first_error)]
    resolved = ds.root if ds is not None else Path(root)
    frames: list[int] = []
    estimated = False
    for s in d.splits:
        check = f"dataset {d.name} [{s}]"
        if s in bad:
            err = bad[s]
            extra = ""
            data: dict[str, Any] = {"split": s}
            if d.name in ("phoenix", "toy"):
                gaps = _phoenix_layout_gaps(Path(root), s)
                if gaps and gaps[0]:
                    extra = f" ({gaps[0]} of {gaps[1]} frame folders missing or empty; first: {', '.join(gaps[2])})"
                    data.update(missing_or_empty=gaps[0], samples=gaps[1], first=gaps[2])
            rows.append(fail(check, err, data=data))
            rows[-1].detail += extra
            continue
        samples = per_split[s]
        counts, est = _frame_counts(samples, cfg.extract.fps)
        estimated |= est
        frames += counts
        n_frames = sum(counts)
        empty = [smp.id for smp, c in zip(samples, counts) if c == 0]
        where = folders.get(s, "")
        detail = (f"{len(samples)} samples, {'~' if est else ''}{n_frames} frames"
                  + (f" in {where}" if where else "") + f" (root {resolved})")
        data = {"split": s, "samples": len(samples), "frames": n_frames, "frames_estimated": est,
                "frames_folder": where, "root": str(resolved)}
        if not samples:
            rows.append(Row(check, FAIL, f"split {s!r} has no samples (root {resolved})",
                            "check the split's annotation file, or drop the split with --split", data))
        elif problems := [smp for smp in samples if getattr(smp, "problem", None)]:
            # The reader kept them (one bad sample never refuses a split); extract will skip and list them.
            data["skipped"] = [smp.id for smp in problems[:20]]
            first, _, fix = problems[0].problem.partition("; fix: ")
            rows.append(Row(check, WARN, detail + f"; {len(problems)} will be skipped by extract, first: {first}",
                            fix or "restore the files, or leave them: the rest is extracted", data))
        elif empty:
            data["no_frames"] = empty[:20]
            rows.append(Row(check, WARN, detail + f"; {len(empty)} without frames (skipped by extract): "
                            + ", ".join(empty[:5]), "re-encode or drop those samples", data))
        else:
            rows.append(Row(check, OK, detail, None, data))
    if bad:
        ctx.frames_note = "dataset has errors"
    else:
        ctx.frames, ctx.frames_estimated = frames, estimated
    if d.name == "phoenix":
        rows.append(_phoenix_256_row(cfg, resolved, folders))
    return rows


def _phoenix_256_row(cfg: Config, root: Path, folders: dict[str, str]) -> Row:
    from extract.datasets.phoenix import FRAMES_256
    from extract.vision.streams import is_tiny
    from extract.vision.preprocess import resolve_squash

    with256 = [s for s, f in folders.items() if f.startswith(str(FRAMES_256))]
    without = [s for s in folders if s not in with256]
    squash = resolve_squash(cfg.extract.squash, cfg.dataset.name)
    data = {"with_256": with256, "without_256": without, "squash": squash}
    name = f"PHOENIX {FRAMES_256}/"
    if not without:
        return Row(name, OK, f"present for {', '.join(with256)}: read instead of the 210x260 frames (SpaMo's input)",
                   None, data)
    if is_tiny(cfg.extract):
        return Row(name, OK, f"absent for {', '.join(without)}: not used by the tiny recipe", None, data)
    how = (f"the 210x260 frames are squashed to {squash} in memory (PIL bicubic) as SpaMo's copy"
           if squash != "none" else "extract.squash = none: the 210x260 frames are centre-cropped, unlike SpaMo")
    return Row(name, WARN, f"absent for {', '.join(without)}: {how}; the tool that made SpaMo's copy is unknown, "
               "so features can differ slightly", f"to use SpaMo's exact input, put its squashed frames in "
               f"{root / FRAMES_256}/{{split}}/", data)


# --------------------------------------------------------------------------- disk


def motion_clips(frames: int, clip_len: int = 16, stride: int = 8) -> int:
    """Clips per video (as extract.vision.streams.clip_index): floor((T - L) / S) + 1, at least 1."""
    if frames <= 0:
        return 0
    return 1 if frames < clip_len else (frames - clip_len) // stride + 1


def feature_bytes(frames: Sequence[int], dims: tuple[int, int], dtype: str, clip_len: int = 16, stride: int = 8) -> int:
    """Bytes of the features of these videos: sum T x spatial width + sum C x motion width, x dtype size."""
    spatial_rows = sum(frames)
    motion_rows = sum(motion_clips(t, clip_len, stride) for t in frames)
    return (spatial_rows * dims[0] + motion_rows * dims[1]) * DTYPE_BYTES[dtype]


def _existing_parent(path: Path) -> Path:
    p = Path(path).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_disk(cfg: Config, ctx: Context) -> list[Row]:
    name = "disk for features"
    cache_dir = Path(cfg.cache.dir).expanduser()
    probe = _existing_parent(cache_dir)
    free = shutil.disk_usage(probe).free
    data: dict[str, Any] = {"cache_dir": str(cache_dir), "measured_at": str(probe), "free_bytes": free}
    if ctx.weights_problem is None:
        from extract.vision.streams import feature_dims

        dims = feature_dims(cfg.extract)  # the weight rows resolved every stream already (memoised)
    else:
        return [Row(name, WARN, f"not estimated: the feature widths need the {ctx.weights_problem or 'weights'} "
                    f"(see above); {_human(free)} free at {probe}", "fix the weight rows, then run doctor again", data)]
    if ctx.frames is None:
        return [Row(name, OK if ctx.frames_note == "toy corpus not generated yet" else WARN,
                    f"not estimated: {ctx.frames_note or 'frame counts unknown'}; {_human(free)} free at {probe}",
                    None, data)]
    e = cfg.extract
    need = feature_bytes(ctx.frames, dims, e.dtype, e.clip_len, e.clip_stride)
    clips = sum(motion_clips(t, e.clip_len, e.clip_stride) for t in ctx.frames)
    data.update(bytes_needed=need, frames=sum(ctx.frames), clips=clips, videos=len(ctx.frames), spatial_dim=dims[0],
                motion_dim=dims[1], dtype=e.dtype, dtype_bytes=DTYPE_BYTES[e.dtype], estimated=ctx.frames_estimated)
    how = (f"{'~' if ctx.frames_estimated else ''}{_human(need)} = ({sum(ctx.frames)} frames x {dims[0]} + {clips} clips "
           f"x {dims[1]}) x {DTYPE_BYTES[e.dtype]} B ({e.dtype}), before compression; {_human(free)} free at {probe}")
    if need > free:
        return [Row(name, FAIL, "not enough space: " + how,
                    f"free {_human(need - free)} or more, or point --cache at a larger disk", data)]
    if need > 0.8 * free:
        return [Row(name, WARN, "tight: " + how, "free space or point --cache at a larger disk", data)]
    return [Row(name, OK, how, None, data)]


# --------------------------------------------------------------------------- Ray


def parse_ray_address(address: str) -> tuple[str, int]:
    """host, port of a Ray address: ray://host[:10001] (Ray client) or host[:6379] (GCS)."""
    client = address.startswith("ray://")
    rest = address[len("ray://"):] if client else address
    rest = rest.split("/", 1)[0]
    if rest.startswith("["):  # [ipv6]:port
        host, _, port = rest[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, sep, port = rest.rpartition(":")
        if not sep:
            host, port = rest, ""
    if not host:
        raise ValueError(f"no host in {address!r}")
    return host, int(port) if port else (10001 if client else 6379)


def _auto_address() -> str | None:
    env = os.environ.get("RAY_ADDRESS")
    if env and env != "auto":
        return env
    current = Path("/tmp/ray/ray_current_cluster")
    try:
        text = current.read_text().strip()
    except OSError:
        return None
    return text or None


def check_ray(cfg: Config, ctx: Context) -> list[Row]:
    name = "Ray"
    address = cfg.extract.ray_address
    try:
        import ray

        ver = ray.__version__
    except Exception as err:  # noqa: BLE001
        return [Row(name, FAIL, f"ray does not import ({type(err).__name__}: {err})", "re-run ./setup.sh", {})]
    if cfg.extract.workers == 0 and not address:
        return [Row(name, OK, f"not needed for extract: extract.workers = 0 runs in this process (Ray {ver})", None,
                    {"mode": "in-process", "ray": ver, "workers": 0})]
    if not address or address == "local":
        cpus = os.cpu_count() or 1
        return [Row(name, OK, f"local: Ray {ver} starts on this machine for extract ({cpus} CPUs, "
                    f"{cfg.extract.workers or 'one per GPU or node'} model worker(s))", None,
                    {"mode": "local", "ray": ver, "cpus": cpus, "workers": cfg.extract.workers})]
    target = _auto_address() if address == "auto" else address
    data: dict[str, Any] = {"mode": "cluster", "address": address, "ray": ver}
    if target is None:
        return [Row(name, FAIL, "--ray-address auto: no running cluster found ($RAY_ADDRESS unset, no "
                    "/tmp/ray/ray_current_cluster)", "start one with `ray start --head`, or pass --ray-address HOST:PORT",
                    data)]
    try:
        host, port = parse_ray_address(target)
    except ValueError as err:
        return [Row(name, FAIL, f"cannot read Ray address {target!r} ({err})",
                    "use HOST:PORT (the GCS, default 6379) or ray://HOST:PORT (Ray client, default 10001)", data)]
    data.update(host=host, port=port)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        reason = "timed out" if isinstance(err, socket.timeout) else (err.strerror or str(err))
        return [Row(name, FAIL, f"{target}: {host}:{port} does not accept a TCP connection ({reason}, "
                    f"{CONNECT_TIMEOUT_S:.0f} s timeout)", "start the cluster (`ray start --head` on the head node), "
                    "check host, port and firewall, or drop --ray-address to use a local Ray", data)]
    return [Row(name, OK, f"{target}: {host}:{port} accepts connections (Ray {ver} here; the cluster's nodes need "
                "slt-pipe installed and the dataset path)", None, data)]


# --------------------------------------------------------------------------- device


def check_device(cfg: Config, ctx: Context) -> list[Row]:
    import torch

    from extract.vision.streams import is_tiny

    cpus = os.cpu_count() or 1
    data: dict[str, Any] = {"torch": torch.__version__, "cpus": cpus, "cuda": torch.cuda.is_available()}
    wants = {cfg.extract.device, cfg.embed.device, getattr(cfg.train, "device", "auto")}
    if not torch.cuda.is_available():
        if "cuda" in wants:
            return [Row("device", FAIL, f"a device is set to cuda but torch {torch.__version__} sees no CUDA GPU "
                        f"({cpus} CPUs)", "set extract.device / embed.device / train.device to auto or cpu, or run on "
                        "a machine with a GPU", data)]
        paper = not is_tiny(cfg.extract)
        return [Row("device", WARN if paper else OK, f"no CUDA GPU: everything runs on {cpus} CPUs (float32)"
                    + ("; the paper models are slow on CPU" if paper else ""), None, data)]
    gpus = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        gpus.append({"name": p.name, "memory_bytes": int(p.total_memory), "capability": f"{p.major}.{p.minor}"})
    bf16 = bool(torch.cuda.is_bf16_supported())
    data.update(gpus=gpus, bf16=bf16, autocast=cfg.extract.autocast)
    names = ", ".join(f"{g['name']} ({_human(g['memory_bytes'])})" for g in gpus)
    detail = f"{len(gpus)} CUDA GPU(s): {names}; bf16 {'supported' if bf16 else 'not supported'}; {cpus} CPUs"
    if cfg.extract.autocast == "bfloat16" and not bf16:
        return [Row("device", WARN, detail + "; extract.autocast = bfloat16 is emulated or slow here",
                    "--set extract.autocast=float16", data)]
    return [Row("device", OK, detail, None, data)]


# --------------------------------------------------------------------------- all of it


def run_checks(cfg: Config) -> list[Row]:
    """Every check, in table order. A check that crashes becomes a FAIL row, never a traceback."""
    ctx = Context()
    rows: list[Row] = []

    def run(name: str, fn: Callable[[], list[Row]]) -> list[Row]:
        try:
            got = fn()
        except SltPipeError as err:
            got = [fail(name, err)]
        except Exception as err:  # noqa: BLE001 - doctor reports, it does not crash
            got = [Row(name, FAIL, f"check crashed: {type(err).__name__}: {err}",
                       "report this as a bug in slt-pipe doctor", {})]
        rows.extend(got)
        return got

    run("feature models", lambda: check_feature_models(cfg, ctx))
    f2 = run("fairseq2 environment", lambda: check_fairseq2(cfg, ctx))
    run("SONAR", lambda: check_sonar(cfg, ctx, fairseq2_ok=all(r.status != FAIL for r in f2)))
    run("NLLB translator", lambda: check_nllb(cfg, ctx))
    run(f"dataset {cfg.dataset.name}", lambda: check_dataset(cfg, ctx))
    run("disk for features", lambda: check_disk(cfg, ctx))
    run("Ray", lambda: check_ray(cfg, ctx))
    run("device", lambda: check_device(cfg, ctx))
    return rows


def report(cfg: Config, rows: list[Row]) -> dict[str, Any]:
    """The --json document."""
    return {"profile": cfg.profile, "dataset": cfg.dataset.name, "cache": str(cfg.cache.dir),
            "blockers": sum(r.blocker for r in rows), "rows": [r.to_json() for r in rows]}


def _human(n: int | float | None) -> str:
    if n is None:
        return "?"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


__all__ = ["Row", "run_checks", "report", "feature_bytes", "motion_clips", "parse_ray_address"]
