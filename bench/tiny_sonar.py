"""Benchmark the tiny SONAR: `python -m bench.tiny_sonar [--steps N] [--seed S] [--train N]`.

Trains the tiny SONAR on a toy-like weather corpus (deu/eng/fra, parallel), then on the
held-out sentences prints: embedding norms, cross-lingual cosines (own translation vs other
sentences), retrieval accuracy, decode exact-match (auto-encoding), and sacrebleu BLEU of
deu->eng and deu->fra translation through the tiny SONAR translator against gold references.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def evaluate(tiny_dir: Path, held: dict[str, list[str]], *, beam_size: int = 1) -> dict[str, float]:
    import sacrebleu
    import torch
    import torch.nn.functional as F

    from cache.sonar_models import load_sonar_decoder, load_sonar_encoder, load_sonar_tokenizer
    from extract.text.nllb import SonarTranslator

    tok = load_sonar_tokenizer("tiny", tiny_dir)
    tr = SonarTranslator(load_sonar_encoder("tiny", tiny_dir), load_sonar_decoder("tiny", tiny_dir), tok,
                         beam_size=beam_size, batch_size=64)
    res: dict[str, float] = {}
    emb = {lang: tr.t2e.predict(texts, source_lang=lang, batch_size=64) for lang, texts in held.items()}
    res["norm"] = float(emb["deu_Latn"].norm(dim=-1).mean())
    langs = list(held)
    for i, a in enumerate(langs):
        for b in langs[i + 1 :]:
            s = F.normalize(emb[a], dim=-1) @ F.normalize(emb[b], dim=-1).T
            n = s.shape[0]
            res[f"cos_own_{a[:3]}_{b[:3]}"] = float(s.diag().mean())
            res[f"cos_other_{a[:3]}_{b[:3]}"] = float((s.sum() - s.diag().sum()) / (n * n - n))
            res[f"retrieval_{a[:3]}_{b[:3]}"] = float((s.argmax(1) == torch.arange(n)).float().mean())
    for lang in langs:
        out = tr.e2t.predict(emb[lang], target_lang=lang, batch_size=64, beam_size=beam_size)
        res[f"exact_{lang[:3]}"] = sum(o == r for o, r in zip(out, held[lang])) / len(out)
    for tgt in ("eng_Latn", "fra_Latn"):
        hyp = tr.translate(held["deu_Latn"], "deu_Latn", tgt)
        res[f"bleu_deu_{tgt[:3]}"] = sacrebleu.corpus_bleu(hyp, [held[tgt]]).score
        res[f"exact_deu_{tgt[:3]}"] = sum(o == r for o, r in zip(hyp, held[tgt])) / len(hyp)
    return res


def main(argv: list[str] | None = None) -> None:
    from cache.fairseq2_env import ensure_fairseq2

    ensure_fairseq2()
    from extract.text.tiny_sonar import toy_parallel_corpus, train_tiny_sonar

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train", type=int, default=200, help="training triples (the rest is held out)")
    ap.add_argument("--out", type=Path, default=None, help="keep the trained entry here")
    args = ap.parse_args(argv)

    corpus = toy_parallel_corpus(args.seed)
    train = {k: v[: args.train] for k, v in corpus.items()}
    held = {k: v[args.train :] for k, v in corpus.items()}
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "tiny_sonar"
        t0 = time.time()
        train_tiny_sonar(train, out, seed=args.seed, steps=args.steps, log_every=100)
        t_train = time.time() - t0
        t0 = time.time()
        res = evaluate(out, held)
        t_eval = time.time() - t0
    print(f"\ntiny SONAR: {args.train} training triples, {len(held['deu_Latn'])} held out, "
          f"{args.steps} steps in {t_train:.0f}s (eval {t_eval:.0f}s)")
    for k, v in res.items():
        print(f"  {k:24s} {v:8.3f}")


if __name__ == "__main__":
    main()
