"""BLEURT-20 (and its distillations -D12/-D6/-D3) in PyTorch, from a Hugging Face snapshot, loaded strictly.

The checkpoints are lucadiliello's conversions of Google's TensorFlow ones (hub ids
``lucadiliello/BLEURT-20``, ``lucadiliello/BLEURT-20-D12``, ...). The architecture and the
tokenizer are the ``bleurt-pytorch`` package's own classes (0.0.1 imports and scores unchanged
under torch 2.9.1 / transformers 4.57), so no TensorFlow is needed. What this module adds:

* offline lookup: a snapshot folder, or a hub id already in the Hugging Face cache; never a download;
* strict loading: ``from_pretrained`` random-initialises any weight the file lacks and only logs it,
  which gives plausible-looking but meaningless scores. Here the architecture is built from
  config.json and the file must fill every parameter and persistent buffer, each with its shape;
* the original BLEURT's truncation: a pair longer than the model's max length is cut, longest side
  first (``truncation="longest_first"`` is BLEURT's ``_truncate_seq_pair``), where the package's
  README example would overflow the position table.
"""

from __future__ import annotations

from pathlib import Path

import torch
from bleurt_pytorch import BleurtConfig, BleurtForSequenceClassification
from bleurt_pytorch.bleurt.tokenization_bleurt_sp import BleurtSPTokenizer

from cache.errors import WeightsError
from cache.hf_cache import hf_cache_dir, hf_snapshot

DEFAULT_BLEURT = "lucadiliello/BLEURT-20"
WEIGHTS = ("model.safetensors", "pytorch_model.bin")
"""Weights file names in a snapshot, in order of preference (safetensors cannot run code)."""


def _fix(repo: str = DEFAULT_BLEURT) -> str:
    return (f"on a machine with internet run `huggingface-cli download {repo}` and copy the cache here "
            f"(set HF_HOME), then pass --bleurt {repo} or the snapshot folder")


def _is_hub_id(spec: str) -> bool:
    """'owner/name' that is not written as a path: only then is the download command worth naming it."""
    return spec.count("/") == 1 and not spec.startswith((".", "~", "/"))


def resolve_bleurt(spec: str | Path) -> Path:
    """The snapshot folder of `spec`: a local folder holding config.json, or a hub id found in the
    Hugging Face cache (offline). WeightsError naming the place looked at and the fix otherwise."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise WeightsError("not a BLEURT snapshot folder (no config.json)", path=path, fix=_fix())
        return path
    if path.exists():
        raise WeightsError("a BLEURT checkpoint is a snapshot folder (config.json, weights, spm.model), not a file",
                           path=path, fix=f"pass the folder: --bleurt {path.parent}")
    snapshot = hf_snapshot(str(spec), ("config.json",))
    if snapshot is not None:
        return snapshot
    if _is_hub_id(str(spec)):
        raise WeightsError(f"BLEURT {spec} is not in the Hugging Face cache", path=hf_cache_dir(), fix=_fix(str(spec)))
    raise WeightsError("BLEURT snapshot folder not found", path=path, fix=_fix())


def _producer(snapshot: Path) -> str:
    """'BLEURT-20 (lucadiliello/BLEURT-20, <commit>)' for a cache snapshot, 'NAME (/abs/folder)' otherwise."""
    repo_dir = snapshot.parent.parent.name  # the cache layout is models--owner--name/snapshots/<commit>
    if snapshot.parent.name == "snapshots" and repo_dir.startswith("models--"):
        repo = repo_dir.removeprefix("models--").replace("--", "/")
        return f"{repo.rsplit('/', 1)[-1]} ({repo}, {snapshot.name})"
    return f"{snapshot.name} ({snapshot.resolve()})"


def _read_weights(snapshot: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """(file, state dict) of the snapshot's weights; WeightsError when absent or unreadable."""
    file = next((snapshot / n for n in WEIGHTS if (snapshot / n).is_file()), None)
    if file is None:
        raise WeightsError(f"no BLEURT weights in the snapshot (looked for {', '.join(WEIGHTS)})", path=snapshot,
                           fix=f"the download is incomplete: {_fix()}")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            return file, load_file(file)
        # a .bin is a pickle: weights_only refuses anything but tensors instead of running its code
        return file, torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which, not a library traceback
        raise WeightsError(f"unreadable BLEURT weights ({type(e).__name__}: {e})", path=file,
                           fix=f"re-download the snapshot: {_fix()}") from e


def _load_strict(model: torch.nn.Module, file: Path, state: dict[str, torch.Tensor]) -> None:
    """Load `state` into `model` only if it fills every parameter and persistent buffer with the right
    shape and holds nothing else. (Non-persistent buffers, such as the all-zero token_type_ids, are
    not saved by design: the architecture makes them.)"""
    want = model.state_dict()
    problems = {
        "missing": [k for k in want if k not in state],
        "unexpected": [k for k in state if k not in want],
        "mis-shaped": [f"{k} {tuple(state[k].shape)} (architecture {tuple(v.shape)})"
                       for k, v in want.items() if k in state and state[k].shape != v.shape],
    }
    if any(problems.values()):
        found = "; ".join(f"{len(keys)} {what}: {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}"
                          for what, keys in problems.items() if keys)
        raise WeightsError(f"BLEURT weights do not fit the architecture of config.json ({found})", path=file,
                           fix=f"a partial or mixed-up snapshot: re-download it ({_fix()})")
    model.load_state_dict(state, strict=True)


class BleurtScorer:
    """BLEURT scores of (reference, candidate) pairs with one snapshot: load once, score many."""

    producer: str
    """What produced the scores, e.g. 'BLEURT-20 (lucadiliello/BLEURT-20, <commit>)', for the report."""

    def __init__(self, spec: str | Path, device: str | torch.device = "cpu", batch_size: int = 32):
        snapshot = resolve_bleurt(spec)
        file, state = _read_weights(snapshot)
        self.config = BleurtConfig.from_json_file(snapshot / "config.json")
        self.model = BleurtForSequenceClassification(self.config)
        _load_strict(self.model, file, state)
        self.model.to(device).eval()  # eval: no dropout, so a pair always gets the same score
        # BLEURT-20 and its distillations tokenise with sentencepiece (spm.model); the package's
        # BleurtTokenizer would try a WordPiece tokenizer first and fall back to this one.
        if not (snapshot / "spm.model").is_file():
            raise WeightsError("no spm.model in the snapshot (BLEURT-20 and its -D12/-D6/-D3 use sentencepiece)",
                               path=snapshot, fix=_fix())
        self.tokenizer = BleurtSPTokenizer.from_pretrained(snapshot, local_files_only=True)
        # BLEURT cuts each pair to max_seq_length (512 for BLEURT-20, the size of the position table);
        # the snapshots' tokenizer_config may not say so (then model_max_length is "unlimited").
        self.max_length = min(self.tokenizer.model_max_length, self.config.max_position_embeddings)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.producer = _producer(snapshot)

    @torch.no_grad()
    def score(self, references: list[str], candidates: list[str]) -> list[float]:
        """One score per pair, in order (unbounded; about 0-1 for BLEURT-20)."""
        if len(references) != len(candidates):
            raise ValueError(f"{len(references)} references but {len(candidates)} candidates")
        scores: list[float] = []
        for i in range(0, len(references), self.batch_size):
            batch = self.tokenizer(references[i:i + self.batch_size], candidates[i:i + self.batch_size],
                                   padding="longest", truncation="longest_first", max_length=self.max_length,
                                   return_tensors="pt").to(self.device)
            scores += self.model(**batch).logits.flatten().tolist()
        return scores
