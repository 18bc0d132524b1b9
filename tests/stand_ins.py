"""Tiny stand-ins for tests and smoke runs: SentencePiece/NLLB tokenizer trained on the fly,
a toy SONAR decoder built with sonar's own factory, and in-memory feature/target readers
that follow the `cache.features.FeatureReader` / `cache.targets.TargetReader` contracts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cache.fairseq2_env import ensure_fairseq2


def make_tokenizer(sentences: list[str], langs: list[str], work_dir: Path, vocab_size: int = 64):
    """An NLLB tokenizer (fairseq2 loader) over a SentencePiece model trained on `sentences`."""
    ensure_fairseq2()
    import sentencepiece as spm
    from fairseq2.models.nllb.tokenizer import NllbTokenizerConfig, load_nllb_tokenizer

    work_dir.mkdir(parents=True, exist_ok=True)
    prefix = work_dir / "toy_spm"
    if not Path(f"{prefix}.model").exists():
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences * 4), model_prefix=str(prefix), vocab_size=vocab_size,
            model_type="unigram", character_coverage=1.0, bos_id=-1, pad_id=-1, eos_id=2, unk_id=1,
            hard_vocab_limit=False, minloglevel=2,
        )
    return load_nllb_tokenizer(Path(f"{prefix}.model"), NllbTokenizerConfig(langs=list(langs), default_lang=langs[0]))


def make_decoder(vocab_info, *, model_dim: int = 32, input_dim: int = 16, layers: int = 2, seed: int = 0):
    """A toy `ConditionalTransformerDecoderModel` (same class as the real SONAR decoder)."""
    ensure_fairseq2()
    from sonar.models.sonar_text.config import SonarTextDecoderConfig
    from sonar.models.sonar_text.factory import SonarTextDecoderFactory

    cfg = SonarTextDecoderConfig(
        model_dim=model_dim, max_seq_len=128, vocab_info=vocab_info, learned_pos=False, no_scale_embedding=False,
        emb_dropout_p=0.1, attention_dropout_p=0.1, activation_dropout_p=0.1, no_token_positional_embeddings=False,
        activation_fn="ReLU", normalize_before=True, num_encoder_layers=1, num_decoder_layers=layers,
        num_encoder_attn_heads=4, num_decoder_attn_heads=4, ffn_inner_dim=2 * model_dim, input_dim=input_dim,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return SonarTextDecoderFactory(cfg).create_model()


class ToyFeatureReader:
    """In-memory `FeatureReader`: .ids, .spatial_dim, .motion_dim, .get(id) -> (spatial f16 [T,Ds], motion f16 [C,Dm])."""

    def __init__(self, items: dict[str, tuple[np.ndarray, np.ndarray]]):
        self._items = items
        self.ids = list(items)
        first = next(iter(items.values()))
        self.spatial_dim, self.motion_dim = first[0].shape[1], first[1].shape[1]

    def get(self, video_id: str):
        return self._items[video_id]

    def preload(self, max_bytes: int) -> bool:
        return True  # already in memory


class ToyTargetReader:
    """In-memory `TargetReader`: .lang, ids(split), texts(split), embeddings(split) -> f32 [N, D]."""

    def __init__(self, lang: str, splits: dict[str, tuple[list[str], list[str], np.ndarray]]):
        self.lang = lang
        self._splits = splits

    def ids(self, split):
        return list(self._splits[split][0])

    def texts(self, split):
        return list(self._splits[split][1])

    def embeddings(self, split):
        return np.asarray(self._splits[split][2], dtype=np.float32)


def make_toy_corpus(n_per_split: dict[str, int], langs: list[str], *, spatial_dim=12, motion_dim=8, emb_dim=16, seed=0):
    """Synthetic corpus where the features carry the target embedding (so it is learnable).

    Returns (feature readers per split, target readers per lang, all sentences).
    """
    rng = np.random.default_rng(seed)
    words = {lang: [f"{lang[:2]}{w}" for w in ["hund", "katze", "regen", "sonne", "haus", "baum"]] for lang in langs}
    proj_s = rng.normal(size=(emb_dim, spatial_dim)).astype(np.float32)
    proj_m = rng.normal(size=(emb_dim, motion_dim)).astype(np.float32)
    feats, tsplits, sentences = {}, {lang: {} for lang in langs}, []
    for split, n in n_per_split.items():
        items = {}
        ids, texts, embs = [], {lang: [] for lang in langs}, []
        for i in range(n):
            k = int(rng.integers(0, 6))
            vid = f"{split}_{i:03d}"
            e = (rng.normal(size=emb_dim) * 0.02).astype(np.float32)
            e[k] += 0.25
            t = int(rng.integers(10, 30))
            c = max(1, (t - 16) // 8 + 1)
            sp = (e @ proj_s)[None] * 4 + rng.normal(size=(t, spatial_dim)) * 0.1
            mo = (e @ proj_m)[None] * 4 + rng.normal(size=(c, motion_dim)) * 0.1
            items[vid] = (sp.astype(np.float16), mo.astype(np.float16))
            ids.append(vid)
            embs.append(e)
            for lang in langs:
                texts[lang].append(f"{words[lang][k]} {words[lang][(k + 1) % 6]}")
        feats[split] = ToyFeatureReader(items)
        for lang in langs:
            tsplits[lang][split] = (ids, texts[lang], np.stack(embs))
            sentences.extend(texts[lang])
    targets = {lang: ToyTargetReader(lang, tsplits[lang]) for lang in langs}
    return feats, targets, sorted(set(sentences))
