"""`slt-pipe doctor`: a pre-flight check of the configured profile, without doing any of the work.

Each subsystem finds its own facts (`check_*` in cache.sonar_models, extract.text.nllb,
extract.datasets.layout, extract.ray_session, cache.device, ...), the way its loaders would
look, without loading a model, generating the toy or starting Ray; this module only words
them as rows (check, status ok / warn / FAIL, detail, fix, the facts for --json) and tables
them, each fix as a line of its own under the table. A FAIL row is a blocker: the stage that needs it would stop, and the CLI exits 1.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from cache.errors import SltPipeError
from cache.files import disk_free, human_bytes
from pipeline.config import Config

OK, WARN, FAIL = "ok", "warn", "FAIL"
SHORT_SHA = 12
"""Characters of a sha256 shown in the table (--json has the full digest)."""


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
    shas = ", ".join(f"{f['file']} {f['sha256'][:SHORT_SHA]}" for f in files)
    ignored = ("; ignored by name: " + ", ".join(f"{k} ({v})" for k, v in r.ignored.items()) if r.ignored
               else "; nothing ignored")
    detail = (f"{w.format} format, found via {w.found}: {w.path}; fills {arch + ' (its config.json)' if arch == 'snapshot' else arch}"
              f": {config.num_hidden_layers} layers x {config.hidden_size} (every tensor, by name and shape); sha256 "
              f"{shas}{ignored}")
    return Row(name, OK, detail, None, data)


def check_feature_models(cfg: Config, ctx: Context) -> list[Row]:
    """A row per stream of extract.streams: the tiny family needs no files; a paper encoder's weights
    are found and checked to fill its architecture."""
    from extract.vision.encoders import encoder_class
    from extract.vision.streams import check_stream_set

    unknown = []
    for name in dict.fromkeys(cfg.extract.streams):  # each name once, however often it is listed
        try:
            encoder_class(name)
        except SltPipeError as err:
            unknown.append(fail(f"stream {name}", err))
    try:
        classes = check_stream_set(cfg.extract)
    except SltPipeError as err:
        ctx.weights_problem = "feature models"
        if not unknown:
            return [fail("feature models", err)]
        # an unknown name fails its own row; the streams that exist are still checked
        known = [encoder_class(n) for n in dict.fromkeys(cfg.extract.streams) if not any(
            r.check == f"stream {n}" for r in unknown)]
        return unknown + [_weights_row(f"{'spatial' if c.kind == 'frame' else 'motion'} weights ({c.title})", c, cfg,
                                       ctx) for c in known if c.family != "tiny"]
    if all(c.family == "tiny" for c in classes):
        return [Row("feature models", OK, f"tiny profile: seeded {' and '.join(cfg.extract.streams)}, built in "
                    "memory; no files needed", None, {"streams": cfg.extract.streams})]
    return [_weights_row(f"{'spatial' if c.kind == 'frame' else 'motion'} weights ({c.title})", c, cfg, ctx)
            for c in classes]


# --------------------------------------------------------------------------- fairseq2 and SONAR
def check_fairseq2(cfg: Config, ctx: Context) -> list[Row]:
    from cache.fairseq2_env import check_fairseq2 as facts

    name = "fairseq2 environment"
    try:
        env = facts()
    except SltPipeError as err:
        return [fail(name, err)]
    except Exception as err:  # noqa: BLE001 - a broken stack shows as any import error
        return [Row(name, FAIL, f"import fairseq2 failed ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})",
                    "re-run ./setup.sh: fairseq2n is built against exactly torch 2.9.1 (see README, Set up)")]
    lib, versions = env["libsndfile"], env["versions"]
    where = f"system {lib}" if lib else "the soundfile wheel's bundled copy (preloaded)"
    return [Row(name, OK, f"fairseq2 {versions['fairseq2']} imports; libsndfile from {where}", None,
                {"versions": versions, "libsndfile": lib or "soundfile wheel"})]


def _sonar_row(label: str, spec: str, fairseq2_ok: bool) -> Row:
    from cache.errors import WeightsError
    from cache.sonar_models import check_sonar_asset

    name = f"SONAR {label}"
    if spec == "tiny":
        return Row(name, OK, "'tiny': trained on the corpus by embed-targets (kept in the cache); no files needed",
                   None, {"spec": spec})
    if not fairseq2_ok:
        return Row(name, FAIL, f"cannot look up asset {spec}: fairseq2 does not import",
                   "fix the fairseq2 environment row first", {"spec": spec})
    try:
        asset = check_sonar_asset(spec)
    except WeightsError as err:
        return fail(name, err, data={"spec": spec})
    data: dict[str, Any] = {"spec": spec, "card": asset.card, "model_family": asset.model_family,
                            "model_arch": asset.model_arch}
    found, problems, notes = [], [], []
    for f in asset.files:
        data[f.field] = f.to_json()
        if f.problem:  # the loaders would refuse it (or it is an empty file)
            problems.append(f.problem + (f" (looked for {f.path})" if f.path and not f.on_disk else ""))
        elif f.kind == "file":
            found.append(f"{f.field} {f.path}" + (f" ({human_bytes(f.bytes)})" if f.bytes is not None else ""))
        elif f.kind == "hub":
            notes.append(f"{f.field} {f.uri} is read from the Hugging Face cache by fairseq2 (not checked)")
        else:  # in fairseq2's download cache, or to be downloaded there (SLT_PIPE_DOWNLOAD=1)
            (found if f.on_disk else notes).append(f"{f.field} downloaded: {f.path}" if f.on_disk else
                                                   f"{f.field} {f.uri} will be downloaded (SLT_PIPE_DOWNLOAD=1)")
    head = f"card {spec} ({asset.card}; {asset.model_family}, arch {asset.model_arch})"
    if problems:
        return Row(name, FAIL, f"{head}: " + "; ".join(problems), asset.fix, data)
    return Row(name, WARN if notes else OK, f"{head}: " + "; ".join(found + notes)
               + " (checkpoint fill is checked when embed-targets loads it)", None, data)


def check_sonar(cfg: Config, ctx: Context, fairseq2_ok: bool = True) -> list[Row]:
    return [_sonar_row("encoder", cfg.embed.sonar_encoder, fairseq2_ok),
            _sonar_row("decoder", cfg.embed.sonar_decoder, fairseq2_ok)]


# --------------------------------------------------------------------------- NLLB
def check_nllb(cfg: Config, ctx: Context) -> list[Row]:
    from extract.text.nllb import check_nllb as facts

    name = "NLLB translator"
    model = cfg.embed.nllb_model
    if cfg.embed.translator != "nllb":
        return [Row(name, OK, f"not needed: embed.translator = {cfg.embed.translator!r}", None,
                    {"needed": False, "model": model})]
    if model == "tiny":
        return [Row(name, OK, "'tiny': trained on the corpus by embed-targets; no files needed", None,
                    {"needed": True, "model": model})]
    snap = facts(model)
    data: dict[str, Any] = {"needed": True, "model": model}
    if snap.found is not None:
        data.update(found=snap.found, path=str(snap.path))
    elif snap.hf_cache is not None:
        data["hf_cache"] = str(snap.hf_cache)
    if snap.missing:
        data["missing"] = snap.missing
    if snap.problem is not None:
        return [fail(name, snap.problem, data=data)]
    data.update(weights=[str(f) for f in snap.weights], bytes=snap.bytes, tokenizer=snap.tokenizer)
    return [Row(name, OK, f"found via {snap.found}: {snap.path}; weights {snap.weights_file.name} "  # type: ignore[union-attr]
                f"({human_bytes(snap.bytes)}), tokenizer {', '.join(snap.tokenizer)} (every tensor is checked when "
                "embed-targets loads it)", None, data)]


# --------------------------------------------------------------------------- dataset
def check_dataset(cfg: Config, ctx: Context) -> list[Row]:
    from extract.datasets.layout import check_layout
    from pipeline.dataset import dataset_root, toy_entry

    d = cfg.dataset
    if d.name == "toy" and d.root is None:
        try:
            entry = toy_entry(cfg)
        except SltPipeError as err:
            return [fail("dataset toy", err)]
        if entry is None:
            ctx.frames_note = "toy corpus not generated yet"
            return [Row("dataset toy", OK, f"generated in the cache on first use ({d.toy_videos} videos, seed "
                        f"{d.toy_seed}, under {Path(cfg.cache.dir) / 'datasets'})", None,
                        {"generated": False, "videos": d.toy_videos, "seed": d.toy_seed})]
        root = entry.dir
    else:
        try:
            root = dataset_root(cfg, generate=False)
        except SltPipeError as err:
            ctx.frames_note = "no dataset root"
            return [fail(f"dataset {d.name}", err)]
    layout = check_layout(d.name, root, d.splits, fps=cfg.extract.fps)
    if layout.error is not None:
        ctx.frames_note = "dataset does not open"
        return [fail(f"dataset {d.name}", layout.error)]
    rows: list[Row] = []
    frames: list[int] = []
    for s in layout.splits:
        check = f"dataset {d.name} [{s.split}]"
        if s.error is not None:
            data: dict[str, Any] = {"split": s.split}
            rows.append(fail(check, s.error, data=data))
            if s.gaps and s.gaps[0]:
                rows[-1].detail += (f" ({s.gaps[0]} of {s.gaps[1]} frame folders missing or empty; first: "
                                    f"{', '.join(s.gaps[2])})")
                data.update(missing_or_empty=s.gaps[0], samples=s.gaps[1], first=s.gaps[2])
            continue
        frames += s.frames
        n_frames = sum(s.frames)
        detail = (f"{len(s.samples)} samples, {'~' if s.estimated else ''}{n_frames} frames"
                  + (f" in {s.folder}" if s.folder else "") + f" (root {layout.root})")
        data = {"split": s.split, "samples": len(s.samples), "frames": n_frames, "frames_estimated": s.estimated,
                "frames_folder": s.folder, "root": str(layout.root)}
        if not s.samples:
            rows.append(Row(check, FAIL, f"split {s.split!r} has no samples (root {layout.root})",
                            "check the split's annotation file, or drop the split with --split", data))
        elif problems := s.problems:
            # The reader kept them (one bad sample never refuses a split); extract will skip and list them.
            data["skipped"] = [smp.id for smp in problems[:20]]
            first, _, fix = problems[0].problem.partition("; fix: ")  # type: ignore[union-attr]
            rows.append(Row(check, WARN, detail + f"; {len(problems)} will be skipped by extract, first: {first}",
                            fix or "restore the files, or leave them: the rest is extracted", data))
        elif empty := s.empty:
            data["no_frames"] = empty[:20]
            rows.append(Row(check, WARN, detail + f"; {len(empty)} without frames (skipped by extract): "
                            + ", ".join(empty[:5]), "re-encode or drop those samples", data))
        else:
            rows.append(Row(check, OK, detail, None, data))
    if any(s.error for s in layout.splits):
        ctx.frames_note = "dataset has errors"
    else:
        ctx.frames, ctx.frames_estimated = frames, any(s.estimated for s in layout.splits)
    if layout.with_256 is not None:
        rows.append(_phoenix_256_row(cfg, layout))
    return rows


def _phoenix_256_row(cfg: Config, layout: Any) -> Row:
    from extract.datasets.phoenix import FRAMES_256
    from extract.vision.preprocess import resolve_squash
    from extract.vision.streams import is_tiny

    with256, without = layout.with_256, layout.without_256
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
               f"{layout.root / FRAMES_256}/{{split}}/", data)


# --------------------------------------------------------------------------- disk
def check_disk(cfg: Config, ctx: Context) -> list[Row]:
    name = "disk for features"
    cache_dir = Path(cfg.cache.dir).expanduser()
    probe, free = disk_free(cache_dir)
    data: dict[str, Any] = {"cache_dir": str(cache_dir), "measured_at": str(probe), "free_bytes": free}
    if ctx.weights_problem is not None:
        return [Row(name, WARN, f"not estimated: the feature widths need the {ctx.weights_problem or 'weights'} "
                    f"(see above); {human_bytes(free)} free at {probe}", "fix the weight rows, then run doctor again",
                    data)]
    from extract.vision.streams import DTYPE_BYTES, clip_count, feature_bytes, feature_dims

    dims = feature_dims(cfg.extract)  # the weight rows resolved every stream already (memoised)
    if ctx.frames is None:
        return [Row(name, OK if ctx.frames_note == "toy corpus not generated yet" else WARN,
                    f"not estimated: {ctx.frames_note or 'frame counts unknown'}; {human_bytes(free)} free at {probe}",
                    None, data)]
    e = cfg.extract
    need = feature_bytes(ctx.frames, dims, e.dtype, e.clip_len, e.clip_stride)
    clips = sum(clip_count(t, e.clip_len, e.clip_stride) for t in ctx.frames)
    data.update(bytes_needed=need, frames=sum(ctx.frames), clips=clips, videos=len(ctx.frames), spatial_dim=dims[0],
                motion_dim=dims[1], dtype=e.dtype, dtype_bytes=DTYPE_BYTES[e.dtype], estimated=ctx.frames_estimated)
    how = (f"{'~' if ctx.frames_estimated else ''}{human_bytes(need)} = ({sum(ctx.frames)} frames x {dims[0]} + "
           f"{clips} clips x {dims[1]}) x {DTYPE_BYTES[e.dtype]} B ({e.dtype}), before compression; "
           f"{human_bytes(free)} free at {probe}")
    if need > free:
        return [Row(name, FAIL, "not enough space: " + how,
                    f"free {human_bytes(need - free)} or more, or point --cache at a larger disk", data)]
    if need > 0.8 * free:
        return [Row(name, WARN, "tight: " + how, "free space or point --cache at a larger disk", data)]
    return [Row(name, OK, how, None, data)]


# --------------------------------------------------------------------------- Ray
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
    from extract.ray_address import address_problem, check_address

    got = check_address(address)
    data: dict[str, Any] = {"mode": "cluster", "address": address, "ray": ver}
    if got.host is not None:
        data.update(host=got.host, port=got.port)
    problem = address_problem(got)
    if problem is not None:  # extract and embed-targets refuse the address with these very words
        return [Row(name, FAIL, problem[0], problem[1], data)]
    target, host, port = got.target, got.host, got.port
    return [Row(name, OK, f"{target}: {host}:{port} accepts connections (Ray {ver} here; the cluster's nodes need "
                "slt-pipe installed and the dataset path)", None, data)]


# --------------------------------------------------------------------------- device
def check_device(cfg: Config, ctx: Context) -> list[Row]:
    from cache.device import check_devices
    from extract.vision.streams import is_tiny

    dev = check_devices()
    cpus = os.cpu_count() or 1
    data: dict[str, Any] = {"torch": dev["torch"], "cpus": cpus, "cuda": dev["cuda"]}
    wants = {cfg.extract.device, cfg.embed.device, getattr(cfg.train, "device", "auto")}
    if not dev["cuda"]:
        if "cuda" in wants:
            return [Row("device", FAIL, f"a device is set to cuda but torch {dev['torch']} sees no CUDA GPU "
                        f"({cpus} CPUs)", "set extract.device / embed.device / train.device to auto or cpu, or run on "
                        "a machine with a GPU", data)]
        paper = not is_tiny(cfg.extract)
        return [Row("device", WARN if paper else OK, f"no CUDA GPU: everything runs on {cpus} CPUs (float32)"
                    + ("; the paper models are slow on CPU" if paper else ""), None, data)]
    gpus, bf16 = dev["gpus"], dev["bf16"]
    data.update(gpus=gpus, bf16=bf16, autocast=cfg.extract.autocast)
    names = ", ".join(f"{g['name']} ({human_bytes(g['memory_bytes'])})" for g in gpus)
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


def table(cfg: Config, rows: list[Row]) -> tuple[Any, str]:
    """The table the CLI prints (check, status, detail: cells wrap between words, none is broken; see
    pipeline.console.SltConsole for a terminal too narrow for it), and the lines under it: a
    `fix (check): ...` line per row with a fix, never wrapped (on a terminal it wraps only on screen,
    so a copy of it pastes as one line), and how many blockers there are."""
    from rich.markup import escape
    from rich.table import Table

    out = Table(title=f"slt-pipe doctor: profile {cfg.profile}, dataset {cfg.dataset.name}", show_lines=True)
    out.add_column("check", overflow="fold")
    out.add_column("status", no_wrap=True)
    out.add_column("detail", overflow="fold")
    colour = {OK: "green", WARN: "yellow", FAIL: "bold red"}
    for r in rows:
        out.add_row(escape(r.check), f"[{colour[r.status]}]{r.status}[/]", escape(r.detail))
    blockers = sum(r.blocker for r in rows)
    fixes = [f"fix ({escape(r.check)}): {escape(r.fix)}" for r in rows if r.fix]
    count = f"{blockers} blocker{'s' if blockers != 1 else ''}" if blockers else "no blockers"
    return out, "\n".join(["", *fixes, count] if fixes else [count])


__all__ = ["Row", "run_checks", "report", "table"]
