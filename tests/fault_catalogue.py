"""A catalogue of deliberate faults that the test suite is known to catch (mutation checks, by hand).

Each entry makes one small edit to a project source file, the kind of one-line bug a real change
could bring, in a temporary copy of the tree, runs the few tests that guard against it and says
`caught` (they fail), `missed` (they pass) or `broken` (the edit did not apply, or the tests could
not run). Run from the repository root:

    .venv/bin/python -m tests.fault_catalogue --list          # the entries
    .venv/bin/python -m tests.fault_catalogue --baseline      # their tests pass on the unmodified tree
    .venv/bin/python -m tests.fault_catalogue                 # every entry, one after another
    .venv/bin/python -m tests.fault_catalogue --only NAME ... # or --area AREA

Slow (seconds per entry, a minute or two for the slow tests and for entries that rebuild a test artefact;
about 15 minutes in all on 2 cores) and not part of CI.
Test artefacts ($SLT_PIPE_TEST_ARTEFACTS) are keyed by the code that builds them, so a faulted copy
builds its own version of an artefact whose code it changed and reuses the others.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AREAS = ("extract", "embed-targets", "train", "evaluate", "cache", "ray", "cli", "layering")
PACKAGES = ("pipeline", "extract", "cache", "train")
TIMEOUT_S = 1200
"""Wall-clock limit of one entry's pytest run (the slow Ray tests take a few minutes each)."""
TAIL_CHARS = 3000


@dataclass(frozen=True)
class Fault:
    name: str
    """Short slug, e.g. "post-layernorm-token"."""
    area: str
    """One of AREAS."""
    file: str
    """Repo-relative path of the project source file the fault edits."""
    old: str
    """Exact text, which must occur exactly once in the file."""
    new: str
    """Its replacement."""
    tests: tuple[str, ...]
    """pytest node ids (file::test) that must fail with the fault in."""
    why: str
    """One line: what the fault is and why those tests see it."""


PF = "tests/test_paper_features.py"

FAULTS: list[Fault] = [
    # ------------------------------------------------------------------ extract: the paper recipe
    Fault("clip-post-layernorm-token", "extract", "extract/vision/encoders/clip.py",
          "    return vm.encoder(inputs_embeds=h)[0][:, 0]\n",
          "    return vm.post_layernorm(vm.encoder(inputs_embeds=h)[0][:, 0])\n",
          (f"{PF}::test_transformers_snapshot_loads_every_tensor_and_matches_transformers[CLIPVisionModel]",
           f"{PF}::test_spamo_recipe_tells_token_resampler_and_squash_apart"),
          "CLIP's class token taken after post_layernorm (pooler_output) instead of hidden_states[-1][:, 0]: "
          "no longer equal to transformers' hidden state, and the recipe check's reference moves off 1 - 1e-8"),
    Fault("videomae-final-layernorm-token", "extract", "extract/vision/encoders/videomae.py",
          "    return model.encoder(model.embeddings(pixel_values, None))[0]\n",
          "    return model.layernorm(model.encoder(model.embeddings(pixel_values, None))[0])\n",
          (f"{PF}::test_videomae_snapshot_loads_and_refuses_partial[VideoMAEModel]",),
          "VideoMAE's tokens taken after the final LayerNorm (last_hidden_state) instead of hidden_states[-1]: "
          "the loaded model no longer matches transformers' last hidden state"),
    Fault("s2-bilinear-upsampling", "extract", "extract/vision/preprocess.py",
          'size=(h * scale, w * scale), mode="bicubic")',
          'size=(h * scale, w * scale), mode="bilinear")',
          (f"{PF}::test_spamo_recipe_tells_token_resampler_and_squash_apart",),
          "S2's 2x view upsampled bilinearly instead of SpaMo's bicubic F.interpolate: the 448 tiles' tokens, "
          "and so the second 1024 columns, leave the transformers reference"),
    Fault("squash-bilinear", "extract", "extract/vision/preprocess.py",
          "resize((side, side), Image.Resampling.BICUBIC) for f in frames]",
          "resize((side, side), Image.Resampling.BILINEAR) for f in frames]",
          (f"{PF}::test_spamo_recipe_tells_token_resampler_and_squash_apart",),
          "the in-memory 256x256 squash of PHOENIX frames made with PIL bilinear, not bicubic: every feature "
          "moves away from the reference built from bicubic squashes"),
    Fault("frame-files-lexicographic", "extract", "extract/datasets/base.py",
          "    return tuple(sorted(names, key=natural_key))\n",
          "    return tuple(sorted(names))\n",
          ("tests/test_datasets.py::test_frame_files_sort_numerically",),
          "frame files sorted as strings (images10 before images2): frame order of unpadded names is wrong"),
    Fault("fps-resample-strictly-before", "extract", "extract/vision/decode.py",
          "bisect_right(keys, k * r.denominator) - 1 for k in range(n_out)",
          "bisect_right(keys, k * r.denominator - 1) - 1 for k in range(n_out)",
          ("tests/test_video.py::test_fps_resampling_selects_frames",),
          "resampling picks the last frame strictly before each output instant (not at or before it): frames "
          "shift by one and the first pick wraps to the last frame"),
    Fault("toy-frames-written-reversed", "extract", "extract/datasets/toy.py",
          "    for i, frame in enumerate(frames, start=1):\n",
          "    for i, frame in enumerate(frames[::-1], start=1):\n",
          ("tests/test_toy.py::test_reader_frames_match_the_renderer",),
          "ARTEFACT (toy-corpus): the toy generator writes each video's frames in reverse order; the test reads "
          "the toy_corpus artefact, so it is caught only if the artefact is rebuilt from the faulted toy.py"),
    Fault("runner-clip-stride-is-clip-length", "extract", "extract/vision/runner.py",
          "            index = clip_index(frames, cfg.clip_len, cfg.clip_stride)\n",
          "            index = clip_index(frames, cfg.clip_len, cfg.clip_len)\n",
          ("tests/test_extract.py::test_in_process_extractor_matches_the_store",),
          "extraction's shard computer cuts motion clips every clip_len frames instead of every clip_stride (8): "
          "the store's motion rows are no longer what the in-process extractor (translate) computes"),
    Fault("last-partial-shard-dropped", "extract", "extract/vision/runner.py",
          "    for k, i in enumerate(range(0, len(ordered), shard_videos)):\n",
          "    for k, i in enumerate(range(0, len(ordered) - shard_videos + 1, shard_videos)):\n",
          ("tests/test_pipeline.py::test_train_evaluate_translate_on_real_caches",),
          "ARTEFACT (pipeline-cache): plan_shards drops the last, partial shard, so a split smaller than "
          "extract.shard_videos gets an empty features entry and nothing is reported skipped; test_pipeline "
          "reads the cached features artefact, caught only if it is rebuilt from the faulted runner"),
    # ------------------------------------------------------------------ extract: strict weight loaders
    Fault("loader-accepts-missing-tensors", "extract", "extract/vision/weights.py",
          "    if not (missing or unexpected or wrong):\n",
          "    if not (unexpected or wrong):\n",
          (f"{PF}::test_every_spatial_format_refuses_a_partial_file[transformers]",
           f"{PF}::test_every_spatial_format_refuses_a_partial_file[timm]"),
          "the shared strict check lets a partial weights file through (missing tensors are not an error): "
          "no WeightsError naming the missing tensor and the fix"),
    Fault("openclip-layernorms-swapped", "extract", "extract/vision/encoders/clip.py",
          '_OPENCLIP_BLOCK = {"ln_1": "layer_norm1", "ln_2": "layer_norm2",',
          '_OPENCLIP_BLOCK = {"ln_1": "layer_norm2", "ln_2": "layer_norm1",',
          (f"{PF}::test_openai_and_open_clip_files_match_openai_code[open_clip_pytorch_model.bin]",),
          "open_clip/OpenAI key mapping swaps each block's two LayerNorms (same shapes, so the strict check "
          "passes: scrambled weights); the features no longer match OpenAI's own forward"),
    Fault("qkv-split-order", "extract", "extract/vision/weights.py",
          'names: Iterable[str] = ("q_proj", "k_proj", "v_proj")',
          'names: Iterable[str] = ("k_proj", "q_proj", "v_proj")',
          ("tests/test_paper_features.py::test_timm_repo_matches_timm",),
          "a fused qkv projection split into (k, q, v) instead of (q, k, v): timm and OpenAI files load, "
          "scrambled, and the features no longer match timm's"),
    # ------------------------------------------------------------------ embed-targets
    Fault("zho-means-traditional", "embed-targets", "extract/text/languages.py",
          '    "zho": "zho_Hans",\n',
          '    "zho": "zho_Hant",\n',
          ("tests/test_embed.py::test_resolve_langs_iso_and_flores",),
          "the bare code zho resolves to Traditional Chinese: every --langs zho run targets the wrong language"),
    Fault("gate-lone-full-stop-not-empty", "embed-targets", "extract/text/gates.py",
          "        if not any(ch.isalnum() for ch in out):\n",
          "        if not out.strip():\n",
          ("tests/test_embed_stage.py::test_translations_failing_the_quality_gates_are_refused_and_the_others_published",),
          "ARTEFACT (toy-embedded): the empty-output gate only sees blank strings, so translations that are a "
          "lone '。' pass and fra is published; the test reads the toy_embedded artefact, which the faulted "
          "gates.py (in embed_stage's import closure) makes rebuild"),
    Fault("gate-threshold-exclusive", "embed-targets", "extract/text/gates.py",
          "        return self.bad_fraction <= self.thresholds.max_bad_fraction\n",
          "        return self.bad_fraction < self.thresholds.max_bad_fraction\n",
          ("tests/test_translation_gates.py::test_threshold_and_worst_examples_order",),
          "a language exactly at embed.gate_max_bad_fraction is refused (the threshold is 'at most')"),
    Fault("translations-key-ignores-target-language", "embed-targets", "pipeline/embed_stage.py",
          '"src": dataset.source_lang, "tgt": lang,',
          '"src": dataset.source_lang,',
          ("tests/test_embed_stage.py::test_tiny_sonar_is_language_agnostic_and_decodes_held_out",),
          "ARTEFACT (toy-embedded): the translations cache key lacks the target language, so fra is served the "
          "eng translations (a translation mismatch); the deu->fra BLEU of the stage's targets collapses"),
    Fault("nllb-tied-keys-always-forgiven", "embed-targets", "extract/text/nllb.py",
          "    if not source:  # the shared embedding was read: its tied copies are not random\n",
          "    if True:  # the shared embedding was read: its tied copies are not random\n",
          ("tests/test_text_assets.py::test_nllb_tied_copies_are_the_only_allowed_absences",),
          "an NLLB snapshot without its shared embedding is accepted (the tied copies are forgiven even when "
          "their source is missing): a partial file would run with random embeddings"),
    # ------------------------------------------------------------------ train
    Fault("mse-summed-not-averaged", "train", "train/losses.py",
          "        mse = F.mse_loss(z, s)\n",
          '        mse = F.mse_loss(z, s, reduction="sum")\n',
          ("tests/test_train.py::test_alignment_loss_matches_hand_computation_and_zero_weight_drops_term",),
          "the MSE term summed over elements instead of averaged: 7000 * MSE is no longer the paper's loss"),
    Fault("shuffle-window-too-short", "train", "train/augment.py",
          "jitter = _rand((b, length), gen, x.device) * (window + 1)",
          "jitter = _rand((b, length), gen, x.device) * window",
          ("tests/test_train.py::test_augmentations_seeded_and_mask_correct",),
          "local shuffling never moves a step as far as shuffle_window (jitter U[0, w) instead of U[0, w+1))"),
    Fault("paper-frame-mask-halved", "train", "train/config.py",
          "    frame_mask: float = 0.2\n",
          "    frame_mask: float = 0.1\n",
          ("tests/test_train.py::test_paper_preset_and_schedule_are_spamos",),
          "the paper profile's frame-masking probability is 0.1, not the paper's 0.2"),
    Fault("lora-self-attention-only", "train", "train/decoder.py",
          "target_modules=list(targets), bias=\"none\")",
          "target_modules=[f\"self_attn.{t}\" for t in targets], bias=\"none\")",
          ("tests/test_train.py::test_lora_only_adapters_trainable_and_identity_at_init",),
          "LoRA adapters on the self-attention q/v only: the decoder's cross-attention (where z enters) gets none"),
    Fault("visual-init-missing-filter-inverted", "train", "train/visual_init.py",
          "    missing = [k for k in missing if k not in ALLOWED_MISSING]\n",
          "    missing = [k for k in missing if k in ALLOWED_MISSING]\n",
          ("tests/test_train.py::test_init_visual_block_strict_loading",),
          "--init-visual-block forgives every missing tensor but the input statistics: a partial state dict "
          "is no longer one WeightsError naming the missing key"),
    # ------------------------------------------------------------------ evaluate
    Fault("bleu-never-lower-cased", "evaluate", "train/metrics/bleu.py",
          "lowercase=lowercase, **kw)",
          "lowercase=False, **kw)",
          ("tests/test_train.py::test_bleu_casing_and_both_numbers",),
          "sacrebleu's BLEU always cased: the lower-cased headline (case:lc, PHOENIX) is really cased"),
    Fault("bleu-case-auto-ignores-dataset", "evaluate", "pipeline/train_stage.py",
          "        return DATASETS[dataset].bleu_case\n",
          "        return headline_case(setting)\n",
          ("tests/test_train.py::test_bleu_casing_and_both_numbers",),
          "train.bleu_case=auto ignores the dataset's declared casing: PHOENIX is scored cased, not lower-cased"),
    Fault("machine-translations-as-references", "evaluate", "train/evaluate.py",
          "    true = [k for k, s in enumerate(sources) if s == REFERENCE]\n",
          "    true = [k for k, s in enumerate(sources) if s is not None]\n",
          ("tests/test_eval_refs.py::test_reference_rows_only_true_references_unless_asked",),
          "machine-translated targets count as true references: a zero-shot language is scored against its "
          "own translations and labelled 'reference'"),
    # ------------------------------------------------------------------ cache
    Fault("index-not-hashed-on-open", "cache", "cache/feature_store.py",
          "hash_if=lambda rel: not _CHUNK_FILE.match(rel), rerun=rerun)",
          "hash_if=lambda rel: False, rerun=rerun)",
          ("tests/test_verify_on_read.py::test_corrupt_index_is_refused_on_open",),
          "verify-on-read off for the small files: a flipped byte in the index is read as data, not refused"),
    Fault("incomplete-entry-served", "cache", "cache/store.py",
          '        if not manifest.get("complete"):\n',
          '        if "complete" not in manifest:\n',
          ("tests/test_cache.py::test_corrupt_manifest_is_an_error_not_a_hit",),
          "an entry whose manifest says complete: false is served as a cache hit (a partial entry published)"),
    Fault("repair-adopts-failed-shards", "cache", "extract/vision/stream_writers.py",
          "            if found is not None and found[1] == shard.fingerprint and not found[2]:\n",
          "            if found is not None and found[1] == shard.fingerprint:\n",
          ("tests/test_bad_samples.py::test_adopt_shards_links_matching_shards_without_failures_only",),
          "repair hard-links a donor shard that holds failures: the restored videos are never recomputed"),
    Fault("shards-cut-from-reversed-ids", "cache", "extract/vision/runner.py",
          "    ordered = sorted(samples, key=lambda s: s.id)\n",
          "    ordered = sorted(samples, key=lambda s: s.id, reverse=True)\n",
          ("tests/test_bad_samples.py::test_only_the_restored_samples_shard_changes_fingerprint",),
          "shards are cut from the ids in reverse order (not the documented sorted_ids[k*n:(k+1)*n]): "
          "the restored sample's shard is the last one, not shard 0"),
    Fault("stream-keyed-by-its-set", "cache", "pipeline/extract_stage.py",
          "    e = stage_config(cfg, dataset.name).only(name)\n",
          "    e = stage_config(cfg, dataset.name)\n",
          ("tests/test_stream_entries.py::test_a_second_set_runs_only_its_new_encoder_and_reads_the_first_sets_bytes",),
          "a stream entry is keyed by the identity of its whole set: a second set with VideoMAE computes it again"),
    Fault("gc-keeps-a-set-of-a-corrupt-stream", "cache", "cache/gc.py",
          "        if uses and e.dir not in {path for path, _ in plan.remove}:\n",
          "        if False:\n",
          ("tests/test_stream_entries.py::test_a_stream_missing_from_a_set_is_computed_alone_and_gc_takes_a_set_with_its_corrupt_stream",),
          "gc --corrupt removes a corrupt stream entry but keeps the sets that use it, which then name an entry "
          "that is gone"),
    Fault("migrate-copies-the-shards", "cache", "cache/feature_store.py",
          "        shutil.copytree(source / name, tmp / name, copy_function=_link_or_copy)\n",
          "        shutil.copytree(source / name, tmp / name)\n",
          ("tests/test_stream_entries.py::test_an_entry_from_before_per_stream_caching_is_read_then_migrated_by_hard_links",),
          "cache migrate copies an old entry's shards into the stream entries instead of hard-linking them "
          "(twice the disk)"),
    Fault("import-key-ignores-dtype", "cache", "pipeline/spamo_stage.py",
          '        "dtype": dtype,\n        "shard_videos": cfg.extract.shard_videos,\n',
          '        "shard_videos": cfg.extract.shard_videos,\n',
          ("tests/test_spamo_io.py::test_export_writes_spamos_layout_and_import_after_export_is_the_same_entry",),
          "the imported-features key does not cover --dtype: a float16 import is served the float32 entry"),
    Fault("extract-resume-forgets-finished-shards", "cache", "extract/vision/stream_writers.py",
          "                                      writer.done_shards()))\n",
          "                                      set()))\n",
          ("tests/test_extract.py::test_kill_9_mid_run_then_resume_equals_clean_run",),
          "SLOW: a re-run after kill -9 ignores the finished shards of the .partial entry and recomputes them "
          "(no 'resuming: k of n shards already done', finished shards rewritten)"),
    Fault("embed-resume-recomputes-chunks", "cache", "extract/text/chunks.py",
          "    results = [load(path, job) for path, job in zip(paths, jobs)]\n",
          "    results = [None for _ in jobs]\n",
          ("tests/test_embed_stage.py::test_sigkill_mid_run_then_rerun_gives_identical_hdf5",),
          "SLOW: embed-targets never reads the finished chunk files a killed run left: the third run computes "
          "every chunk again instead of only the unfinished ones"),
    # ------------------------------------------------------------------ ray
    Fault("lost-shards-not-requeued", "ray", "extract/vision/ray_backend.py",
          "            ray.get(queue.requeue.remote(back))\n",
          "            pass  # (dropped: ray.get(queue.requeue.remote(back)))\n",
          ("tests/test_ray_faults.py::test_kill_9_of_a_model_worker_mid_extract_costs_only_its_shards",),
          "SLOW: the shards a killed model worker held never go back to the queue: the run cannot finish "
          "them and the result is not that of an undisturbed run"),
    Fault("lost-chunk-not-requeued", "ray", "extract/text/ray_backend.py",
          "                todo.append((i, jobs[i]))  # next out: the oldest work\n",
          "                pass  # (dropped: todo.append((i, jobs[i])))\n",
          ("tests/test_ray_faults.py::test_kill_9_of_a_text_worker_mid_job_re_queues_its_chunk_with_the_same_bytes",),
          "SLOW: the text chunk a killed text worker held is not re-queued, so it is never computed"),
    Fault("poison-after-one-death-too-many", "ray", "extract/faults.py",
          "                poison = blamed if deaths >= self.item_deaths else None\n",
          "                poison = blamed if deaths > self.item_deaths else None\n",
          ("tests/test_faults.py::test_an_item_that_keeps_killing_workers_is_failed_after_item_deaths",),
          "poison-video accounting off by one: a video is failed only after item_deaths + 1 worker deaths"),
    Fault("one-restart-too-few", "ray", "extract/faults.py",
          "            restart = self.by_worker[worker] <= self.restarts\n",
          "            restart = self.by_worker[worker] < self.restarts\n",
          ("tests/test_faults.py::test_a_lost_worker_is_said_in_one_line_and_restarted_while_it_has_restarts",),
          "a lost worker's last granted restart is refused (worker_restarts counted off by one)"),
    # ------------------------------------------------------------------ cli
    Fault("video-not-found-loses-its-fix", "cli", "pipeline/translate_stage.py",
          'raise SltPipeError("video not found", path=video, fix="pass an existing frame folder or mp4")',
          'raise SltPipeError("video not found", path=video)',
          ("tests/test_newcomer_messages.py::test_translate_checks_video_language_and_run_without_torch",),
          "translate's 'video not found' error loses its fix line (errors are one problem and one fix)"),
    Fault("help-hides-the-layer", "cli", "pipeline/cli_help.py",
          '    return f"  [here: {shown(value)}, from {where}]"\n',
          '    return f"  [here: {shown(value)}]"\n',
          ("tests/test_streams.py::test_commands_with_presets_show_this_projects_values[extract]",),
          "--help shows this project's value of an option but no longer the layer it comes from"),
    # ------------------------------------------------------------------ layering
    Fault("train-imports-pipeline", "layering", "train/config.py",
          "        from cache.errors import SltPipeError\n\n        raise SltPipeError(f\"unknown training preset",
          "        from pipeline.config import SltPipeError\n\n        raise SltPipeError(f\"unknown training preset",
          ("tests/test_layering.py::test_package_imports_only_what_it_may[train]",),
          "train/ takes SltPipeError from pipeline.config (which re-exports it): a lazy import against the "
          "train -> cache direction, and a cycle with pipeline.config"),
    Fault("evaluate-trainer-import-cycle", "layering", "train/evaluate.py",
          "    from train.config import TrainConfig\n    from train.data import CacheDataset\n",
          "    from train.trainer import TrainConfig\n    from train.data import CacheDataset\n",
          ("tests/test_layering.py::test_no_import_cycle_anywhere_in_the_project",),
          "train.evaluate takes TrainConfig from train.trainer, which imports train.evaluate: an import cycle "
          "(it works at run time, being lazy; only the static graph sees it)"),
]


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Outcome:
    verdict: str
    """caught, missed or broken."""
    seconds: float
    detail: str = ""
    """Why it is broken (or the tail of pytest's output)."""


def validate(faults: list[Fault]) -> list[str]:
    """Problems with the catalogue itself (names, areas, files, node ids); [] when sound."""
    problems = []
    names = [f.name for f in faults]
    problems += [f"duplicate name {n}" for n in sorted({n for n in names if names.count(n) > 1})]
    for f in faults:
        if f.area not in AREAS:
            problems.append(f"{f.name}: area {f.area!r} not one of {AREAS}")
        if f.file.split("/")[0] not in PACKAGES or not f.file.endswith(".py"):
            problems.append(f"{f.name}: {f.file} is not a project source file")
        if not f.tests or any("::" not in t or not t.startswith("tests/test_") for t in f.tests):
            problems.append(f"{f.name}: tests must be node ids tests/test_*.py::name")
        if f.old == f.new:
            problems.append(f"{f.name}: the edit changes nothing")
    return problems


def copy_tree(dest: Path) -> None:
    """The tracked and untracked-but-not-ignored files of REPO into `dest`, and a `.venv` symlink."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if not src.is_file() and not src.is_symlink():  # deleted in the working tree
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel, follow_symlinks=False)
    if (REPO / ".venv").exists():
        (dest / ".venv").symlink_to(REPO / ".venv")


def apply_fault(fault: Fault, root: Path) -> str | None:
    """Edit the copy at `root`; the reason it cannot be applied, or None."""
    path = root / fault.file
    if not path.is_file():
        return f"{fault.file} does not exist"
    text = path.read_text()
    n = text.count(fault.old)
    if n != 1:
        return f"the old text occurs {n} times in {fault.file} (must be exactly once)"
    path.write_text(text.replace(fault.old, fault.new))
    return None


def environment(root: Path) -> dict[str, str]:
    """The user's environment with the copy first on PYTHONPATH, so its modules (not the editable
    install's, which point at REPO) are imported, by pytest and by every process the tests start."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def check_imports(root: Path) -> str | None:
    """None when a process started elsewhere with the copy's environment imports the copy's packages."""
    code = "import sys, " + ", ".join(PACKAGES) + "; print('\\n'.join(sys.modules[p].__file__ for p in sys.argv[1:]))"
    r = subprocess.run([sys.executable, "-c", code, *PACKAGES], cwd=tempfile.gettempdir(), env=environment(root),
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        return f"importing the copy's packages failed:\n{r.stderr[-TAIL_CHARS:]}"
    wrong = [f for f in r.stdout.split() if not Path(f).resolve().is_relative_to(root.resolve())]
    return f"imported from outside the copy: {wrong}" if wrong else None


def pytest_command(tests: list[str], *, stop_first: bool = True) -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", *(["-x"] if stop_first else []), "-rfE", "-p", "no:cacheprovider",
            "-o", "addopts=", "-m", "", *tests]


def run_pytest(root: Path, tests: list[str], timeout: float, *, stop_first: bool = True) -> tuple[int | None, str]:
    """(pytest's exit code, None on timeout; its output) for `tests` run in the copy at `root`."""
    proc = subprocess.Popen(pytest_command(tests, stop_first=stop_first), cwd=root, env=environment(root),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # pytest and whatever it started in its session (CLI runs, Ray)
        out, _ = proc.communicate()
        return None, out + f"\n[fault catalogue: killed after {timeout:.0f} s]"


class Copy:
    """A temporary copy of the tree (tempfile.mkdtemp(prefix="slt-fault-")), removed on exit unless `keep`."""

    def __init__(self, keep: bool = False):
        self.keep = keep
        self.root = Path(tempfile.mkdtemp(prefix="slt-fault-"))

    def __enter__(self) -> Path:
        copy_tree(self.root)
        return self.root

    def __exit__(self, *exc: object) -> None:
        if self.keep:
            print(f"  (kept {self.root})", flush=True)
        else:
            shutil.rmtree(self.root, ignore_errors=True)


def run_fault(fault: Fault, *, timeout: float = TIMEOUT_S, keep: bool = False) -> Outcome:
    """Apply `fault` to a fresh copy, run its tests there: caught (exit 1: they fail), missed (exit 0),
    broken (the edit does not apply, the copy's modules are not the ones imported, or pytest could not
    run the tests: a usage or collection error, no tests, a timeout)."""
    t0 = time.time()
    with Copy(keep) as root:
        why = apply_fault(fault, root) or check_imports(root)
        if why:
            return Outcome("broken", time.time() - t0, why)
        code, out = run_pytest(root, list(fault.tests), timeout)
    verdict = {1: "caught", 0: "missed"}.get(code, "broken") if code is not None else "broken"
    detail = out[-TAIL_CHARS:] if verdict != "caught" else _summary_line(out)
    if verdict == "broken" and code is not None:
        detail = f"pytest exit code {code}\n{detail}"
    return Outcome(verdict, time.time() - t0, detail)


def run_baseline(faults: list[Fault], *, timeout: float, keep: bool = False) -> Outcome:
    """Every entry's tests, in one pytest run on an unmodified copy: they must all pass."""
    tests = list(dict.fromkeys(t for f in faults for t in f.tests))
    t0 = time.time()
    with Copy(keep) as root:
        why = check_imports(root)
        if why:
            return Outcome("broken", time.time() - t0, why)
        code, out = run_pytest(root, tests, timeout * max(1, len(faults)), stop_first=False)
    verdict = "passed" if code == 0 else "failed"
    return Outcome(verdict, time.time() - t0, out[-TAIL_CHARS:])


def _summary_line(out: str) -> str:
    """pytest's short test summary (-rfE: which test failed and why) and its last line."""
    lines = [ln for ln in out.strip().splitlines() if ln.strip()]
    failed = [ln[:300] for ln in lines if ln.startswith(("FAILED ", "ERROR "))]
    errors = [ln[:300] for ln in lines if ln.startswith("E ")][:3]  # the assertion that failed
    return "\n".join(failed + errors + lines[-1:])


# --------------------------------------------------------------------------- command line


def select(names: list[str] | None, area: str | None) -> list[Fault]:
    chosen = [f for f in FAULTS if (not names or f.name in names) and (area is None or f.area == area)]
    unknown = sorted(set(names or ()) - {f.name for f in FAULTS})
    if unknown:
        raise SystemExit(f"unknown fault(s): {', '.join(unknown)} (see --list)")
    return chosen


def log_line(path: Path | None, text: str) -> None:
    if path is not None:
        with open(path, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fault_catalogue", description=__doc__.split("\n\n")[0])
    p.add_argument("--list", action="store_true", help="print every entry (name, area, file, tests, why) and exit")
    p.add_argument("--only", nargs="+", action="extend", metavar="NAME", help="run only these entries")
    p.add_argument("--area", choices=AREAS, help="run only the entries of this area")
    p.add_argument("--baseline", action="store_true",
                   help="run the selected entries' tests once on the unmodified tree; they must all pass")
    p.add_argument("--check", action="store_true", help="only check that every selected edit applies (no tests run)")
    p.add_argument("--timeout", type=float, default=TIMEOUT_S, help=f"seconds per entry (default {TIMEOUT_S})")
    p.add_argument("--keep", action="store_true", help="keep the temporary copies (their paths are printed)")
    p.add_argument("--log", type=Path, help="append a time-stamped line per verdict to this file")
    p.add_argument("-v", "--verbose", action="store_true", help="print the tail of pytest's output for every entry")
    args = p.parse_args(argv)

    problems = validate(FAULTS)
    if problems:
        print("the catalogue is inconsistent:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    faults = select(args.only, args.area)
    if args.list:
        for f in faults:
            print(f"{f.name}  [{f.area}]  {f.file}\n  tests: {' '.join(f.tests)}\n  why: {f.why}")
        print(f"{len(faults)} entries")
        return 0
    if args.check:
        bad = 0
        for f in faults:
            count = (REPO / f.file).read_text().count(f.old) if (REPO / f.file).is_file() else -1
            if count != 1:
                bad += 1
                print(f"broken   {f.area:<13} {f.name}  (old text found {count} times in {f.file})")
        print(f"{len(faults) - bad} of {len(faults)} edits apply")
        return 1 if bad else 0
    if args.baseline:
        print(f"baseline: {len({t for f in faults for t in f.tests})} tests of {len(faults)} entries, unmodified tree",
              flush=True)
        res = run_baseline(faults, timeout=args.timeout, keep=args.keep)
        print(res.detail)
        print(f"baseline {res.verdict} ({res.seconds:.0f} s)")
        log_line(args.log, f"baseline {res.verdict} {res.seconds:.0f}s")
        return 0 if res.verdict == "passed" else 1

    counts = {"caught": 0, "missed": 0, "broken": 0}
    total = 0.0
    for f in faults:
        res = run_fault(f, timeout=args.timeout, keep=args.keep)
        counts[res.verdict] += 1
        total += res.seconds
        print(f"{res.verdict:<8} {f.area:<13} {f.name}  ({res.seconds:.0f} s)", flush=True)
        if res.verdict != "caught" or args.verbose:
            print("  " + res.detail.strip().replace("\n", "\n  "), flush=True)
        log_line(args.log, f"{res.verdict} {f.area} {f.name} {res.seconds:.0f}s")
    print(f"{counts['caught']} caught, {counts['missed']} missed, {counts['broken']} broken of {len(faults)} "
          f"({total:.0f} s)")
    return 0 if counts["caught"] == len(faults) else 1


if __name__ == "__main__":
    sys.exit(main())
