"""The frozen SONAR text decoder with LoRA adapters (peft), teacher forcing and decoding.

LoRA approach: fairseq2's projections (`Linear`, and the `ColumnShardedLinear` /
`RowShardedLinear` the SONAR factory actually builds) are not `torch.nn.Linear`, so peft
cannot wrap them out of the box. We use peft's custom-module support:
`LoraConfig._register_custom_module({<fairseq2 projection>: Fs2LoraLinear})`, where
`Fs2LoraLinear` is peft's own `lora.Linear` with the one difference that it reads the
in/out sizes from fairseq2's `input_dim`/`output_dim` (the forward, scaling, dropout,
merge and adapter bookkeeping are peft's). Adapters are injected in place with
`peft.inject_adapter_in_model`, so the decoder keeps its class and fairseq2's beam search
(`BeamSearchSeq2SeqGenerator`, the generator SONAR's `EmbeddingToTextModelPipeline` uses)
runs on it unchanged. Targets `q_proj`/`v_proj` match both self- and cross-attention.

Token layout (as SONAR/NLLB): a target sequence is `</s> __lang__ tok ... </s>`. Teacher
forcing feeds all but the last token and scores all but the first prediction (the language
token is forced at decoding, so it is not learned). The conditioning vector [B, D] is
cross-attended as a length-1 sequence.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cache.fairseq2_env import ensure_fairseq2

ensure_fairseq2()

from fairseq2.nn import BatchLayout  # noqa: E402
from fairseq2.nn.projection import ColumnShardedLinear, RowShardedLinear  # noqa: E402
from fairseq2.nn.projection import Linear as Fs2Linear  # noqa: E402

with warnings.catch_warnings():
    # peft warns at import that transformers 4.57 (pinned for fairseq2n, pyproject.toml) is deprecated
    warnings.filterwarnings("ignore", message="Support for Transformers", category=FutureWarning)
    from peft import LoraConfig, inject_adapter_in_model  # noqa: E402
    from peft.tuners.lora.layer import Linear as PeftLoraLinear  # noqa: E402

from train.losses import token_ce  # noqa: E402

FS2_LINEARS = (Fs2Linear, ColumnShardedLinear, RowShardedLinear)


class Fs2LoraLinear(PeftLoraLinear):
    """peft's LoRA Linear over a fairseq2 projection (sizes from input_dim/output_dim)."""

    def _get_in_out_features(self, module: nn.Module):  # type: ignore[override]
        return module.input_dim, module.output_dim


def load_base_decoder(spec: str, tiny_dir: Path | None, device: torch.device, dtype: torch.dtype):
    """The frozen SONAR decoder (`cache.sonar_models`); tests replace this function."""
    from cache.sonar_models import load_sonar_decoder

    return load_sonar_decoder(spec, tiny_dir, device, dtype)


def load_tokenizer(spec: str, tiny_dir: Path | None):
    """The NLLB tokenizer matching the decoder (`cache.sonar_models`); tests replace this function."""
    from cache.sonar_models import load_sonar_tokenizer

    return load_sonar_tokenizer(spec, tiny_dir)


def apply_lora(decoder: nn.Module, targets: list[str], rank: int, alpha: int, dropout: float) -> nn.Module:
    """Freeze every decoder parameter, then inject trainable LoRA adapters (rank 0 = no LoRA)."""
    for p in decoder.parameters():
        p.requires_grad_(False)
    if rank <= 0 or not targets:
        return decoder
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), bias="none")
    config._register_custom_module({cls: Fs2LoraLinear for cls in FS2_LINEARS})
    decoder = inject_adapter_in_model(config, decoder)
    n = sum(1 for m in decoder.modules() if isinstance(m, Fs2LoraLinear))
    if n == 0:
        raise ValueError(f"LoRA targets {targets} match no fairseq2 projection in the decoder")
    return decoder


class LoraDecoder(nn.Module):
    """SONAR decoder (frozen) + LoRA adapters + tokenizer; the only trainable part is LoRA."""

    def __init__(self, decoder: nn.Module, tokenizer: Any, *, targets: list[str], rank: int, alpha: int, dropout: float):
        super().__init__()
        self.decoder = apply_lora(decoder, targets, rank, alpha, dropout)
        self.tokenizer = tokenizer
        self.vocab_info = tokenizer.vocab_info
        self.pad_idx = self.vocab_info.pad_idx if self.vocab_info.pad_idx is not None else 0
        self._encoders: dict[str, Any] = {}

    # ---- tokens -----------------------------------------------------------------
    def encode_targets(self, texts: list[str], lang: str, max_len: int | None = None) -> list[Tensor]:
        """Texts -> target token ids `</s> __lang__ ... </s>` (long, CPU), truncated to max_len tokens."""
        enc = self._encoders.get(lang)
        if enc is None:
            enc = self._encoders[lang] = self.tokenizer.create_encoder(task="translation", lang=lang, mode="target")
        out = []
        for t in texts:
            ids = enc(t).to(torch.long).cpu()
            if max_len is not None and ids.numel() > max_len:
                ids = torch.cat([ids[: max_len - 1], ids[-1:]])
            out.append(ids)
        return out

    def pad(self, seqs: list[Tensor]) -> Tensor:
        return nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=self.pad_idx)

    # ---- teacher forcing ----------------------------------------------------------
    def logits(self, cond: Tensor, tokens: Tensor) -> Tensor:
        """cond [B, D], tokens [B, L] (padded with pad_idx) -> logits [B, L-1, V] predicting tokens[:, 1:]."""
        inp = tokens[:, :-1]
        lens = (tokens != self.pad_idx).sum(1).clamp_min(2) - 1
        layout = BatchLayout(tuple(inp.shape[:2]), lens.tolist(), device=inp.device)
        enc = cond[:, None, :]
        enc_layout = BatchLayout.of(enc)
        w = next(self.decoder.parameters())
        h = self.decoder.decode(inp, layout, enc.to(w.dtype) if not torch.is_autocast_enabled() else enc, enc_layout)
        return self.decoder.project(h)

    def ce_loss(self, cond: Tensor, tokens: Tensor) -> Tensor:
        """Token CE of decoding `tokens` from cond (language token and padding not scored)."""
        logits = self.logits(cond, tokens)
        tgt = tokens[:, 1:]
        ignore = tgt == self.pad_idx
        ignore[:, 0] = True  # the language token: forced at decoding time
        return token_ce(logits, tgt, ignore)

    # ---- decoding --------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, cond: Tensor, lang: str, *, beam_size: int = 5, max_len: int = 64, batch_size: int = 32) -> list[str]:
        """Decode each vector of cond [N, D] into `lang` (beam search; beam_size=1 is greedy)."""
        from fairseq2.generation.beam_search.generator import BeamSearchSeq2SeqGenerator
        from fairseq2.generation.text import SequenceToTextConverter
        from sonar.models.sonar_translation.model import DummyEncoderModel, SonarEncoderDecoderModel

        was_training = self.decoder.training
        model = SonarEncoderDecoderModel(DummyEncoderModel(), self.decoder).eval()
        try:
            gen = BeamSearchSeq2SeqGenerator(model, self.vocab_info, beam_size=beam_size, max_gen_len=(0, max_len))
            conv = SequenceToTextConverter(gen, self.tokenizer, task="translation", target_lang=lang, skip_special_tokens=True)
            w = next(self.decoder.parameters())
            texts: list[str] = []
            for i in range(0, cond.size(0), batch_size):
                chunk = cond[i : i + batch_size].to(w.device, w.dtype)
                out, _ = conv.batch_convert(chunk, BatchLayout.of(chunk))
                texts.extend(out)
            return texts
        finally:
            self.decoder.train(was_training)

    # ---- weights -----------------------------------------------------------------------
    def trainable_state_dict(self) -> dict[str, Tensor]:
        return {k: v for k, v in self.decoder.state_dict().items() if "lora_" in k}

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        missing, unexpected = self.decoder.load_state_dict(state, strict=False)
        lora_missing = [k for k in missing if "lora_" in k]
        if lora_missing or unexpected:
            raise ValueError(f"LoRA weights do not fit: missing {lora_missing[:5]}, unexpected {list(unexpected)[:5]}")
