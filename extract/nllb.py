"""Translators for multilingual target augmentation: NLLB (transformers) and SONAR.

`Translator` is the protocol the target stage uses: ``translate(texts, src_lang, tgt_lang)``
on one batch of sentences, and ``identity`` (a JSON-able dict for cache keys).

* `NllbTranslator(model, device)`: any NLLB / M2M100 checkpoint through transformers,
  ``AutoModelForSeq2SeqLM`` + ``AutoTokenizer(src_lang=...)`` with the target language
  forced as the first generated token (``forced_bos_token_id``). Weights are read only
  from disk (a local directory or the Hugging Face cache, ``local_files_only=True``);
  absent weights raise `WeightsError`.
* `SonarTranslator(encoder, decoder, tokenizer)`: encode in the source language, decode
  the sentence embedding in the target language with sonar's pipelines.
* `make_tiny_nllb(out_dir, sentences, seed)`: a tiny M2M100 (the NLLB architecture) with an
  NLLB tokenizer over a SentencePiece model of `sentences`, saved in HF format, so tests
  exercise the real NLLB code path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cache.errors import WeightsError

DEFAULT_NLLB = "facebook/nllb-200-distilled-600M"


@runtime_checkable
class Translator(Protocol):
    identity: dict[str, Any]
    """What determines the translations (model id, weights hash, decoding settings)."""

    def translate(self, texts: list[str], src_lang: str, tgt_lang: str) -> list[str]:
        """Translate one batch of sentences (FLORES-200 codes)."""
        ...


def _device(device: Any) -> Any:
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class NllbTranslator:
    """NLLB through transformers; greedy or beam decoding with the target forced as first token."""

    def __init__(self, model: str = DEFAULT_NLLB, device: Any = "cpu", *, num_beams: int = 4,
                 max_new_tokens: int = 128, batch_size: int = 32):
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        self.model_id = str(model)
        self.device = _device(device)
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_id, local_files_only=True)
            dtype = torch.float16 if self.device.type == "cuda" else torch.float32
            self.model = AutoModelForSeq2SeqLM.from_pretrained(
                self.model_id, local_files_only=True, dtype=dtype).to(self.device).eval()
        except (OSError, ValueError) as e:
            raise WeightsError(
                f"NLLB model {self.model_id} is not on disk ({type(e).__name__}: {str(e).splitlines()[0]})",
                path=self.model_id if Path(self.model_id).exists() else None,
                fix=f"download it once on a machine with internet (huggingface-cli download {self.model_id}) "
                "into the Hugging Face cache (HF_HOME), or set nllb_model to a local snapshot directory",
            ) from None
        self.identity = {"kind": "nllb", "model": self.model_id, "num_beams": num_beams,
                         "max_new_tokens": max_new_tokens}

    def _lang_id(self, lang: str) -> int:
        tid = self.tokenizer.convert_tokens_to_ids(lang)
        if tid is None or tid == self.tokenizer.unk_token_id:
            raise WeightsError(f"NLLB tokenizer of {self.model_id} has no language token {lang}",
                               fix="use FLORES-200 codes (extract.languages.resolve_langs)")
        return int(tid)

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


class SonarTranslator:
    """Translate through SONAR space: text -> embedding (src) -> text (tgt)."""

    def __init__(self, encoder: Any, decoder: Any, tokenizer: Any, *, identity: dict[str, Any] | None = None,
                 device: Any = "cpu", beam_size: int = 1, max_seq_len: int = 128, batch_size: int = 32):
        from cache.fairseq2_env import ensure_fairseq2

        ensure_fairseq2()
        from sonar.inference_pipelines.text import EmbeddingToTextModelPipeline, TextToEmbeddingModelPipeline

        self.device = _device(device)
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
                   *, train_steps: int = 0) -> Path:
    """Save a tiny M2M100 (NLLB architecture) + NLLB tokenizer in HF format under `out_dir`.

    `sentences` (a list, or {lang: list} aligned by index) trains the SentencePiece model.
    Weights are random for `seed` unless `train_steps` > 0 (then: brief parallel training on
    every language pair of the dict). It need not translate well: it exercises the code path.
    """
    import torch
    from transformers import M2M100Config, M2M100ForConditionalGeneration, NllbTokenizer

    from extract.tiny_sonar import train_sentencepiece

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
        model.eval()
    model.generation_config.max_length = 64
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir
