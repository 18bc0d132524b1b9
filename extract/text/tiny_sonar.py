"""A tiny SONAR text encoder + decoder, trained in a minute on CPU, for tests and the toy.

The models are built by sonar's own factories (`SonarTextEncoderFactory`,
`SonarTextDecoderFactory`) from small `SonarTextEncoderConfig` / `SonarTextDecoderConfig`
values, so everything downstream (sonar's `TextToEmbeddingModelPipeline`,
`EmbeddingToTextModelPipeline`, `TextToTextModelPipeline`, LoRA on the decoder) runs the
same code as with the real 1024-d SONAR. The tokenizer is an NLLB tokenizer
(fairseq2 `load_nllb_tokenizer`) over a SentencePiece model trained on the given
sentences, with a `__xxx_Xxxx__` control token for every FLORES-200 language.

Training (`train_tiny_sonar`) is a multilingual translation auto-encoder: every sentence
is encoded in each language A and decoded, with teacher forcing, into each language B
(all pairs including A == B; each step decodes every embedding into one random target
language), plus a relative-MSE term pulling the embeddings of parallel sentences together
and a small cross-lingual InfoNCE term, so that embeddings are language-agnostic and
decodable. A centring term keeps the batch-mean embedding small (mean pooling otherwise
leaves one dominant shared direction and every cosine is ~1).

The encoder's final layer-norm gain is frozen at `EMB_SCALE` (its bias trains) so
embeddings have roughly the real SONAR norm (about 0.2-0.3); never L2-normalise them.

Defaults (dim 128, 2+2 layers, 4 heads, FFN 512, BPE vocab ~800 incl. 202 language
tokens, batch 32, AdamW lr 2e-3, 400 steps) train in about 1-1.5 min on 2 CPU cores for
200 parallel triples and decode ~98% of held-out toy sentences exactly.

Files written to `out_dir` (a tiny-SONAR cache entry, read by `cache.sonar_models`):
    encoder.pt       state dict of SonarTextTransformerEncoderModel (fairseq2 names)
    decoder.pt       state dict of ConditionalTransformerDecoderModel (fairseq2 names)
    config.json      {"encoder": SonarTextEncoderConfig fields, "decoder": ..., "langs": [...],
                      "default_lang": ..., "train": {...}}  (vocab_info as a dict)
    tokenizer.model  SentencePiece model (NLLB-style: unk=0, bos=1, eos=2, no pad)
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from cache.errors import SltPipeError
from cache.files import write_text_atomic, writing
from extract.text.languages import FLORES200

EMB_SCALE = 0.2
"""Gain of the frozen final encoder layer norm; gives embedding norms of ~0.25 like SONAR."""

DEFAULT_DIM = 128


# --------------------------------------------------------------------------- corpus


def toy_parallel_corpus(seed: int = 0) -> dict[str, list[str]]:
    """Every sentence the toy dataset can sign (extract.datasets.toy: the one toy vocabulary), in
    deu/eng/fra, aligned by index, shuffled by `seed`; for tests and benchmarks that need text alone."""
    from extract.datasets.toy import ALL_COMBOS, LANGS, sentence

    combos = list(ALL_COMBOS)
    random.Random(seed).shuffle(combos)
    rows = [sentence(c) for c in combos]
    return {lang: [r[lang] for r in rows] for lang in LANGS}


def parallel_references(dataset: Any, splits: list[str] | str, langs: list[str]) -> dict[str, list[str]]:
    """{lang: [sentences]} aligned by index from a dataset's gold references (e.g. the toy).

    Uses `dataset.samples[split]` (items with `.id`) and `dataset.references[split][lang][id]`;
    samples lacking a reference in any of `langs` are skipped.
    """
    out: dict[str, list[str]] = {lang: [] for lang in langs}
    for split in [splits] if isinstance(splits, str) else splits:
        refs = dataset.references.get(split, {})
        for sample in dataset.samples.get(split, []):
            texts = [refs.get(lang, {}).get(sample.id) for lang in langs]
            if all(isinstance(t, str) and t.strip() for t in texts):
                for lang, t in zip(langs, texts):
                    out[lang].append(t)
    return out


# --------------------------------------------------------------------------- tokenizer
def train_sentencepiece(sentences: list[str], out_path: Path, *, vocab_size: int = 600, seed: int = 0) -> Path:
    """An NLLB-style SentencePiece model (unk=0, bos=1, eos=2, no pad; identity normalisation)."""
    import io

    import sentencepiece as spm

    out_path = Path(out_path)
    buf = io.BytesIO()
    text = "\n".join(s for s in sentences if s.strip())
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text.split("\n")),
        model_writer=buf,
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        model_type="bpe",
        character_coverage=1.0,
        normalization_rule_name="identity",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        seed_sentencepiece_size=100000,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    with writing(out_path):
        out_path.write_bytes(buf.getvalue())
    return out_path


def load_tiny_tokenizer(path: Path, langs: list[str] | None = None, default_lang: str = "eng_Latn") -> Any:
    """fairseq2 NLLB tokenizer over `path` with a control token per language (default FLORES-200)."""
    from cache.sonar_models import nllb_tokenizer

    return nllb_tokenizer(path, list(langs or FLORES200), default_lang)


# --------------------------------------------------------------------------- configs
def tiny_configs(vocab_info: Any, *, dim: int = DEFAULT_DIM, layers: int = 2, heads: int = 4,
                 dropout: float = 0.0, max_seq_len: int = 128) -> tuple[Any, Any]:
    from sonar.models.sonar_text import SonarTextDecoderConfig, SonarTextEncoderConfig

    enc = SonarTextEncoderConfig(
        model_dim=dim, max_seq_len=max_seq_len, vocab_info=vocab_info,
        num_encoder_layers=layers, num_decoder_layers=layers,
        num_encoder_attn_heads=heads, num_decoder_attn_heads=heads,
        ffn_inner_dim=dim * 4, pooling="mean",
        emb_dropout_p=dropout, attention_dropout_p=dropout, activation_dropout_p=dropout,
        normalize_before=False, _from_fairseq=False,
    )
    dec = SonarTextDecoderConfig(
        model_dim=dim, max_seq_len=max_seq_len, vocab_info=vocab_info,
        activation_fn="ReLU", no_scale_embedding=False, no_token_positional_embeddings=False,
        learned_pos=False, emb_dropout_p=dropout, attention_dropout_p=dropout,
        activation_dropout_p=dropout, normalize_before=True,
        num_encoder_layers=layers, num_decoder_layers=layers,
        num_encoder_attn_heads=heads, num_decoder_attn_heads=heads, ffn_inner_dim=dim * 4,
    )
    return enc, dec


def config_to_json(cfg: Any) -> dict[str, Any]:
    d = asdict(cfg)
    return d


def build_models(enc_cfg: Any, dec_cfg: Any) -> tuple[Any, Any]:
    """Fresh (random) tiny encoder and decoder from sonar's factories."""
    from sonar.models.sonar_text import SonarTextDecoderFactory, SonarTextEncoderFactory

    enc = SonarTextEncoderFactory(enc_cfg).create_model()
    dec = SonarTextDecoderFactory(dec_cfg).create_model()
    return enc, dec


# --------------------------------------------------------------------------- teacher forcing
def encode_batch(encoder: Any, tokenizer: Any, texts: list[str], lang: str, device: Any) -> Any:
    """Sentence embeddings [B, D] of `texts` in `lang` (differentiable)."""
    seqs, layout, _ = _collate(tokenizer, texts, lang, "source", device)
    return encoder(seqs, layout).sentence_embeddings


def decoder_logits(decoder: Any, tokenizer: Any, emb: Any, texts: list[str], lang: str, device: Any) -> tuple[Any, Any]:
    """Teacher-forced logits [B, T, V] of `texts` in `lang` given embeddings [B, D], and targets [B, T].

    Target ids are `</s> __lang__ w1 .. wn </s>` (NLLB target mode); the decoder reads all
    but the last and predicts all but the first two (the language token is forced at
    inference, so it is not a training target). Padded target positions hold -100.
    """
    from fairseq2.nn import BatchLayout

    seqs, _, lens = _collate(tokenizer, texts, lang, "target", device)
    inp = seqs[:, :-1]
    tgt = seqs[:, 1:].clone()
    tgt[:, 0] = -100  # the language token: forced at inference, never predicted
    in_lens = [n - 1 for n in lens]
    for i, n in enumerate(in_lens):
        tgt[i, n:] = -100
    inp_layout = BatchLayout.of(inp, in_lens)
    src = emb.unsqueeze(1)  # the decoder cross-attends to a length-1 sequence
    src_layout = BatchLayout.of(src, [1] * src.size(0))
    hidden = decoder.decode(inp, inp_layout, src, src_layout)
    logits = decoder.project(hidden)
    return logits, tgt


def _collate(tokenizer: Any, texts: list[str], lang: str, mode: str, device: Any) -> tuple[Any, Any, list[int]]:
    import torch
    from fairseq2.nn import BatchLayout

    enc = _encoder_for(tokenizer, lang, mode)
    ids = [enc(t) for t in texts]
    lens = [int(x.numel()) for x in ids]
    pad = tokenizer.vocab_info.pad_idx
    out = torch.full((len(ids), max(lens)), pad, dtype=torch.long)
    for i, x in enumerate(ids):
        out[i, : lens[i]] = x
    out = out.to(device)
    return out, BatchLayout.of(out, lens), lens


_ENC_CACHE: dict[tuple[int, str, str], Any] = {}


def _encoder_for(tokenizer: Any, lang: str, mode: str) -> Any:
    k = (id(tokenizer), lang, mode)
    if k not in _ENC_CACHE:
        _ENC_CACHE[k] = tokenizer.create_encoder(lang=lang, mode=mode)
    return _ENC_CACHE[k]


# --------------------------------------------------------------------------- training
TRAIN_THREADS = 1
"""CPU threads of tiny-SONAR training: the matrices are too small to gain from more, one thread
makes the weights independent of the machine's core count, and it does not stall when other
processes share the cores (OpenMP spin-waiting made 2-thread training ~10x slower there)."""


def train_tiny_sonar(sentences: dict[str, list[str]], out_dir: Path, seed: int = 0, steps: int = 400,
                     device: str = "cpu", **kw: Any) -> None:
    """Train a tiny SONAR (see `_train_tiny_sonar`) with `TRAIN_THREADS` CPU threads."""
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    try:
        _train_tiny_sonar(sentences, out_dir, seed, steps, device, **kw)
    finally:
        torch.set_num_threads(prev)


def _train_tiny_sonar(
    sentences: dict[str, list[str]],
    out_dir: Path,
    seed: int = 0,
    steps: int = 400,
    device: str = "cpu",
    *,
    dim: int = DEFAULT_DIM,
    layers: int = 2,
    batch_size: int = 32,
    lr: float = 2e-3,
    align_weight: float = 1.0,
    log_every: int = 0,
    on_step: Callable[[int, float], None] | None = None,
) -> None:
    """Train a tiny SONAR text encoder + decoder on parallel sentences and save it in `out_dir`.

    `sentences` maps FLORES-200 codes to equally long lists aligned by index. Each step
    takes `batch_size` items, encodes each in every language A and decodes into every
    language B (cross-entropy, teacher forcing), plus `align_weight` x relative MSE between
    the embeddings of the languages. Deterministic for a seed on a given machine and thread count.
    `on_step(step, loss)` is called after every optimiser step (for a progress bar).
    """
    import torch

    from cache.fairseq2_env import ensure_fairseq2

    ensure_fairseq2()
    langs = list(sentences)
    n = len(sentences[langs[0]])
    if n == 0 or any(len(v) != n for v in sentences.values()):
        raise SltPipeError("parallel sentence lists must be non-empty and equally long",
                           fix="pass {lang: [sentences]} aligned by index")
    bad = [lang for lang in langs if lang not in FLORES200]
    if bad:
        raise SltPipeError(f"not FLORES-200 codes: {bad}", fix="use codes like deu_Latn (extract.text.languages.resolve_langs)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    random.seed(seed)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    all_text = [s for lang in langs for s in sentences[lang]]
    train_sentencepiece(all_text, out_dir / "tokenizer.model", seed=seed)
    tokenizer = load_tiny_tokenizer(out_dir / "tokenizer.model")
    enc_cfg, dec_cfg = tiny_configs(tokenizer.vocab_info, dim=dim, layers=layers)
    encoder, decoder = build_models(enc_cfg, dec_cfg)
    with torch.no_grad():
        encoder.layer_norm.weight.fill_(EMB_SCALE)
        encoder.layer_norm.bias.zero_()
    encoder.layer_norm.weight.requires_grad_(False)  # bias stays trainable (it centres embeddings)
    dev = torch.device(device)
    encoder.to(dev).train()
    decoder.to(dev).train()
    params = [p for m in (encoder, decoder) for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.05, 1.0 - s / max(1, steps)))
    ce = torch.nn.CrossEntropyLoss(ignore_index=-100, label_smoothing=0.0)
    history = []
    order = torch.randperm(n, generator=gen).tolist()
    pos = 0
    for step in range(steps):
        if pos + batch_size > n:
            order = torch.randperm(n, generator=gen).tolist()
            pos = 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
        embs = {lang: encode_batch(encoder, tokenizer, [sentences[lang][i] for i in idx], lang, dev) for lang in langs}
        # decode each embedding (item i, source language A) into a random target language B
        # (A == B included): over the steps every pair is trained, at 1/L of the cost.
        tgt_of = torch.randint(len(langs), (len(langs), len(idx)), generator=gen)
        loss_ce = 0.0
        count = 0
        for b, tgt_lang in enumerate(langs):
            sel = (tgt_of == b).nonzero().tolist()  # [(src_lang_index, item_pos)]
            if not sel:
                continue
            e = torch.stack([embs[langs[a]][j] for a, j in sel])
            texts = [sentences[tgt_lang][idx[j]] for _, j in sel]
            logits, tgt = decoder_logits(decoder, tokenizer, e, texts, tgt_lang, dev)
            ntok = int((tgt != -100).sum())
            loss_ce = loss_ce + ce(logits.flatten(0, 1).float(), tgt.flatten()) * ntok
            count += ntok
        loss_ce = loss_ce / max(1, count)
        stack = torch.stack([embs[lang] for lang in langs])  # [L, B, D]
        # relative MSE: spread across languages / spread across sentences (scale-free)
        mean = stack.mean(0, keepdim=True)
        spread = (stack.detach() - stack.detach().mean(1, keepdim=True)).pow(2).sum(-1).mean().clamp_min(1e-12)
        loss_align = (stack - mean).pow(2).sum(-1).mean() / spread
        # cross-lingual InfoNCE on centred embeddings: own translation closer than others
        cen = torch.nn.functional.normalize(stack - stack.mean((0, 1), keepdim=True).detach(), dim=-1)
        target = torch.arange(len(idx), device=dev)
        for a in range(len(langs)):
            for b in range(len(langs)):
                if a != b:
                    sim = cen[a] @ cen[b].T / 0.1
                    loss_align = loss_align + 0.1 * torch.nn.functional.cross_entropy(sim, target)
        # centring: the batch mean embedding must be small next to the spread across sentences,
        # else mean pooling leaves one dominant shared direction the decoder cannot read past
        loss_centre = stack.mean((0, 1)).pow(2).sum() / spread
        loss = loss_ce + align_weight * loss_align + loss_centre
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"step {step:5d}  ce {float(loss_ce.detach()):.4f}  align {float(loss_align.detach()):.4f}  centre {float(loss_centre.detach()):.4f}  {time.time() - t0:.1f}s", flush=True)
        history.append(float(loss.detach()))
        if on_step is not None:
            on_step(step, history[-1])

    encoder.eval()
    decoder.eval()
    for name, module in (("encoder.pt", encoder), ("decoder.pt", decoder)):
        with writing(out_dir / name):  # torch reports a full disk as `unexpected pos`
            torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, out_dir / name)
    cfg = {
        "format": 1,
        "encoder": config_to_json(enc_cfg),
        "decoder": config_to_json(dec_cfg),
        "langs": list(FLORES200),
        "default_lang": "eng_Latn",
        "embedding_dim": dim,
        "train": {
            "langs": langs, "items": n, "seed": seed, "steps": steps, "batch_size": batch_size,
            "lr": lr, "align_weight": align_weight, "final_loss": history[-1] if history else None,
        },
    }
    write_text_atomic(out_dir / "config.json", json.dumps(cfg, indent=1, sort_keys=True), fsync=False)
