"""Language-model backends behind one small interface: :class:`LanguageModel`.

``OpenAIBackend`` speaks the Chat Completions protocol over httpx (vLLM, Ollama, llama.cpp server, TGI, Azure AI
Foundry); ``clinfm.assist.local.LocalBackend`` runs a transformers model in the process. Both return a
:class:`Completion` (text or tool calls, token usage, latency) and raise :class:`BackendUnavailable` (with a
``retry_after_s``) when the model cannot answer in time, never anything slower than their timeout.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlparse

import httpx

Message = dict[str, Any]
"""A chat message: ``{"role": "system" | "user" | "assistant" | "tool", "content": str, ...}``."""


@dataclass
class Usage:
    """Tokens spent, as the backend counted them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens


@dataclass(frozen=True)
class ToolSpec:
    """A tool the model may call: its name, what it does, and a JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]

    def openai(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}  # fmt: skip


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass
class Completion:
    """One model turn: ``content`` (text, JSON when a schema was asked for) or ``tool_calls``."""

    content: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    finish_reason: str = "stop"
    seconds: float = 0.0
    constrained: bool = False  # the backend enforced the schema while decoding (local) or server-side


class BackendError(RuntimeError):
    """The backend answered, but not usefully (a refused request, output that is not what was asked for)."""


class BackendUnavailable(BackendError):
    """The backend is down, overloaded or slower than its timeout: try again after ``retry_after_s`` seconds."""

    def __init__(self, message: str, retry_after_s: int = 30) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@runtime_checkable
class LanguageModel(Protocol):
    """What the assistant needs from a language model."""

    kind: str  # "local" | "openai"
    model_id: str
    context_tokens: int

    def complete(self, messages: list[Message], *, schema: dict[str, Any] | None = None,
                 tools: list[ToolSpec] | None = None, max_tokens: int = 256,
                 on_text: Callable[[str], None] | None = None) -> Completion:
        """One turn. ``schema``: the reply must be JSON valid against it. ``tools``: the model may call one
        instead of replying. ``on_text`` receives text as it is generated (streaming)."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def describe(self) -> dict[str, Any]:
        """What identifies this configuration for governance (backend, model id, weights hash, host)."""
        ...


def approx_tokens(text: str) -> int:
    """A conservative token estimate (about 3.5 characters a token for English and codes)."""
    return max(1, int(len(text) / 3.5) + 1)


# --- OpenAI-compatible ---------------------------------------------------------------------------------------
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class OpenAIBackend:
    """Any OpenAI-compatible Chat Completions endpoint.

    Tools and ``response_format: json_schema`` are used where the endpoint supports them; an endpoint that
    refuses them (HTTP 400 naming the field) is remembered as not supporting them, and the request is sent again
    with the schema written into the prompt (plain JSON prompting). Transient failures (connection errors,
    timeouts, 429, 5xx) are retried ``max_retries`` times with exponential backoff and jitter, within
    ``timeout_s`` overall; then :class:`BackendUnavailable` is raised.
    """

    kind = "openai"

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, timeout_s: float = 30.0,
                 max_retries: int = 2, backoff_s: float = 0.5, context_tokens: int = 8192,
                 api_key_header: str = "Authorization", query: dict[str, str] | None = None,
                 supports_tools: bool = True, supports_json_schema: bool = True,
                 transport: httpx.BaseTransport | None = None) -> None:  # fmt: skip
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base URL {base_url!r} is not an http(s) URL (expected e.g. http://localhost:8000/v1)")
        self.base_url, self.model_id, self.context_tokens = base_url.rstrip("/"), model, context_tokens
        self.timeout_s, self.max_retries, self.backoff_s = timeout_s, max_retries, backoff_s
        self.supports_tools, self.supports_json_schema = supports_tools, supports_json_schema
        headers = {}
        if api_key:
            headers[api_key_header] = f"Bearer {api_key}" if api_key_header.lower() == "authorization" else api_key
        self._client = httpx.Client(base_url=self.base_url, headers=headers, params=query or {},
                                    timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
                                    transport=transport)  # fmt: skip

    @property
    def native_tools(self) -> bool:
        return self.supports_tools

    @property
    def host(self) -> str:
        return urlparse(self.base_url).hostname or ""

    def describe(self) -> dict[str, Any]:
        return {"backend": self.kind, "model_id": self.model_id, "host": self.host, "weights_sha256": None}

    def count_tokens(self, text: str) -> int:
        return approx_tokens(text)

    def close(self) -> None:
        self._client.close()

    def complete(self, messages: list[Message], *, schema: dict[str, Any] | None = None,
                 tools: list[ToolSpec] | None = None, max_tokens: int = 256,
                 on_text: Callable[[str], None] | None = None) -> Completion:
        t0 = time.perf_counter()
        deadline = time.monotonic() + self.timeout_s
        for _ in range(3):  # at most two downgrades (tools, then json_schema)
            body = self._body(messages, schema, tools, max_tokens, stream=on_text is not None)
            try:
                out = self._post_with_retries(body, deadline, on_text)
            except _Unsupported as exc:
                if exc.feature == "tools" and self.supports_tools:
                    self.supports_tools = False
                elif exc.feature == "response_format" and self.supports_json_schema:
                    self.supports_json_schema = False
                else:
                    raise BackendError(f"{self.base_url} refused the request: {exc}") from None
                continue
            if tools and not self.supports_tools and out.content:
                out.content, out.tool_calls = split_tool_reply(out.content, tools)
            out.seconds = time.perf_counter() - t0
            out.constrained = schema is not None and self.supports_json_schema
            return out
        raise BackendError(f"{self.base_url} refused the request after dropping tools and response_format")

    # The request -------------------------------------------------------------------------------------------
    def _body(self, messages: list[Message], schema: dict[str, Any] | None, tools: list[ToolSpec] | None,
              max_tokens: int, stream: bool) -> dict[str, Any]:  # fmt: skip
        msgs = [dict(m) for m in messages]
        body: dict[str, Any] = {"model": self.model_id, "max_tokens": max_tokens, "temperature": 0}
        if tools and self.supports_tools:
            body["tools"] = [t.openai() for t in tools]
        elif tools:
            msgs = _with_instruction(msgs, tool_prompt(tools))
            schema = combined_schema(schema, tools)
        if schema is not None and self.supports_json_schema:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "reply", "schema": schema, "strict": True}}  # fmt: skip
        elif schema is not None:
            msgs = _with_instruction(msgs, "Reply with one JSON object and nothing else, valid against this JSON "
                                           f"schema:\n{json.dumps(schema)}")  # fmt: skip
        body["messages"] = msgs
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def _post_with_retries(self, body: dict[str, Any], deadline: float,
                           on_text: Callable[[str], None] | None) -> Completion:  # fmt: skip
        attempt, last = 0, "no attempt"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BackendUnavailable(f"{self.host} did not answer within {self.timeout_s:g} s ({last})",
                                         retry_after_s=max(1, int(self.timeout_s)))  # fmt: skip
            try:
                return self._post(body, remaining, on_text)
            except _Transient as exc:
                last = str(exc)
                attempt += 1
                if attempt > self.max_retries:
                    raise BackendUnavailable(f"{self.host} is unavailable after {attempt} attempts ({last})",
                                             retry_after_s=exc.retry_after_s or 30) from None  # fmt: skip
                pause = exc.retry_after_s or self.backoff_s * 2 ** (attempt - 1) * (1 + random.random() / 2)
                time.sleep(max(0.0, min(pause, deadline - time.monotonic())))

    def _post(self, body: dict[str, Any], remaining: float, on_text: Callable[[str], None] | None) -> Completion:
        timeout = httpx.Timeout(remaining, connect=min(5.0, remaining))
        try:
            if body.get("stream"):
                with self._client.stream("POST", "/chat/completions", json=body, timeout=timeout) as r:
                    if r.status_code != 200:
                        r.read()
                        self._raise_for(r)
                    return _read_stream(r, on_text, deadline=time.monotonic() + remaining)
            r = self._client.post("/chat/completions", json=body, timeout=timeout)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise _Transient(f"{type(exc).__name__}") from None
        if r.status_code != 200:
            self._raise_for(r)
        try:
            return _parse_completion(r.json())
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise BackendError(f"{self.host} answered something that is not a chat completion ({exc})") from None

    def _raise_for(self, r: httpx.Response) -> None:
        text = r.text[:500]
        if r.status_code in RETRY_STATUS:
            after = r.headers.get("retry-after", "")
            raise _Transient(f"HTTP {r.status_code}", int(after) if after.isdigit() else None)
        if r.status_code in (400, 422):
            for feature in ("tools", "response_format"):
                if feature in text or (feature == "tools" and "tool" in text.lower()):
                    raise _Unsupported(feature, f"HTTP {r.status_code} naming {feature}")
        raise BackendError(f"{self.host} answered HTTP {r.status_code}")


class _Transient(Exception):
    def __init__(self, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class _Unsupported(Exception):
    def __init__(self, feature: str, message: str) -> None:
        super().__init__(message)
        self.feature = feature


def _with_instruction(messages: list[Message], text: str) -> list[Message]:
    if messages and messages[0].get("role") == "system":
        return [{**messages[0], "content": f"{messages[0]['content']}\n\n{text}"}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def _usage(doc: dict[str, Any] | None) -> Usage:
    doc = doc or {}
    return Usage(int(doc.get("prompt_tokens") or 0), int(doc.get("completion_tokens") or 0))


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError:
        raise BackendError(f"tool call arguments are not JSON: {str(raw)[:80]!r}") from None
    if not isinstance(value, dict):
        raise BackendError("tool call arguments are not a JSON object")
    return value


def _parse_completion(doc: dict[str, Any]) -> Completion:
    choice = doc["choices"][0]
    msg = choice.get("message") or {}
    calls = [ToolCall(c.get("id") or f"call_{i}", c["function"]["name"], _arguments(c["function"].get("arguments")))
             for i, c in enumerate(msg.get("tool_calls") or [])]  # fmt: skip
    return Completion(content=msg.get("content"), tool_calls=calls, usage=_usage(doc.get("usage")),
                      finish_reason=choice.get("finish_reason") or "stop")  # fmt: skip


def _read_stream(r: httpx.Response, on_text: Callable[[str], None] | None, deadline: float) -> Completion:
    """Server-sent events: content deltas to ``on_text``, tool-call deltas joined by index, usage from the end."""
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    usage, finish = Usage(), "stop"
    try:
        for line in r.iter_lines():
            if time.monotonic() > deadline:
                raise _Transient("stream slower than the timeout")
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if chunk.get("usage"):
                usage = _usage(chunk["usage"])
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    text.append(delta["content"])
                    if on_text:
                        on_text(delta["content"])
                for tc in delta.get("tool_calls") or []:
                    slot = calls.setdefault(tc.get("index", 0), {"id": None, "name": "", "arguments": ""})
                    slot["id"] = tc.get("id") or slot["id"]
                    fn = tc.get("function") or {}
                    slot["name"] += fn.get("name") or ""
                    slot["arguments"] += fn.get("arguments") or ""
                finish = choice.get("finish_reason") or finish
    except (httpx.TimeoutException, httpx.TransportError) as exc:
        raise _Transient(type(exc).__name__) from None
    except json.JSONDecodeError:
        raise BackendError("the stream held an event that is not JSON") from None
    tool_calls = [ToolCall(s["id"] or f"call_{i}", s["name"], _arguments(s["arguments"])) for i, s in sorted(calls.items())]
    return Completion(content="".join(text) or None, tool_calls=tool_calls, usage=usage, finish_reason=finish)


# --- tools as JSON (for backends without native tool calling) -----------------------------------------------
def tool_prompt(tools: list[ToolSpec]) -> str:
    lines = ["You may call one tool instead of answering: reply {\"tool\": NAME, \"arguments\": {...}}. Tools:"]
    lines += [f"- {t.name}: {t.description} Arguments: {json.dumps(t.parameters)}" for t in tools]
    return "\n".join(lines)


def combined_schema(answer: dict[str, Any] | None, tools: list[ToolSpec]) -> dict[str, Any]:
    """One schema for 'call one of these tools, or answer': what a constrained decoder can enforce."""
    options = [{"type": "object", "properties": {"tool": {"const": t.name}, "arguments": t.parameters},
                "required": ["tool", "arguments"], "additionalProperties": False} for t in tools]  # fmt: skip
    if answer is not None:
        options.append(answer)
    return {"anyOf": options} if len(options) > 1 else options[0]


def split_tool_reply(content: str | None, tools: list[ToolSpec] | None) -> tuple[str | None, list[ToolCall]]:
    """A JSON-prompted reply that is a tool call becomes a :class:`ToolCall`; anything else stays content."""
    if not tools or not content:
        return content, []
    try:
        doc = json.loads(content)
    except json.JSONDecodeError:
        return content, []
    if isinstance(doc, dict) and isinstance(doc.get("tool"), str) and isinstance(doc.get("arguments"), dict):
        return None, [ToolCall("call_0", doc["tool"], doc["arguments"])]
    return content, []
