"""Builders the tests share: small models of the paper's architectures, media files in the real formats."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

TOY_VIDEOS = 240
"""The demo's corpus size: 192 train sentences teach the tiny SONAR (default settings)."""
TOY_LANGS = ["deu_Latn", "eng_Latn", "fra_Latn"]
TOY_EMBED_SETTINGS: dict[str, Any] = {"translator": "sonar", "beam_size": 1, "batch_size": 128, "references": False}
"""Greedy tiny-SONAR translation (exact on this toy, and quick) of every language, the toy's own eng/fra
set aside so that the translation machinery is what the tests exercise."""


def toy_embed_cfg(cache: Path, root: Path, langs=TOY_LANGS, splits=("train", "dev", "test"), **embed: object):
    """The tiny-profile config of the shared cache; `embed` overrides TOY_EMBED_SETTINGS."""
    from pipeline.config import build_config

    embed = {**TOY_EMBED_SETTINGS, **embed}
    return build_config({
        "profile": "tiny",
        "dataset": {"name": "toy", "root": str(root), "splits": list(splits)},
        "cache": {"dir": str(cache)},
        "embed": {"langs": list(langs), "device": "cpu", **embed},
    })


def random_clip(hidden: int, layers: int, heads: int, intermediate: int, patch: int, image: int, seed: int = 0) -> Any:
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    return CLIPVisionModel(CLIPVisionConfig(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                                            num_attention_heads=heads, patch_size=patch, image_size=image,
                                            hidden_act="quick_gelu")).eval()


def random_videomae(hidden: int, layers: int, heads: int, intermediate: int, image: int, frames: int = 16, seed: int = 1) -> Any:
    import torch
    from transformers import VideoMAEConfig, VideoMAEModel

    torch.manual_seed(seed)
    return VideoMAEModel(VideoMAEConfig(image_size=image, num_frames=frames, hidden_size=hidden,
                                        num_hidden_layers=layers, num_attention_heads=heads,
                                        intermediate_size=intermediate, use_mean_pooling=False)).eval()


def level(i: int) -> int:
    """Grey level of frame i in the test videos: lets a test tell which frames it got."""
    return 10 + 5 * i


def grey_frame(i: int, height: int, width: int) -> Any:
    import numpy as np

    return np.full((height, width, 3), level(i), np.uint8)


def write_mp4(path: Path, frames: int = 48, size: int = 64, fps: int = 24, codec: str = "mpeg4",
              faststart: bool = False, width: int | None = None, draw: Any = grey_frame) -> Path:
    """An mp4 of `frames` frames, `size` high and `width` (default `size`) wide; frame i is
    `draw(i, height, width)` (default: the uniform grey `level(i)`)."""
    from fractions import Fraction

    import av

    width = width or size
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height = width, size
        stream.pix_fmt = "yuv420p"
        if codec == "mpeg4":
            stream.bit_rate = 4_000_000
        for i in range(frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(draw(i, size, width), format="rgb24")))
        container.mux(stream.encode())
    return path


@contextlib.contextmanager
def user_asset_dir(cards_dir: Path) -> Iterator[None]:
    """FAIRSEQ2_USER_ASSET_DIR=cards_dir inside the block, fairseq2's store re-read on entry and on exit
    (for in-process code such as tests; a command started with the variable set needs none of this)."""
    old = os.environ.get("FAIRSEQ2_USER_ASSET_DIR")
    os.environ["FAIRSEQ2_USER_ASSET_DIR"] = str(cards_dir)
    from cache.sonar_models import refresh_asset_store

    refresh_asset_store()
    try:
        yield
    finally:
        if old is None:
            del os.environ["FAIRSEQ2_USER_ASSET_DIR"]
        else:
            os.environ["FAIRSEQ2_USER_ASSET_DIR"] = old
        refresh_asset_store()


# --------------------------------------------------------------------------- dataset releases in their own layouts

SPLITS = ["train", "dev", "test"]
PHX = Path("PHOENIX-2014-T-release-v3/PHOENIX-2014-T")


def csv_of(root: Path, split: str) -> Path:
    return root / f"annotations/manual/PHOENIX-2014-T.{split}.corpus.csv"


def frames_of(root: Path, split: str, name: str) -> Path:
    return root / "features/fullFrame-210x260px" / split / name


def write_csl(root: Path, names_splits: dict[str, str], frames: int = 4, header: bool = True) -> Path:
    """A CSL-Daily release: JPEG frame folders, the labels pickle and split_1.txt."""
    import pickle

    import numpy as np
    from PIL import Image

    info = []
    for k, name in enumerate(names_splits):
        folder = root / "sentence/frames_512x512" / name
        folder.mkdir(parents=True)
        for i in range(frames):
            Image.fromarray(np.full((32, 24, 3), 40 * i + k, np.uint8)).save(folder / f"{i:06d}.jpg", quality=95)
        info.append({"name": name, "length": frames, "label_char": list("今天天气很好") + [str(k)],
                     "label_word": ["今天", "天气", "很", "好"], "label_gloss": ["今天", "天气", "好"], "signer": k % 2})
    labels = root / "sentence_label"
    labels.mkdir(parents=True)
    with open(labels / "csl2020ct_v2.pkl", "wb") as f:
        pickle.dump({"info": info, "gloss_map": [], "char_map": []}, f)
    lines = (["Name|Split"] if header else []) + [f"{n}|{s}" for n, s in names_splits.items()]
    (labels / "split_1.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


CSL = {"S000001_P0000_T00": "train", "S000000_P0000_T00": "train", "S000002_P0001_T00": "dev", "S000003_P0002_T00": "test"}


H2S_HEADER = "VIDEO_ID\tVIDEO_NAME\tSENTENCE_ID\tSENTENCE_NAME\tSTART_REALIGNED\tEND_REALIGNED\tSENTENCE"


def h2s_row(vid: str, k: int, start: float, end: float, text: str) -> str:
    return "\t".join([vid, f"{vid}-1-rgb_front", f"{vid}_{k}", f"{vid}_{k}-1-rgb_front", str(start), str(end), text])


def write_how2sign(root: Path) -> Path:
    rows = {
        "train": [h2s_row("abc", 0, 0.0, 0.5, "Hi, I'm going to show you knots."),
                  h2s_row("abc", 1, 0.5, 1.0, 'Say "hello" first.'),
                  h2s_row("xyz", 0, 0.5, 1.5, "This one is cut from the full video.")],
        "val": [h2s_row("val", 0, 0.0, 0.6, "A validation sentence.")],
        "test": [h2s_row("tst", 0, 0.0, 0.6, "A test sentence.")],
    }
    for split, lines in rows.items():
        (root / f"how2sign_realigned_{split}.csv").parent.mkdir(parents=True, exist_ok=True)
        (root / f"how2sign_realigned_{split}.csv").write_text("\n".join([H2S_HEADER] + lines) + "\n", encoding="utf-8")
    write_mp4(root / "train/rgb_front/clips/abc_0-1-rgb_front.mp4", frames=16)
    write_mp4(root / "clips/abc_1-1-rgb_front.mp4", frames=16)
    write_mp4(root / "videos/xyz-1-rgb_front.mp4", frames=48)
    write_mp4(root / "val/rgb_front/clips/val_0-1-rgb_front.mp4", frames=16)
    write_mp4(root / "video_level/test/rgb_front/raw_videos/tst-1-rgb_front.mp4", frames=24)
    return root


# --------------------------------------------------------------------------- features stores on disk


def sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def store_bytes(entry: Path) -> dict[str, str]:
    """relative path -> sha256 of every file of a features entry's stores (the payload, byte for byte):
    its own store, or (a set of streams) each stream entry's, under the stream's name."""
    return {name + str(p.relative_to(d / "features.zarr")): sha256(p) for name, d in entry_stores(entry).items()
            for p in sorted((d / "features.zarr").rglob("*")) if p.is_file()}


def entry_stores(entry: Path) -> dict[str, Path]:
    """prefix -> entry dir of each store a features entry reads: its own (prefix ""), or (a set of
    streams) each stream entry's, prefixed with the stream's name."""
    from cache.features import assembly, stream_dir

    spec = assembly(entry)
    return {"": entry} if spec is None else {f"{s['name']}/": stream_dir(entry, s["entry"]) for s in spec["streams"]}


def extract_streams(cfg: Any, samples: list, cache_dir: Path, backend: Any = None, **kw: Any) -> tuple[Any, Path]:
    """`run_extraction` of cfg's streams into pending stream entries of a cache at cache_dir, published
    with a features entry that assembles them (what the extract stage does, without a dataset):
    (result, the features entry's dir)."""
    from cache.features import STREAM_KIND, write_assembly
    from cache.store import Cache
    from extract.vision.backend import pick_backend
    from extract.vision.runner import run_extraction
    from extract.vision.streams import stream_layout

    cache = Cache(cache_dir)
    pendings = {n: cache.begin(STREAM_KIND, f"k-{n}", {}) for n in cfg.streams}
    result = run_extraction(cfg, samples, {n: p.dir for n, p in pendings.items()}, backend or pick_backend(cfg), **kw)
    for n, p in pendings.items():
        p.publish(stream=n, items=result.streams[n][0], failures=[list(f) for f in result.streams[n][1]])
    with cache.begin("features", "k", {}) as pending:
        write_assembly(pending.dir, [{**s, "entry": f"k-{s['name']}"} for s in stream_layout(cfg)], {})
        entry = pending.publish(items=result.done, failures=[list(f) for f in result.skipped])
    return result, entry.dir


def finished_shards(shards: Path) -> list[str]:
    """The shards a run has finished: renamed into place with their zarr.json (cache/features.py)."""
    return sorted(p.name for p in shards.iterdir() if p.name.isdigit() and (p / "zarr.json").is_file())


def first_shard_written(cache: Path) -> bool:
    """Whether an extraction into `cache` has finished its first shard in every stream entry it builds."""
    partials = list((cache / "stream").glob("*.partial"))
    return bool(partials) and all((p / "features.zarr/shards/00000/zarr.json").is_file() for p in partials)


def partial_shards(cache: Path) -> tuple[list[str], dict[str, dict[str, tuple[int, int, str]]]]:
    """What an interrupted extraction left in `cache`: (the shards finished in every stream entry, and
    stream key -> shard_files of the shards finished in that entry)."""
    partials = sorted((cache / "stream").glob("*.partial"))
    finished = {p.name.removesuffix(".partial"): finished_shards(p / "features.zarr" / "shards") for p in partials}
    files = {k: shard_files(cache / "stream" / f"{k}.partial" / "features.zarr" / "shards", names)
             for k, names in finished.items()}
    return sorted(set.intersection(*(set(v) for v in finished.values()))) if finished else [], files


def same_shard_files(cache: Path, before: dict[str, dict[str, tuple[int, int, str]]]) -> bool:
    """Whether the published stream entries hold the very files `partial_shards` saw (inode, mtime, bytes)."""
    return all(shard_files(cache / "stream" / k / "features.zarr" / "shards", sorted({n.split("/")[0] for n in files}))
               == files for k, files in before.items())


def shard_files(shards: Path, names: list[str]) -> dict[str, tuple[int, int, str]]:
    """relative path -> (inode, mtime_ns, sha256) of every file of the shards `names`."""
    return {str(f.relative_to(shards)): (f.stat().st_ino, f.stat().st_mtime_ns, sha256(f))
            for n in names for f in sorted((shards / n).rglob("*")) if f.is_file()}


# --------------------------------------------------------------------------- SpaMo's procedure, with transformers' own classes


def cosines(a: Any, b: Any) -> Any:
    """Row-wise cosine similarity of two [N, D] arrays (float64)."""
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def pil_images(pngs: list[Path], squash: int | None) -> list[Any]:
    """The frames as PIL RGB images, squashed to `squash`x`squash` with PIL bicubic (SpaMo's 256 copy)."""
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in pngs]
    return [im.resize((squash, squash), Image.Resampling.BICUBIC) for im in images] if squash else images


def spamo_spatial(snapshot: Path, pngs: list[Path], squash: int | None = 256, model: Any = None) -> Any:
    """SpaMo's spatial feature (scripts/vit_extract_feature.py, --s2_mode s2wrapping --scales 1 2) with
    transformers' classes: CLIPImageProcessor, CLIPVisionModel hidden_states[-1][:, 0] of the crop and the
    mean over the four tiles of its 2x bicubic upsampling (F.interpolate), concatenated: float32 [T, 2H]."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionModel

    proc = CLIPImageProcessor.from_pretrained(snapshot)
    model = model if model is not None else CLIPVisionModel.from_pretrained(snapshot).eval()
    with torch.no_grad():
        x = proc(images=pil_images(pngs, squash), return_tensors="pt")["pixel_values"]
        s = x.shape[-1]

        def cls(v: Any) -> Any:
            return model(pixel_values=v, output_hidden_states=True).hidden_states[-1][:, 0]

        big = torch.nn.functional.interpolate(x, size=(2 * s, 2 * s), mode="bicubic")
        tiles = [big[..., :s, :s], big[..., :s, s:], big[..., s:, :s], big[..., s:, s:]]
        return torch.cat([cls(x), torch.stack([cls(t) for t in tiles]).mean(0)], dim=1).numpy()


def spamo_motion(snapshot: Path, pngs: list[Path], squash: int | None = 256, model: Any = None) -> Any:
    """SpaMo's motion feature (scripts/mae_extract_feature.py, --overlap_size 8) with transformers' classes:
    16-frame clips every 8 frames (a video under 16 frames padded with its last frame), each through
    VideoMAEImageProcessor and VideoMAEModel hidden_states[-1][:, 0]: float32 [C, H]."""
    import torch
    from transformers import VideoMAEImageProcessor, VideoMAEModel

    proc = VideoMAEImageProcessor.from_pretrained(snapshot)
    model = model if model is not None else VideoMAEModel.from_pretrained(snapshot).eval()
    images = pil_images(pngs, squash)
    images = images + [images[-1]] * max(0, 16 - len(images))
    clips = [images[i:i + 16] for i in range(0, len(images) - 16 + 1, 8)]
    with torch.no_grad():
        out = [model(pixel_values=proc(c, return_tensors="pt")["pixel_values"],
                     output_hidden_states=True).hidden_states[-1][:, 0] for c in clips]
    return torch.cat(out).numpy()


def scramble_weights(model: Any, seed: int) -> Any:
    """Weights far from transformers' init, so that the features depend on the image (the default init
    leaves the class token almost independent of it): LayerNorm weights U(0.5, 1.5) and biases N(0, 0.5),
    unit-gain linear and patch weights, N(0, 0.1) biases, unit-scale embeddings."""
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)

    def fill(t: Any, std: float) -> None:
        t.copy_(torch.randn(t.shape, generator=g) * std)

    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.LayerNorm):
                mod.weight.copy_(torch.rand(mod.weight.shape, generator=g) + 0.5)
                fill(mod.bias, 0.5)
            elif isinstance(mod, (nn.Linear, nn.Conv2d, nn.Conv3d)):
                fill(mod.weight, mod.weight[0].numel() ** -0.5)
                if mod.bias is not None:
                    fill(mod.bias, 0.1)
            elif isinstance(mod, nn.Embedding):
                fill(mod.weight, 0.5)
        for name, p in model.named_parameters():
            if name.endswith(("class_embedding", "q_bias", "v_bias")):
                fill(p, 0.5 if name.endswith("class_embedding") else 0.1)
    return model
