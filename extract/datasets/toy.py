"""A deterministic toy sign language in the exact PHOENIX-2014-T release layout.

Why: tests and the CPU demo need a corpus whose videos really encode their sentences (so a
model can learn something and BLEU means something), that the PHOENIX reader reads
unchanged, and that is byte-identical for the same (videos, seed) so it can live in the
content-addressed cache.

Language: weather forecasts, TIME + REGION + WEATHER (+ TEMPERATURE), 21 glosses, with
parallel German (CSV `translation`, lower case like PHOENIX), English and French
(`PHOENIX-2014-T.{split}.translations.json`), e.g.

    orth  MORGEN NORD REGEN
    deu   morgen gibt es im norden regen
    eng   tomorrow there will be rain in the north
    fra   demain il y aura de la pluie dans le nord

Every slot value has its own words in every language, so each gloss changes every text.

Splits are about 80/10/10. Dev and test sentences are gloss combinations that never occur
in train, while every single gloss does occur in train (train starts with a small set that
covers all glosses), so dev/test measure composition rather than recall.

Video: each gloss is a distinct procedural motion, a shape (7 kinds) in its own colour
moving along its own trajectory (line, arc or zigzag, with its own direction and spin),
6-10 frames per sign, drawn over a static "signer" (head and torso, tinted per speaker)
in 210x260 RGB. Per video the signer's position, the signing-space offset and scale, the
frames per sign (speed), an easing of each sign and the pixel noise are jittered. Drawing
is vectorised over frames with meshgrid masks.

Determinism: one seeded numpy Generator picks the corpus; each video gets its own
Generator from SeedSequence([seed, index]), so the result does not depend on the order
(or thread) in which videos are written. PNGs are written by PIL with fixed parameters
and no metadata chunks.
"""

from __future__ import annotations

import colorsys
import itertools
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cache.errors import DatasetError
from extract.datasets.phoenix import ANNOTATIONS, CORPUS_DIR, FRAMES, HEADER, RELEASE_DIR

H, W = 210, 260  # even: the noise cells are 2x2
SPLITS = ("train", "dev", "test")
MIN_VIDEOS = 10
PNG_LEVEL = 1
"""zlib level of the PNGs: fast; the files stay small because the noise is blocky."""

# (gloss, deu, eng, fra) per slot value; the sentence templates are in `sentence`.
TIMES = [
    ("HEUTE", "heute", "today", "aujourd'hui"),
    ("MORGEN", "morgen", "tomorrow", "demain"),
    ("WOCHENENDE", "am wochenende", "at the weekend", "ce week-end"),
    ("NACHT", "heute nacht", "tonight", "cette nuit"),
]
REGIONS = [
    ("NORD", "im norden", "in the north", "dans le nord"),
    ("SUED", "im süden", "in the south", "dans le sud"),
    ("WEST", "im westen", "in the west", "dans l'ouest"),
    ("OST", "im osten", "in the east", "dans l'est"),
    ("BERG", "in den bergen", "in the mountains", "en montagne"),
    ("KUESTE", "an der küste", "on the coast", "sur la côte"),
]
WEATHER = [
    ("REGEN", "regen", "rain", "de la pluie"),
    ("SCHNEE", "schnee", "snow", "de la neige"),
    ("SONNE", "sonnenschein", "sunshine", "du soleil"),
    ("GEWITTER", "gewitter", "thunderstorms", "des orages"),
    ("NEBEL", "nebel", "fog", "du brouillard"),
    ("WIND", "starken wind", "strong wind", "du vent fort"),
    ("WOLKE", "wolken", "clouds", "des nuages"),
]
TEMPS = [
    ("KALT", "kalt", "cold", "froid"),
    ("MILD", "mild", "mild", "doux"),
    ("WARM", "warm", "warm", "chaud"),
    ("HEISS", "heiß", "hot", "très chaud"),
]
GLOSSES: tuple[str, ...] = tuple(v[0] for v in TIMES + REGIONS + WEATHER + TEMPS)
LANGS = ("deu_Latn", "eng_Latn", "fra_Latn")
SPEAKERS = ("Signer01", "Signer02", "Signer03", "Signer04")

Combo = tuple[int, int, int, int]
"""(time, region, weather, temperature) indices; temperature 0 = none, k = TEMPS[k-1]."""


def sentence(combo: Combo) -> dict[str, str]:
    """orth and the three parallel texts of one combination."""
    t, r, w, k = TIMES[combo[0]], REGIONS[combo[1]], WEATHER[combo[2]], combo[3]
    temp = TEMPS[k - 1] if k else None
    out = {
        "orth": " ".join([t[0], r[0], w[0]] + ([temp[0]] if temp else [])),
        "deu_Latn": f"{t[1]} gibt es {r[1]} {w[1]}" + (f" und es wird {temp[1]}" if temp else ""),
        "eng_Latn": f"{t[2]} there will be {w[2]} {r[2]}" + (f" and it will be {temp[2]}" if temp else ""),
        "fra_Latn": f"{t[3]} il y aura {w[3]} {r[3]}" + (f" et il fera {temp[3]}" if temp else ""),
    }
    return out


def _allowed(c: Combo) -> bool:
    """Keeps sentences sensible: no sunshine at night."""
    return not (TIMES[c[0]][0] == "NACHT" and WEATHER[c[2]][0] == "SONNE")


ALL_COMBOS: list[Combo] = [c for c in itertools.product(range(len(TIMES)), range(len(REGIONS)),
                                                          range(len(WEATHER)), range(len(TEMPS) + 1)) if _allowed(c)]
COVER: list[Combo] = [(i % len(TIMES), i % len(REGIONS), i, i % (len(TEMPS) + 1)) for i in range(len(WEATHER))]
"""Train sentences that together use every gloss (and every 'no temperature')."""
assert all(_allowed(c) for c in COVER)


# --------------------------------------------------------------------------- corpus plan


@dataclass(frozen=True)
class ToyVideo:
    name: str
    split: str
    combo: Combo
    speaker: int
    index: int
    """Global index: seeds this video's own Generator."""


def plan_corpus(videos: int, seed: int) -> list[ToyVideo]:
    """Which sentence each video signs, its split and speaker; sorted by name."""
    if videos < MIN_VIDEOS:
        raise DatasetError(f"a toy corpus needs at least {MIN_VIDEOS} videos, got {videos}",
                           fix=f"make-toy and demo: pass --videos {MIN_VIDEOS} or more; other commands: "
                               f"--set dataset.toy_videos={MIN_VIDEOS} or more")
    rng = np.random.default_rng(seed)
    n_held = max(1, round(0.1 * videos))
    n_train = videos - 2 * n_held
    cover = set(COVER)
    rest = [c for c in ALL_COMBOS if c not in cover]
    rest = [rest[i] for i in rng.permutation(len(rest))]
    # Held-out combinations: at most a quarter of them each for dev and test; beyond that
    # (corpora of thousands of videos) sentences repeat, with fresh jitter, inside a split.
    n_combos = min(n_held, len(rest) // 4)
    held_dev, held_test, pool = rest[:n_combos], rest[n_combos:2 * n_combos], rest[2 * n_combos:]
    dev = [held_dev[i % n_combos] for i in range(n_held)]
    test = [held_test[i % n_combos] for i in range(n_held)]
    train = list(COVER) + [pool[i % len(pool)] for i in range(n_train - len(COVER))]
    entries = [("train", c) for c in train] + [("dev", c) for c in dev] + [("test", c) for c in test]
    order = rng.permutation(len(entries))
    speakers = rng.integers(0, len(SPEAKERS), size=len(entries))
    plan = [ToyVideo(name=f"toy{k:05d}_weather", split=entries[j][0], combo=entries[j][1],
                     speaker=int(speakers[k]), index=k)
            for k, j in enumerate(order)]
    return sorted(plan, key=lambda v: v.name)


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class SignLook:
    """The fixed appearance of one gloss: same for every seed, distinct for every gloss."""

    colour: tuple[int, int, int]
    shape: int
    """0 circle, 1 square, 2 diamond, 3 ring, 4 cross, 5 triangle, 6 bar."""
    path: int
    """0 line, 1 arc, 2 zigzag."""
    angle: float
    spin: float
    radius: float


N_SHAPES, N_PATHS = 7, 3


def sign_look(g: int) -> SignLook:
    hue = (g * 0.618034) % 1.0
    value = 1.0 if g % 2 == 0 else 0.72
    rgb = colorsys.hsv_to_rgb(hue, 0.9, value)
    return SignLook(
        colour=tuple(int(round(255 * c)) for c in rgb),
        shape=g % N_SHAPES,
        path=(g // N_SHAPES) % N_PATHS,
        angle=(g * 2.399963) % (2 * np.pi),
        spin=((g * 5) % 7 - 3) * 0.6,
        radius=14.0 + (g * 3 % 5) * 2.0,
    )


LOOKS = {g: sign_look(i) for i, g in enumerate(GLOSSES)}
assert len(GLOSSES) == N_SHAPES * N_PATHS == len({(lk.shape, lk.path) for lk in LOOKS.values()})

_YY, _XX = np.meshgrid(np.arange(H, dtype=np.float32), np.arange(W, dtype=np.float32), indexing="ij")
_SIGNERS = [  # background, skin, clothes
    ((112, 114, 122), (206, 170, 146), (46, 52, 70)),
    ((124, 118, 108), (180, 138, 110), (70, 44, 48)),
    ((106, 120, 112), (226, 192, 168), (38, 60, 52)),
    ((118, 108, 124), (150, 108, 84), (60, 60, 60)),
]


def render_video(video: ToyVideo, seed: int) -> np.ndarray:
    """uint8 [T, 210, 260, 3] frames of one video."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, video.index]))
    glosses = sentence(video.combo)["orth"].split()
    speed = rng.uniform(0.8, 1.2)
    counts = [int(np.clip(round(8 * speed + rng.integers(-1, 2)), 6, 10)) for _ in glosses]
    body_dx, body_dy = rng.uniform(-10, 10), rng.uniform(-6, 6)
    centre = np.array([W / 2 + body_dx + rng.uniform(-6, 6), 125 + body_dy + rng.uniform(-5, 5)], np.float32)
    amp, size = rng.uniform(0.85, 1.15), rng.uniform(0.85, 1.15)
    frames = np.repeat(_signer(video.speaker, body_dx, body_dy)[None], sum(counts), axis=0)
    start = 0
    for gloss, n in zip(glosses, counts):
        ease = rng.uniform(0.8, 1.25)
        u = ((np.arange(n, dtype=np.float32) + 0.5) / n) ** ease
        jitter = rng.uniform(-3, 3, size=2).astype(np.float32)
        _draw_sign(frames[start:start + n], LOOKS[gloss], u, centre + jitter, amp, size)
        start += n
    return _add_noise(frames, rng)


def _signer(speaker: int, dx: float, dy: float) -> np.ndarray:
    bg, skin, clothes = _SIGNERS[speaker % len(_SIGNERS)]
    img = np.empty((H, W, 3), np.uint8)
    img[:] = bg
    cx, head_y = W / 2 + dx, 52 + dy
    head = (_XX - cx) ** 2 / 22**2 + (_YY - head_y) ** 2 / 27**2 <= 1
    torso = (np.abs(_XX - cx) <= 58 - np.clip(100 + dy - _YY, 0, None)) & (_YY >= 82 + dy)
    img[torso] = clothes
    img[head] = skin
    return img


def _trajectory(look: SignLook, u: np.ndarray, amp: float) -> np.ndarray:
    """[n, 2] offsets (x, y) in pixels for sign progress u in (0, 1)."""
    a = 42.0 * amp
    d = np.array([np.cos(look.angle), np.sin(look.angle)], np.float32)
    perp = np.array([-d[1], d[0]], np.float32)
    if look.path == 0:  # straight stroke through the centre
        return (2 * u - 1)[:, None] * a * d
    if look.path == 1:  # arc of 3/4 turn, direction by gloss
        phi = look.angle + np.sign(look.spin or 1.0) * 1.5 * np.pi * u
        return 0.75 * a * np.stack([np.cos(phi), np.sin(phi)], axis=1)
    return (2 * u - 1)[:, None] * 0.8 * a * d + np.sin(4 * np.pi * u)[:, None] * 0.45 * a * perp


def _draw_sign(frames: np.ndarray, look: SignLook, u: np.ndarray, centre: np.ndarray, amp: float, size: float) -> None:
    """Paint one sign into `frames` [n, H, W, 3] in place, all n frames at once.

    Only a square patch around each frame's shape position is evaluated (advanced
    indexing over [n, P, P]), which is ~15x cheaper than whole-frame masks.
    """
    n = len(u)
    radius = look.radius * size
    half = int(np.ceil(1.3 * radius)) + 1
    pos = (centre + _trajectory(look, u, amp)).astype(np.float32)
    base = np.round(pos).astype(np.int64)
    off = np.arange(-half, half + 1)
    ys = base[:, 1, None, None] + off[None, :, None]
    xs = base[:, 0, None, None] + off[None, None, :]
    theta = (look.spin * np.pi * u).astype(np.float32)[:, None, None]
    dx = xs - pos[:, 0, None, None]
    dy = ys - pos[:, 1, None, None]
    c, s = np.cos(theta), np.sin(theta)
    mask = _shape_mask(look.shape, dx * c + dy * s, -dx * s + dy * c, radius)
    mask &= (ys >= 0) & (ys < H) & (xs >= 0) & (xs < W)
    ts = np.broadcast_to(np.arange(n)[:, None, None], mask.shape)
    frames[ts[mask], np.broadcast_to(ys, mask.shape)[mask], np.broadcast_to(xs, mask.shape)[mask]] = look.colour


def _shape_mask(shape: int, x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    ax, ay = np.abs(x), np.abs(y)
    if shape == 0:
        return x * x + y * y <= r * r
    if shape == 1:
        return np.maximum(ax, ay) <= 0.85 * r
    if shape == 2:
        return ax + ay <= 1.2 * r
    if shape == 3:
        d2 = x * x + y * y
        return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
    if shape == 4:
        return ((ax <= 0.3 * r) & (ay <= r)) | ((ay <= 0.3 * r) & (ax <= r))
    if shape == 5:
        return (y >= -r) & (y <= 0.7 * r) & (ax <= 0.65 * (y + r))
    return (ax <= 1.25 * r) & (ay <= 0.35 * r)


def _add_noise(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera-like grain: grey noise in 2x2 cells (small PNGs, still different every frame).

    Done in uint8 (clip into [L, 255-L], add [0, 2L], subtract L): no int16 copy.
    """
    level = int(rng.integers(3, 8))
    t = frames.shape[0]
    cells = rng.integers(0, 2 * level + 1, size=(t, H // 2, 1, W // 2, 1, 1), dtype=np.uint8)
    noise = np.broadcast_to(cells, (t, H // 2, 2, W // 2, 2, 3)).reshape(t, H, W, 3)
    out = np.clip(frames, level, 255 - level)
    out += noise
    out -= np.uint8(level)
    return out


# --------------------------------------------------------------------------- writing


def make_toy(out: Path, videos: int = 240, seed: int = 0, *, workers: int | None = None,
             frames: bool = True) -> Path:
    """Write the toy corpus under `out/PHOENIX-2014-T-release-v3/PHOENIX-2014-T/` and return that path.

    The same (videos, seed) gives byte-identical files. Videos are rendered and written on
    a small thread pool (numpy and PIL's zlib release the GIL); `workers` only changes speed.
    `frames=False` writes only the annotation files (milliseconds instead of seconds), for
    tests of the readers' annotation parsing; every sample then lacks its frame folder.
    """
    plan = plan_corpus(videos, seed)
    root = Path(out) / RELEASE_DIR / CORPUS_DIR
    (root / ANNOTATIONS).mkdir(parents=True, exist_ok=True)
    if frames:
        n_workers = workers or min(4, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            list(pool.map(lambda v: _write_video(root / FRAMES / v.split / v.name, render_video(v, seed)), plan))
    for split in SPLITS:
        _write_annotations(root, split, [v for v in plan if v.split == split])
    return root


def _write_video(folder: Path, frames: np.ndarray) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames, start=1):
        Image.fromarray(frame).save(folder / f"images{i:04d}.png", format="PNG",
                                                compress_level=PNG_LEVEL, optimize=False)


def _write_annotations(root: Path, split: str, videos: list[ToyVideo]) -> None:
    rows = ["|".join(HEADER)]
    translations: dict[str, dict[str, str]] = {}
    for v in videos:
        s = sentence(v.combo)
        rows.append("|".join([v.name, f"{v.name}/1/*.png", "-1", "-1", SPEAKERS[v.speaker], s["orth"], s["deu_Latn"]]))
        translations[v.name] = {"eng_Latn": s["eng_Latn"], "fra_Latn": s["fra_Latn"]}
    ann = root / ANNOTATIONS
    (ann / f"PHOENIX-2014-T.{split}.corpus.csv").write_bytes(("\n".join(rows) + "\n").encode("utf-8"))
    text = json.dumps(translations, ensure_ascii=False, sort_keys=True, indent=1) + "\n"
    (ann / f"PHOENIX-2014-T.{split}.translations.json").write_bytes(text.encode("utf-8"))
