"""The trainable model: what the trainer reads (`TrainInputs`), the visual block and LoRA
decoder built from a config (`build_models`), and their trainable weights saved and loaded.

Shared by the trainer, evaluation and translation, which must build exactly the model a run trained.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from cache.files import write_atomic
from train import decoder as tdecoder
from train.config import TrainConfig
from train.decoder import LoraDecoder
from train.fusion import VisualBlock, build_visual_block


@dataclass
class TrainInputs:
    """What the trainer reads: caches only."""

    features: dict[str, Path]
    """Split name -> feature cache entry dir (read with cache.features.FeatureReader)."""
    targets: dict[str, Path]
    """Language (NLLB code) -> targets HDF5 (cache.targets.TargetReader); all splits in each file."""
    source_lang: str
    """The dataset's spoken language (e.g. deu_Latn); the default eval language."""
    decoder_spec: str = "text_sonar_basic_decoder"
    """SONAR decoder asset name / spec passed to cache.sonar_models."""
    tiny_dir: Path | None = None
    """Directory of tiny test models for cache.sonar_models (None = real models)."""
    encoder_spec: str | None = None
    """SONAR text encoder the targets were embedded with (evaluation embeds hypotheses with it);
    None in runs from before it was recorded (then 'tiny' when the decoder is, else unknown)."""
    dataset: str = ""
    """Dataset reader name (phoenix, csl-daily, how2sign, toy); the pipeline reads its declared BLEU casing
    when train.bleu_case=auto ("" in runs from before it was recorded: scored as written)."""
    train_split: str = "train"
    """Split trained on."""
    dev_split: str = "dev"
    """Split evaluated during training (selects the best checkpoint)."""

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        return json.loads(json.dumps(d, default=str))

    @classmethod
    def from_json(cls, d: dict) -> "TrainInputs":
        d = dict(d)
        d["features"] = {k: Path(v) for k, v in d["features"].items()}
        d["targets"] = {k: Path(v) for k, v in d["targets"].items()}
        d["tiny_dir"] = None if d.get("tiny_dir") in (None, "None") else Path(d["tiny_dir"])
        return cls(**d)


def decoder_langs(inputs: TrainInputs) -> list[str] | None:
    """Languages the run's decoder can write: a tiny SONAR knows only its corpus languages; None = all of FLORES-200."""
    if inputs.tiny_dir is None:
        return None
    config = Path(inputs.tiny_dir) / "config.json"
    if not config.is_file():
        return None
    # its tokenizer has every FLORES-200 token, but it was trained on (and writes) its corpus languages only
    return list(json.loads(config.read_text()).get("train", {}).get("langs", [])) or None


def check_decoder_langs(inputs: TrainInputs, langs: list[str]) -> None:
    """Refuses a language the run's decoder cannot write (SltPipeError naming the ones it can)."""
    known = decoder_langs(inputs)
    unknown = [lang for lang in langs if known is not None and lang not in known]
    if unknown:
        from cache.errors import SltPipeError

        raise SltPipeError(f"the run's decoder (a tiny SONAR) cannot write {', '.join(unknown)}: "
                           f"it knows only {', '.join(known or [])}",
                           path=inputs.tiny_dir, fix=f"pick one of {', '.join(known or [])}")


def build_models(cfg: TrainConfig, inputs: TrainInputs, spatial_dim: int, motion_dim: int, emb_dim: int,
                 device: torch.device) -> tuple[VisualBlock, LoraDecoder]:
    """The visual block (fresh weights) and the LoRA decoder.

    Never reads `cfg.init_visual_block`: only a fresh training run does (`train`), and it
    copies the block into the run, so evaluate/translate depend on the run dir alone.
    """
    tokenizer = tdecoder.load_tokenizer(inputs.decoder_spec, inputs.tiny_dir)
    base = tdecoder.load_base_decoder(inputs.decoder_spec, inputs.tiny_dir, device, torch.float32)
    dec = LoraDecoder(base, tokenizer, targets=cfg.lora_targets, rank=cfg.lora_rank, alpha=cfg.lora_alpha,
                      dropout=cfg.lora_dropout).to(device)
    visual = build_visual_block(cfg.visual_block, spatial_dim, motion_dim, emb_dim, hidden=cfg.hidden_dim,
                                pooling=cfg.pooling, max_pool=cfg.time_max_pool).to(device)
    return visual, dec


def translate_one(cfg: TrainConfig, inputs: TrainInputs, weights: Path, spatial, motion, lang: str,
                  device: torch.device) -> str:
    """One video's features (spatial [T, Ds], motion [C, Dm]) -> text in `lang`, with a run's trained weights."""
    from cache.targets import TargetReader

    with TargetReader(Path(inputs.targets[inputs.source_lang])) as r:
        emb_dim = r.dim
    visual, dec = build_models(cfg, inputs, spatial.shape[1], motion.shape[1], emb_dim, device)
    load_trainable(visual, dec, weights)
    visual.eval()
    with torch.no_grad():
        sp = torch.as_tensor(spatial, dtype=torch.float32, device=device)[None]
        mo = torch.as_tensor(motion, dtype=torch.float32, device=device)[None]
        ones = lambda x: torch.ones(x.shape[:2], dtype=torch.bool, device=device)  # noqa: E731
        z = visual(sp, ones(sp), mo, ones(mo))
    return dec.generate(z, lang, beam_size=cfg.beam_size, max_len=cfg.max_len)[0]


def trainable_state(visual: VisualBlock, dec: LoraDecoder) -> dict[str, torch.Tensor]:
    state = {f"visual.{k}": v for k, v in visual.state_dict().items()}
    state.update({f"lora.{k}": v for k, v in dec.trainable_state_dict().items()})
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def load_trainable(visual: VisualBlock, dec: LoraDecoder, path: Path) -> None:
    """A run's own checkpoint (strict: it was written by this code for this config)."""
    from safetensors.torch import load_file

    from cache.errors import WeightsError

    state = load_file(str(path))
    try:
        visual.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("visual.")})
    except RuntimeError as e:
        raise WeightsError(f"the run's visual block does not fit its config ({e})", path=path,
                           fix="evaluate with the run's own config.json (was the run dir edited or mixed?)") from None
    dec.load_trainable_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lora.")})


def save_weights(state: dict, path: Path, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: save_file(state, str(tmp), metadata=metadata))
