"""Settings of the extraction and target-embedding stages (dataset, feature models, text models)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal


@dataclass
class ClipSettings:
    """Settings of the `clip` encoder (extract.clip.*)."""

    model: str = "openai/clip-vit-large-patch14"
    """Hugging Face repo id looked up in the local HF cache when `weights` is unset (paper: CLIP ViT-L/14, run as transformers' CLIPVisionModel; timm/vit_large_patch14_clip_224.openai is tried too)."""
    weights: str | None = None
    """CLIP weights in any format users hold: a transformers snapshot folder (CLIPModel or CLIPVisionModel), a timm repo folder, open_clip_pytorch_model.bin / open_clip_model.safetensors, or OpenAI's ViT-L-14.pt. Detected from the tensors' names; must fill every parameter of `arch`."""
    arch: str = "ViT-L/14"
    """Architecture the weights must fill: ViT-L/14 (paper), ViT-B/16, or 'snapshot' (the transformers snapshot's own config.json; for other CLIP sizes and rehearsals)."""


@dataclass
class VideoMAESettings:
    """Settings of the `videomae` encoder (extract.videomae.*)."""

    model: str = "MCG-NJU/videomae-large"
    """Hugging Face repo id of a VideoMAE snapshot in the local HF cache (paper: VideoMAE-L), used when `weights` is unset."""
    weights: str | None = None
    """Local VideoMAE snapshot folder (VideoMAEForPreTraining, VideoMAEModel or a classifier); None reads the Hugging Face cache."""
    arch: str = "VideoMAE-L"
    """Architecture the weights must fill: VideoMAE-L (paper), VideoMAE-B, or 'snapshot' (its config.json)."""


@dataclass
class Dinov2Settings:
    """Settings of the `dinov2` encoder (extract.dinov2.*)."""

    model: str = "facebook/dinov2-large"
    """Hugging Face repo id looked up in the local HF cache when `weights` is unset."""
    weights: str | None = None
    """A transformers snapshot folder (Dinov2Model or Dinov2ForImageClassification) or the torch hub checkpoint (dinov2_vitl14_pretrain.pth); must fill every parameter of `arch`."""
    arch: str = "ViT-L/14"
    """Architecture the weights must fill: ViT-L/14 (dinov2-large), ViT-B/14, or 'snapshot' (the snapshot's config.json)."""


@dataclass
class Dinov3Settings:
    """Settings of the `dinov3` encoder (extract.dinov3.*)."""

    model: str = "facebook/dinov3-vitl16-pretrain-lvd1689m"
    """Hugging Face repo id looked up in the local HF cache when `weights` is unset (a gated repo: accept its licence, then download)."""
    weights: str | None = None
    """A transformers snapshot folder of DINOv3ViTModel (config.json, model.safetensors, preprocessor_config.json) or its weights file; must fill every parameter of `arch`."""
    arch: str = "ViT-L/16"
    """Architecture the weights must fill: ViT-L/16 (dinov3-vitl16), ViT-B/16, or 'snapshot' (the snapshot's config.json)."""


@dataclass
class Siglip2Settings:
    """Settings of the `siglip2` encoder (extract.siglip2.*)."""

    model: str = "google/siglip2-large-patch16-256"
    """Hugging Face repo id looked up in the local HF cache when `weights` is unset (a fixed-resolution SigLIP 2 checkpoint; transformers runs it as SiglipVisionModel)."""
    weights: str | None = None
    """A transformers snapshot folder (SiglipModel, whose text tower is dropped by name, or SiglipVisionModel) or its weights file; must fill every parameter of `arch`."""
    arch: str = "ViT-L/16-256"
    """Architecture the weights must fill: ViT-L/16-256 (siglip2-large-patch16-256), ViT-B/16-224, or 'snapshot' (the snapshot's config.json)."""


@dataclass
class Vjepa2Settings:
    """Settings of the `vjepa2` encoder (extract.vjepa2.*)."""

    model: str = "facebook/vjepa2-vitl-fpc64-256"
    """Hugging Face repo id looked up in the local HF cache when `weights` is unset."""
    weights: str | None = None
    """A transformers snapshot folder (VJEPA2Model, whose predictor is dropped by name, or VJEPA2ForVideoClassification, whose pooler and classifier are) or its weights file; must fill every parameter of `arch`'s encoder."""
    arch: str = "ViT-L/16-256"
    """Architecture the weights must fill: ViT-L/16-256 (vjepa2-vitl-fpc64-256), or 'snapshot' (the snapshot's config.json). Its clip vector is always the mean of the last layer's tokens after the final LayerNorm (V-JEPA 2 has no class token, so extract.motion_pool does not apply)."""


@dataclass
class DatasetConfig:
    name: str = "toy"
    """Dataset reader: toy, phoenix, csl-daily or how2sign."""
    root: Path | None = None
    """Dataset root. For toy with no root, the corpus is generated once inside the cache."""
    splits: list[str] = field(default_factory=lambda: ["train", "dev", "test"])
    """Splits every stage works on."""
    toy_videos: int = 480
    """Videos in a generated toy corpus."""
    toy_seed: int = 0
    """Seed of a generated toy corpus (same seed, byte-identical files)."""
    fingerprint: Literal["stat", "content"] = "stat"
    """How videos enter cache keys: file names and sizes (fast), or every byte hashed."""


@dataclass
class ExtractConfig:
    streams: list[str] = field(default_factory=lambda: ["clip", "videomae"])
    """Feature encoders, by name (extract/vision/encoders/): spatial encoders (clip, dinov2, dinov3, siglip2, tiny-vit) run per frame and their vectors, concatenated in this order, are the spatial features; motion encoders (videomae, vjepa2, tiny-videomae) run per clip_len-frame clip and make the motion features. At least one of each. Paper: clip, videomae (SpaMo); tiny profile: tiny-vit, tiny-videomae."""
    clip: ClipSettings = field(default_factory=ClipSettings)
    """Weights of the clip encoder (CLIP ViT-L/14): extract.clip.model / weights / arch."""
    videomae: VideoMAESettings = field(default_factory=VideoMAESettings)
    """Weights of the videomae encoder (VideoMAE-L): extract.videomae.model / weights / arch."""
    dinov2: Dinov2Settings = field(default_factory=Dinov2Settings)
    """Weights of the dinov2 encoder (DINOv2 ViT-L/14): extract.dinov2.model / weights / arch."""
    dinov3: Dinov3Settings = field(default_factory=Dinov3Settings)
    """Weights of the dinov3 encoder (DINOv3 ViT-L/16): extract.dinov3.model / weights / arch."""
    siglip2: Siglip2Settings = field(default_factory=Siglip2Settings)
    """Weights of the siglip2 encoder (SigLIP 2 ViT-L/16 at 256 px): extract.siglip2.model / weights / arch."""
    vjepa2: Vjepa2Settings = field(default_factory=Vjepa2Settings)
    """Weights of the vjepa2 motion encoder (V-JEPA 2 ViT-L/16 at 256 px): extract.vjepa2.model / weights / arch."""
    spatial_scales: list[int] = field(default_factory=lambda: [1, 2])
    """S2 multi-scale of every spatial encoder (SpaMo): 1 = the crop itself; 2 = the normalised crop upsampled 2x (bicubic) and cut into four tiles whose class tokens are averaged. [1] is the cheaper single-scale variant."""
    motion_pool: Literal["first", "mean"] = "first"
    """Clip vector of every motion encoder from its last layer's tokens (videomae: before the final LayerNorm): the first token (SpaMo) or their mean (variant). tiny-videomae: from last_hidden_state."""
    squash: str = "auto"
    """Squash every frame to a square before the image processors: 'auto' = 256x256 for PHOENIX-2014T and the toy (SpaMo reads fullFrame-256x256px; slt-pipe reads that folder when present, else squashes the 210x260 frames in memory with PIL bicubic), none elsewhere; or 'none', or e.g. '256x256'. Recorded in the manifest."""
    image_size: int = 224
    """Tiny profile: model input size in pixels (shortest-side resize + centre crop). The paper recipe takes its sizes from the models' image processors (preprocessor_config.json, else CLIP/VideoMAE defaults)."""
    clip_len: int = 16
    """Frames per VideoMAE clip."""
    clip_stride: int = 8
    """Frames between clip starts (16/8 = SpaMo's overlap of 8)."""
    dtype: Literal["float16", "float32"] = "float16"
    """Storage dtype of features in Zarr."""
    batch_frames: int = 64
    """Frames per model forward on GPU; batches span videos."""
    batch_clips: int = 8
    """VideoMAE clips per model forward on GPU; batches span videos."""
    cpu_batch_frames: int = 2
    """Frames per model forward on CPU. Small: the activations stay in the CPU's cache, which made a
    CLIP S2 forward 1.6x faster per frame than batches of 64 (bench/peers.py, 2 cores); the features
    are the same bytes at any batch size on the machines measured."""
    cpu_batch_clips: int = 1
    """Clips per model forward on CPU (the same reason: 1.2x faster per clip than 8)."""

    def only(self, stream: str) -> "ExtractConfig":
        """These settings for one of `streams` alone (what keys and writes that stream's entry)."""
        return replace(self, streams=[stream])

    def batches(self, device: str) -> tuple[int, int]:
        """(frames, clips) per model forward on `device` ("cuda" or "cpu")."""
        if device == "cpu":
            return self.cpu_batch_frames, self.cpu_batch_clips
        return self.batch_frames, self.batch_clips
    autocast: Literal["bfloat16", "float16", "none"] = "bfloat16"
    """GPU compute precision (autocast); CPU always computes in float32. Recorded in the manifest."""
    decode_ahead: int = 8
    """Videos each model worker keeps decoding (Ray CPU tasks) ahead of its forward passes."""
    shard_videos: int = 32
    """Videos per Zarr shard: the unit of work, resume and publication."""
    fps: float | None = None
    """Resample mp4 datasets to this frame rate (None keeps native); PNG datasets are as-is."""
    workers: int | None = None
    """Model workers. None (default): Ray actors, one per GPU of the machine or cluster, or one per node where there is no GPU (each with the node's CPUs but one, kept for decoding); N: N Ray actors (at most one per GPU); 0: in this process without Ray (decoding on threads at idle priority beside the model; one machine, same features)."""
    ray_address: str | None = None
    """Existing Ray cluster to join (e.g. ray://head:10001 or auto); None starts a local Ray."""
    worker_restarts: int = 3
    """Times Ray restarts each lost model worker (a killed process, a lost node; also ablate's trials): its unfinished shards go back to the queue and the run goes on, with the same bytes as an undisturbed run (the manifest's compute.lost_workers records each loss). 0: a lost worker stays gone, the others go on."""
    item_deaths: int = 3
    """Worker deaths with the same video in hand (its decode task or its model worker) after which the video is listed as failed instead of tried again: one that crashes its decoder or exhausts memory every time."""
    device: str = "auto"
    """auto, cpu or cuda."""


@dataclass
class EmbedConfig:
    langs: list[str] = field(default_factory=lambda: ["deu_Latn", "eng_Latn", "fra_Latn"])
    """Target languages (ISO 639-3 like deu, or NLLB codes like deu_Latn)."""
    translator: Literal["nllb", "sonar"] = "nllb"
    """Who translates references into the languages the dataset has no text in (paper: NLLB)."""
    references: bool = True
    """True references first: where the dataset ships its own text in a language (toy: deu, eng, fra; PHOENIX: deu; How2Sign: eng; CSL-Daily: zho), that text is the target and the evaluation reference, and only the missing languages are machine-translated. false translates every language but the source (to study a translator against the references)."""
    nllb_model: str = "facebook/nllb-200-distilled-600M"
    """NLLB model: HF id (read from the HF cache) or local dir; 'tiny' trains one on the toy."""
    sonar_encoder: str = "text_sonar_basic_encoder"
    """fairseq2 asset name of the SONAR text encoder, or 'tiny' (trained on the toy corpus)."""
    sonar_decoder: str = "text_sonar_basic_decoder"
    """fairseq2 asset name of the SONAR text decoder, or 'tiny'."""
    batch_size: int = 32
    """Sentences per model call."""
    beam_size: int = 4
    """Beam width when translating (NLLB num_beams, SONAR decoder beam); part of the translations' key."""
    workers: int = 0
    """Ray workers (actors) that translate and embed, chunk by chunk: 0 runs everything in this process (small jobs, the toy), unless ray_address is set, then one worker per GPU of the cluster (one CPU worker where it has none). Results are the same bytes either way."""
    threads: int = 1
    """CPU threads each text model computes with, in this process and in every Ray worker alike: CPU kernels split their sums by thread count, so runs with another count differ in the last bits of some embeddings. More is faster in-process; the Ray path scales with workers instead."""
    worker_restarts: int = 3
    """Times Ray restarts each lost text worker: its unfinished chunk goes back to the queue and the run goes on, with the same bytes. A chunk in hand at item_deaths deaths stops the run with an error naming it (finished chunks are kept)."""
    item_deaths: int = 3
    """Text-worker deaths with the same chunk in hand after which the run stops with an error naming the chunk."""
    ray_address: str | None = None
    """Existing Ray cluster to run the text workers on (auto, HOST:PORT or ray://HOST:10001); None: a local Ray when workers > 0."""
    device: str = "auto"
    """auto, cpu or cuda."""
    tiny_sonar_steps: int = 400
    """Training steps of the tiny SONAR that spec 'tiny' names (trained once per corpus, kept in the cache)."""
    tiny_nllb_steps: int = 300
    """Training steps of the tiny NLLB that nllb_model 'tiny' names (exercises the NLLB code path)."""
    tiny_seed: int = 0
    """Seed of the tiny SONAR and tiny NLLB training."""
    gate_max_bad_fraction: float = 0.05
    """Translation quality gate: the largest share of a language's machine translations that may fail a check (empty, wrong script, repetitive, length outlier) before the language is refused and nothing is published for it. Recorded in the targets manifest, not in its key."""
    gate_min_script_fraction: float = 0.5
    """Translation quality gate: an output with a smaller share of its letters in the language's script (the NLLB code's suffix: Latn, Hans, Cyrl, ...) is in the wrong script."""
    gate_max_repeats: int = 4
    """Translation quality gate: an output repeating one n-gram (up to 4 tokens) this many times in a row, more than its source does, is degenerate."""
    gate_min_unique_ratio: float = 0.3
    """Translation quality gate: an output of 8 tokens or more with a smaller share of distinct tokens is degenerate."""
    gate_length_factor: float = 3.0
    """Translation quality gate: an output whose output/source length ratio is this many times above or below the language's median ratio is a length outlier (relative, so zho is judged against zho)."""
    allow_poor_translations: bool = False
    """Publish a language whose translations fail the quality gates anyway; its targets manifest says so (CLI: --allow-poor-translations)."""
