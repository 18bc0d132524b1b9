"""The toy-trained tiny text models, written in the formats real users hold.

The paper profile loads SONAR through fairseq2 asset cards and NLLB as a Hugging Face
snapshot. To rehearse that path on a laptop, the toy world's tiny models are exported in
exactly those formats, so that nothing of the tiny profile's own loading code is involved:

* `export_sonar_assets(tiny_dir, out_dir)`: the tiny SONAR (a cache entry of
  `extract.text.tiny_sonar.train_tiny_sonar`) as

      out_dir/sonar_text_encoder.pt          fairseq2 checkpoint (flat state dict, fairseq2 names)
      out_dir/sonar_text_decoder.pt          fairseq2 checkpoint
      out_dir/sentencepiece.model            the SentencePiece model of the NLLB tokenizer
      out_dir/cards/slt_rehearsal_sonar.yaml two fairseq2 asset cards:
          slt_rehearsal_sonar_encoder   model_family transformer_encoder
          slt_rehearsal_sonar_decoder   model_family transformer_decoder

  Each card names sonar's registered ``basic`` architecture and replaces every field of its
  config with the tiny model's (``model_config: {_set_: {...}}``, the override mechanism of
  fairseq2's `StandardModelFamily.get_model_config`, the same ``_set_`` form sonar's own cards
  use for ``tokenizer_config``), so nothing needs registering and fairseq2's own loader builds
  the model and checks every tensor against it. The returned ``out_dir/cards`` is the
  directory to set as ``FAIRSEQ2_USER_ASSET_DIR``; then

      embed.sonar_encoder = "slt_rehearsal_sonar_encoder"
      embed.sonar_decoder = "slt_rehearsal_sonar_decoder"

  load them through `cache.sonar_models` like any real SONAR card. The card's URIs are
  absolute ``file://`` paths, as a user's own card would be: move the folder, export again.

* `export_nllb_snapshot(tiny_nllb_dir, out_dir)`: the tiny NLLB (an M2M100 + NLLB tokenizer,
  `extract.text.nllb.make_tiny_nllb`) as a plain HF snapshot folder (``config.json``,
  ``generation_config.json``, ``model.safetensors``, tokenizer files) for
  ``embed.nllb_model=/path/to/out_dir``.

fairseq2 reads ``FAIRSEQ2_USER_ASSET_DIR`` when it first builds its asset store in a
process; a command started after the export sees the cards, code that exported in the same
process calls `cache.sonar_models.refresh_asset_store()` after setting the variable.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from cache.errors import WeightsError
from cache.files import temp_path, write_atomic

ENCODER_CARD = "slt_rehearsal_sonar_encoder"
DECODER_CARD = "slt_rehearsal_sonar_decoder"
CARD_FILE = "slt_rehearsal_sonar.yaml"
CARDS_DIR = "cards"
ENCODER_FILE = "sonar_text_encoder.pt"
DECODER_FILE = "sonar_text_decoder.pt"
TOKENIZER_FILE = "sentencepiece.model"

_FAMILIES = {"encoder": "transformer_encoder", "decoder": "transformer_decoder"}
_ARCH = "basic"
"""sonar's registered arch of both families; every field of it is replaced by the card."""


def export_sonar_assets(tiny_dir: Path, out_dir: Path) -> Path:
    """Write the tiny SONAR in `tiny_dir` as fairseq2 checkpoints + tokenizer + asset cards.

    Returns the cards directory (``out_dir/cards``) to set as ``FAIRSEQ2_USER_ASSET_DIR``.
    Card names: `ENCODER_CARD`, `DECODER_CARD`. Raises WeightsError for an incomplete entry.
    """
    import torch

    from cache.sonar_models import _tiny_config

    tiny_dir, out_dir = Path(tiny_dir), Path(out_dir).resolve()
    cfg = _tiny_config(tiny_dir)
    for part in ("encoder", "decoder"):
        if not isinstance(cfg.get(part), dict):
            raise WeightsError(f"tiny SONAR config has no {part} section", path=tiny_dir / "config.json",
                               fix="rebuild the tiny SONAR entry (extract.text.tiny_sonar.train_tiny_sonar)")
    cards_dir = out_dir / CARDS_DIR
    cards_dir.mkdir(parents=True, exist_ok=True)
    files = {"encoder": out_dir / ENCODER_FILE, "decoder": out_dir / DECODER_FILE}
    for part, dest in files.items():
        src = tiny_dir / f"{part}.pt"
        try:
            state = torch.load(src, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file is the same user problem
            raise WeightsError(f"cannot read the tiny SONAR {part} ({type(e).__name__}: {e})", path=src,
                               fix="rebuild the tiny SONAR entry") from None
        # fairseq2 >= 0.5 checkpoints are a flat {name: tensor} dict (no "model" wrapper);
        # torch.save keeps the decoder's embedding / final_proj sharing, as fairseq2 expects.
        write_atomic(dest, lambda tmp, state=state: torch.save(state, tmp), fsync=False)
    tokenizer = out_dir / TOKENIZER_FILE
    write_atomic(tokenizer, lambda tmp: shutil.copyfile(tiny_dir / "tokenizer.model", tmp), fsync=False)

    cards = [_card(ENCODER_CARD, "encoder", cfg, files["encoder"], tokenizer),
             _card(DECODER_CARD, "decoder", cfg, files["decoder"], tokenizer)]
    write_atomic(cards_dir / CARD_FILE, lambda tmp: Path(tmp).write_text(_cards_yaml(cards, tiny_dir)), fsync=False)
    return cards_dir


def _card(name: str, part: str, cfg: dict[str, Any], checkpoint: Path, tokenizer: Path) -> dict[str, Any]:
    return {
        "name": name,
        "model_family": _FAMILIES[part],
        "model_arch": _ARCH,
        "model_config": {"_set_": dict(cfg[part])},
        "checkpoint": checkpoint.as_uri(),
        "tokenizer": tokenizer.as_uri(),
        "tokenizer_family": "nllb",
        "tokenizer_config": {"_set_": {"default_lang": cfg.get("default_lang", "eng_Latn"),
                                       "langs": list(cfg["langs"])}},
    }


def _cards_yaml(cards: list[dict[str, Any]], tiny_dir: Path) -> str:
    import yaml

    header = (
        "# fairseq2 asset cards of the toy-trained tiny SONAR (slt-pipe rehearsal assets),\n"
        f"# exported from {tiny_dir}. Use: FAIRSEQ2_USER_ASSET_DIR=<this folder>, then\n"
        f"# embed.sonar_encoder={ENCODER_CARD} embed.sonar_decoder={DECODER_CARD}.\n"
    )
    return header + yaml.safe_dump_all(cards, sort_keys=False, default_flow_style=None, width=120)


def export_nllb_snapshot(tiny_nllb_dir: Path, out_dir: Path) -> Path:
    """Write the tiny NLLB in `tiny_nllb_dir` as a plain HF snapshot folder `out_dir` (returned).

    The model is read with the same strict loader as `embed.nllb_model` (so a broken entry is
    refused here, not exported) and saved by transformers itself: safetensors weights, config,
    generation config, and the tokenizer files (slow SentencePiece and fast tokenizer.json).
    """
    from transformers import AutoTokenizer

    from extract.text.nllb import load_nllb_model

    tiny_nllb_dir, out_dir = Path(tiny_nllb_dir), Path(out_dir)
    model = load_nllb_model(str(tiny_nllb_dir), "cpu")
    try:
        tok = AutoTokenizer.from_pretrained(str(tiny_nllb_dir), local_files_only=True)
    except (OSError, ValueError) as e:
        raise WeightsError(f"cannot read the tiny NLLB tokenizer ({type(e).__name__}: {e})", path=tiny_nllb_dir,
                           fix="rebuild the tiny NLLB entry (extract.text.nllb.make_tiny_nllb)") from None
    tmp = temp_path(out_dir)
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    # a folder that is there is whole: readers never see a half-written snapshot
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out_dir)
    return out_dir


def export_text_assets(tiny_sonar_dir: Path, tiny_nllb_dir: Path, assets_dir: Path) -> dict[str, Any]:
    """Both exports under `assets_dir` (``sonar/``, ``nllb/``) and the settings that use them.

    Returns {"fairseq2_user_asset_dir": Path, "sonar_encoder": ..., "sonar_decoder": ...,
    "nllb_model": Path}; a command prints these as the environment variable and --set flags.
    """
    assets_dir = Path(assets_dir).resolve()
    cards = export_sonar_assets(tiny_sonar_dir, assets_dir / "sonar")
    nllb = export_nllb_snapshot(tiny_nllb_dir, assets_dir / "nllb")
    return {"fairseq2_user_asset_dir": cards, "sonar_encoder": ENCODER_CARD, "sonar_decoder": DECODER_CARD,
            "nllb_model": nllb}


def describe(assets: dict[str, Any]) -> str:
    """Shell lines a user pastes to run the paper profile on the exported assets."""
    return "\n".join([
        f"export FAIRSEQ2_USER_ASSET_DIR={assets['fairseq2_user_asset_dir']}",
        f"--set embed.sonar_encoder={assets['sonar_encoder']} --set embed.sonar_decoder={assets['sonar_decoder']} "
        f"--set embed.nllb_model={assets['nllb_model']}",
    ])
