"""Translators for multilingual target augmentation: NLLB (transformers) and SONAR.

Both meet the protocol the target stage uses (extract.text.spec.Translator):
``translate(texts, src_lang, tgt_lang)`` on one batch of sentences, and ``identity`` (a JSON-able
dict for cache keys); extract.text.translators says how the stage builds and keys them.

* `NllbTranslator(model, device)`: any NLLB / M2M100 checkpoint through transformers,
  ``AutoModelForSeq2SeqLM`` + ``AutoTokenizer(src_lang=...)`` with the target language
  forced as the first generated token (``forced_bos_token_id``). Weights are read only
  from disk (a local directory or the Hugging Face cache, ``local_files_only=True``) and
  strictly (`load_nllb_model`): absent weights, or a file that does not fill every tensor
  of the model its config.json describes, raise `WeightsError`; so do language codes
  (``langs=``) the tokenizer lacks, before any model is loaded (`nllb_missing_langs` asks
  the tokenizer alone, so a stage can refuse them before it loads anything). `nllb_identity`
  hashes a snapshot's files for cache keys.
* `SonarTranslator(encoder, decoder, tokenizer)`: encode in the source language, decode
  the sentence embedding in the target language with sonar's pipelines.
* `make_tiny_nllb(out_dir, sentences, seed)`: a tiny M2M100 (the NLLB architecture) with an
  NLLB tokenizer over a SentencePiece model of `sentences`, saved in HF format, so tests
  exercise the real NLLB code path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from cache.device import resolve_device
from cache.errors import WeightsError

DEFAULT_NLLB = "facebook/nllb-200-distilled-600M"


class NllbTranslator:
    """NLLB through transformers; greedy or beam decoding with the target forced as first token."""

    def __init__(self, model: str = DEFAULT_NLLB, device: Any = "cpu", *, num_beams: int = 4,
                 max_new_tokens: int = 128, batch_size: int = 32, langs: list[str] | None = None):
        """`langs`: FLORES-200 codes this translator will be asked for, checked against the
        tokenizer right after loading (before any translation work)."""
        import torch

        self.model_id = str(model)
        self.device = resolve_device(device)
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.tokenizer = load_nllb_tokenizer(self.model_id)
        if langs:
            self.check_langs(langs)
        dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.model = load_nllb_model(self.model_id, self.device, dtype)
        self.identity = {"kind": "nllb", "model": self.model_id, "num_beams": num_beams,
                         "max_new_tokens": max_new_tokens}

    def check_langs(self, langs: list[str]) -> None:
        """WeightsError listing every code in `langs` the tokenizer has no language token for."""
        missing = [lang for lang in langs if not self._has_lang(lang)]
        if missing:
            raise WeightsError(
                f"NLLB tokenizer of {self.model_id} has no language token for {', '.join(missing)}",
                path=self.model_id if Path(self.model_id).exists() else None,
                fix="use FLORES-200 codes the model was trained on (extract.text.languages.resolve_langs), "
                "or a snapshot whose tokenizer has them")

    def _has_lang(self, lang: str) -> bool:
        return _has_lang_token(self.tokenizer, lang)

    def _lang_id(self, lang: str) -> int:
        self.check_langs([lang])
        return int(self.tokenizer.convert_tokens_to_ids(lang))

    def translate(self, texts: list[str], src_lang: str, tgt_lang: str) -> list[str]:
        import torch

        if not texts:
            return []
        self.tokenizer.src_lang = src_lang
        forced = self._lang_id(tgt_lang)
        self._lang_id(src_lang)
        out: list[str] = []
        for i in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(list(texts[i : i + self.batch_size]), return_tensors="pt",
                                   padding=True, truncation=True, max_length=512).to(self.device)
            with torch.inference_mode():
                gen = self.model.generate(**batch, forced_bos_token_id=forced, num_beams=self.num_beams,
                                          max_new_tokens=self.max_new_tokens)
            out.extend(self.tokenizer.batch_decode(gen, skip_special_tokens=True))
        return out

    def generate_ids(self, texts: list[str], src_lang: str, tgt_lang: str) -> Any:
        """Raw generated ids (for checking the forced language token)."""
        import torch

        self.tokenizer.src_lang = src_lang
        batch = self.tokenizer(list(texts), return_tensors="pt", padding=True).to(self.device)
        with torch.inference_mode():
            return self.model.generate(**batch, forced_bos_token_id=self._lang_id(tgt_lang),
                                       num_beams=self.num_beams, max_new_tokens=self.max_new_tokens)


def load_nllb_tokenizer(model_id: str) -> Any:
    """The snapshot's tokenizer from disk (no weights are read), or WeightsError."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(model_id), local_files_only=True)
    except (OSError, ValueError) as e:
        raise _not_on_disk(str(model_id), e) from None


def nllb_missing_langs(model_id: str, langs: list[str]) -> list[str]:
    """The codes in `langs` the snapshot's tokenizer has no language token for, read from the
    tokenizer alone: a target stage can refuse them before loading any model."""
    tokenizer = load_nllb_tokenizer(model_id)
    return [lang for lang in langs if not _has_lang_token(tokenizer, lang)]


def _has_lang_token(tokenizer: Any, lang: str) -> bool:
    tid = tokenizer.convert_tokens_to_ids(lang)
    return tid is not None and tid != tokenizer.unk_token_id


# ------------------------------------------------------------------ strict loading
def load_nllb_model(model_id: str, device: Any = "cpu", dtype: Any = None) -> Any:
    """AutoModelForSeq2SeqLM from disk, every weight from the file, or WeightsError.

    transformers' `from_pretrained` fills any tensor the file lacks with random values and
    only logs it; here every missing, unexpected or mis-shaped tensor is refused, naming the
    weights file, the first keys and the fix (the only exceptions: see `_unexplained`).
    """
    import torch
    from transformers import AutoModelForSeq2SeqLM

    try:
        model, info = AutoModelForSeq2SeqLM.from_pretrained(
            model_id, local_files_only=True, dtype=dtype or torch.float32, output_loading_info=True)
    except (OSError, ValueError) as e:
        raise _not_on_disk(model_id, e) from None
    except RuntimeError as e:
        # a tensor whose shape differs from the config: transformers raises from load_state_dict
        if "size mismatch" not in str(e):
            raise
        # transformers names only the module's own parameter ("bias"): find the full names
        shapes = _shape_diff(model_id) or [ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln]
        raise _partial_error(model_id, [], [], shapes) from None
    missing, unexpected = _unexplained(model, info)
    mismatched = [f"{k} {tuple(a)} in the file, {tuple(b)} in the model" for k, a, b in info.get("mismatched_keys", [])]
    errors = list(info.get("error_msgs", []))
    if missing or unexpected or mismatched or errors:
        raise _partial_error(model_id, missing, unexpected, mismatched + errors)
    return model.to(resolve_device(device)).eval()


# The only tensors a snapshot may lack or carry extra, because transformers rebuilds them
# rather than reading them: with ``tie_word_embeddings`` (the M2M100/NLLB default)
# ``lm_head.weight``, ``model.encoder.embed_tokens.weight`` and ``model.decoder.embed_tokens.weight``
# are the shared embedding ``model.shared.weight`` (the model's ``_tied_weights_keys``), so they
# may be absent, but only while the shared embedding itself is in the file; and the sinusoidal
# position tables (``*.embed_positions.weights``, non-persistent buffers computed from the
# config), which old checkpoints may still carry.
def _unexplained(model: Any, info: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Missing and unexpected keys, less the tied and derived ones transformers rebuilds (see above)."""
    missing = sorted(info.get("missing_keys", []))
    unexpected = sorted(k for k in info.get("unexpected_keys", []) if not k.endswith("embed_positions.weights"))
    tied = set()
    if getattr(model.config, "tie_word_embeddings", False):
        prefix = f"{model.base_model_prefix}." if getattr(model, "base_model_prefix", "") else ""
        for k in getattr(model, "_tied_weights_keys", None) or []:
            tied.update({k, prefix + k})
    source = [k for k in missing if k.endswith("shared.weight")]
    if not source:  # the shared embedding was read: its tied copies are not random
        missing = [k for k in missing if k not in tied]
    return missing, unexpected


def _shape_diff(model_id: str) -> list[str]:
    """'name (file shape) in the file, (model shape) in the model' for every tensor whose shape
    differs from the model config.json describes (read without loading any tensor data)."""
    import json as _json

    import torch
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    weights = Path(_weights_file(model_id))
    if not weights.is_file():
        return []
    if weights.name.endswith(".index.json"):
        files = sorted({weights.parent / f for f in _json.loads(weights.read_text())["weight_map"].values()})
    else:
        files = [weights]
    in_file: dict[str, tuple[int, ...]] = {}
    for f in files:
        if f.suffix == ".safetensors":
            with safe_open(str(f), "pt") as st:
                in_file.update({k: tuple(st.get_slice(k).get_shape()) for k in st.keys()})
        else:
            state = torch.load(f, map_location="cpu", mmap=True, weights_only=True)
            in_file.update({k: tuple(v.shape) for k, v in state.items()})
    with torch.device("meta"):
        model = AutoModelForSeq2SeqLM.from_config(AutoConfig.from_pretrained(model_id, local_files_only=True))
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return [f"{k} {in_file[k]} in the file, {expected[k]} in the model"
            for k in sorted(in_file) if k in expected and in_file[k] != expected[k]]


NLLB_FILES = ("config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",
              "pytorch_model.bin", "pytorch_model.bin.index.json", "sentencepiece.bpe.model", "tokenizer.json",
              "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
"""The files of an NLLB snapshot that determine its translations (weights, config, tokenizer)."""


def nllb_identity(model_id: str) -> dict[str, Any]:
    """What identifies an NLLB model in cache keys, without loading it: the id and, for a snapshot
    on disk (a folder or the HF cache), the sha256 of each of its `NLLB_FILES` and weight shards
    (hashed once per machine while path, size and mtime hold; HF cache blobs are named by their sha256 and
    not read)."""
    from cache.sonar_models import file_identity

    snap = _snapshot_dir(model_id)
    if snap is None:
        return {"model": str(model_id)}
    names = [n for n in NLLB_FILES if (snap / n).is_file()]
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (snap / index).is_file():
            import json as _json

            names += sorted(set(_json.loads((snap / index).read_text())["weight_map"].values()))
    return {"model": str(model_id), "files": {n: file_identity(snap / n)["sha256"] for n in names}}


def _snapshot_dir(model_id: str) -> Path | None:
    """The folder holding `model_id`'s files: the folder itself, or its HF-cache snapshot; None if absent."""
    path = Path(model_id)
    if path.is_dir():
        return path
    from cache.hf_cache import hf_snapshot

    return hf_snapshot(model_id, ("config.json",))


def _weights_file(model_id: str) -> str:
    """The weights file (or index) of a snapshot, for error messages; the id when it is not local."""
    path = _snapshot_dir(model_id)
    if path is None:
        return model_id
    for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json"):
        if (path / name).exists():
            return str(path / name)
    return str(path)


def _partial_error(model_id: str, missing: list[str], unexpected: list[str], other: list[str]) -> WeightsError:
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("other problems", other)):
        if keys:
            more = f", ... ({len(keys) - 5} more)" if len(keys) > 5 else ""
            parts.append(f"{len(keys)} {label}: {', '.join(keys[:5])}{more}")
    return WeightsError(
        f"NLLB weights do not fill the model its config.json describes: {'; '.join(parts)}",
        path=_weights_file(model_id),
        fix="use the complete snapshot the config belongs to (re-download it: huggingface-cli download "
        f"{model_id if not Path(model_id).exists() else 'REPO'}), or fix config.json to describe the "
        "checkpoint; a partial file would translate with random weights")


def _not_on_disk(model_id: str, e: Exception) -> WeightsError:
    return WeightsError(
        f"NLLB model {model_id} is not on disk ({type(e).__name__}: {str(e).splitlines()[0]})",
        path=model_id if Path(model_id).exists() else None,
        fix=f"download it once on a machine with internet (huggingface-cli download {model_id}) "
        "into the Hugging Face cache (HF_HOME), or set nllb_model to a local snapshot directory",
    )


class SonarTranslator:
    """Translate through SONAR space: text -> embedding (src) -> text (tgt)."""

    def __init__(self, encoder: Any, decoder: Any, tokenizer: Any, *, identity: dict[str, Any] | None = None,
                 device: Any = "cpu", beam_size: int = 1, max_seq_len: int = 128, batch_size: int = 32):
        from cache.fairseq2_env import ensure_fairseq2

        ensure_fairseq2()
        from sonar.inference_pipelines.text import EmbeddingToTextModelPipeline, TextToEmbeddingModelPipeline

        self.device = resolve_device(device)
        self.t2e = TextToEmbeddingModelPipeline(encoder, tokenizer, device=self.device)
        self.e2t = EmbeddingToTextModelPipeline(decoder, tokenizer, device=self.device)
        self.beam_size = beam_size
        self.max_seq_len = max_seq_len
        self.batch_size = batch_size
        self.identity = {"kind": "sonar", **(identity or {}), "beam_size": beam_size, "max_seq_len": max_seq_len}

    @classmethod
    def from_spec(cls, encoder: str, decoder: str, tiny_dir: Path | None = None, device: Any = "cpu",
                  **kw: Any) -> "SonarTranslator":
        from cache.sonar_models import load_sonar_decoder, load_sonar_encoder, load_sonar_tokenizer, sonar_identity

        return cls(load_sonar_encoder(encoder, tiny_dir, device), load_sonar_decoder(decoder, tiny_dir, device),
                   load_sonar_tokenizer(encoder, tiny_dir),
                   identity={"encoder": sonar_identity(encoder, tiny_dir), "decoder": sonar_identity(decoder, tiny_dir)},
                   device=device, **kw)

    def translate(self, texts: list[str], src_lang: str, tgt_lang: str) -> list[str]:
        if not texts:
            return []
        emb = self.t2e.predict(list(texts), source_lang=src_lang, batch_size=self.batch_size)
        return self.e2t.predict(emb, target_lang=tgt_lang, batch_size=self.batch_size,
                                beam_size=self.beam_size, max_seq_len=self.max_seq_len)


def make_tiny_nllb(out_dir: Path, sentences: dict[str, list[str]] | list[str], seed: int = 0,
                   *, train_steps: int = 0, on_step: Callable[[int, float], None] | None = None) -> Path:
    """Save a tiny M2M100 (NLLB architecture) + NLLB tokenizer in HF format under `out_dir`.

    `sentences` (a list, or {lang: list} aligned by index) trains the SentencePiece model.
    Weights are random for `seed` unless `train_steps` > 0 (then: brief parallel training on
    every language pair of the dict). It need not translate well: it exercises the code path.
    It only ever saw the dict's languages: asked for another, it writes one of those.
    `on_step(step, loss)` is called after every training step (for a progress bar).
    """
    import torch
    from transformers import M2M100Config, M2M100ForConditionalGeneration, NllbTokenizer

    from extract.text.tiny_sonar import train_sentencepiece

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    flat = [s for v in sentences.values() for s in v] if isinstance(sentences, dict) else list(sentences)
    spm_path = train_sentencepiece(flat, out_dir / "spm.model", vocab_size=500, seed=seed)
    tok = NllbTokenizer(vocab_file=str(spm_path), src_lang="eng_Latn", tgt_lang="fra_Latn")
    torch.manual_seed(seed)
    cfg = M2M100Config(
        vocab_size=len(tok), d_model=64, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
        max_position_embeddings=256, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        scale_embedding=True, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.eos_token_id,
    )
    model = M2M100ForConditionalGeneration(cfg)
    if train_steps and isinstance(sentences, dict):
        langs = list(sentences)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(seed)
        n = len(sentences[langs[0]])
        model.train()
        for step in range(train_steps):
            a, b = (langs[int(i)] for i in torch.randint(len(langs), (2,), generator=g))
            idx = torch.randint(n, (16,), generator=g).tolist()
            tok.src_lang, tok.tgt_lang = a, b
            batch = tok([sentences[a][i] for i in idx], text_target=[sentences[b][i] for i in idx],
                        return_tensors="pt", padding=True)
            batch["labels"][batch["labels"] == tok.pad_token_id] = -100
            loss = model(**batch).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            if on_step is not None:
                on_step(step, float(loss.detach()))
        model.eval()
    model.generation_config.max_length = 64
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


# --------------------------------------------------------------------------- pre-flight facts (slt-pipe doctor)

from dataclasses import dataclass, field  # noqa: E402  (appended section: the rest of the module is left as is)

NLLB_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
"""An NLLB snapshot's weights, in the order they are looked for."""
NLLB_TOKENIZER = ("sentencepiece.bpe.model", "tokenizer.json")


@dataclass
class NllbCheck:
    """Where an NLLB model is and whether its snapshot is complete, found without loading it (`check_nllb`)."""

    model: str
    local: bool
    """`model` names a folder (absolute, ./, ~ or existing), not a Hugging Face id."""
    found: str | None = None
    """How the snapshot was found ("local folder", "Hugging Face cache (ID)"); None when it was not."""
    path: Path | None = None
    """The snapshot folder."""
    hf_cache: Path | None = None
    """The Hugging Face cache searched in vain for the id."""
    missing: list[str] = field(default_factory=list)
    """What the snapshot lacks: config.json, the weights, the tokenizer."""
    weights_file: Path | None = None
    """The first of NLLB_WEIGHTS present (a file, or a shard index)."""
    weights: list[Path] = field(default_factory=list)
    """The files holding the weights (the shards an index names)."""
    bytes: int = 0
    tokenizer: list[str] = field(default_factory=list)
    problem: WeightsError | None = None
    """Why the model cannot be loaded, with the path at fault and the fix (None: complete)."""


def check_nllb(model: str) -> NllbCheck:
    """Find `model` (a snapshot folder or an id in the Hugging Face cache) and check that its snapshot
    holds config.json, weights and a tokenizer; every tensor is checked only when it is loaded."""
    from cache.hf_cache import hf_cache_dir, hf_snapshot
    from extract.vision.weights import weight_files

    path = Path(model).expanduser()
    local = path.is_absolute() or model.startswith((".", "~")) or path.exists()
    out = NllbCheck(model, local)
    if local:
        if not path.is_dir():
            out.problem = WeightsError("NLLB snapshot folder is missing", path=path, fix=(
                "set embed.nllb_model to the folder holding config.json, the weights and the tokenizer "
                "(or an HF id in the Hugging Face cache)"))
            return out
        snap, found = path, "local folder"
    else:
        try:
            snap = hf_snapshot(model, ("config.json",))
        except Exception:  # noqa: BLE001 - an id the hub rejects (HFValidationError)
            snap = None
        found = f"Hugging Face cache ({model})"
        if snap is None:
            out.hf_cache = hf_cache_dir()
            out.problem = WeightsError(
                f"NLLB model {model} is not in the Hugging Face cache (embed.translator = nllb)", path=out.hf_cache,
                fix=f"on a machine with internet run `huggingface-cli download {model}` and copy the cache here "
                    "(set HF_HOME), or set embed.nllb_model=/path/to/snapshot")
            return out
    out.found, out.path = found, snap
    if not (snap / "config.json").is_file():
        out.missing.append("config.json")
    out.weights_file = next((snap / n for n in NLLB_WEIGHTS if (snap / n).is_file()), None)
    if out.weights_file is None:
        out.missing.append(f"weights ({' / '.join(NLLB_WEIGHTS)})")
    out.tokenizer = [n for n in NLLB_TOKENIZER if (snap / n).is_file()]
    if not out.tokenizer:
        out.missing.append(f"tokenizer ({' or '.join(NLLB_TOKENIZER)})")
    if out.missing:
        out.problem = WeightsError(f"NLLB snapshot lacks {', '.join(out.missing)}", path=snap, fix=(
            "complete the folder (config.json, the weights, the tokenizer) or point embed.nllb_model at a complete "
            "snapshot folder" if local else
            f"re-download the snapshot (huggingface-cli download {model}) or set embed.nllb_model=/path/to/snapshot"))
        return out
    try:
        out.weights = weight_files(out.weights_file)  # type: ignore[arg-type]
    except WeightsError as err:
        out.problem = err
        return out
    out.bytes = sum(f.stat().st_size for f in out.weights)
    return out
