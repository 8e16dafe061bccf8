"""The OpenAI Chat Completions protocol against a scripted OpenAI-compatible server started by the test:
tools, json_schema and its fallback, errors and retries, timeouts, streaming, token accounting."""

from __future__ import annotations

import json
import time

import pytest

from clinfm.assist.backends import BackendError, BackendUnavailable, OpenAIBackend, ToolSpec
from tests.assist.conftest import Scripted, chat

SCHEMA = {"type": "object", "properties": {"statements": {"type": "array"}}, "required": ["statements"]}
TOOL = ToolSpec("lab_series", "values of a lab", {"type": "object", "properties": {"code": {"type": "string"}},
                                                   "required": ["code"]})  # fmt: skip


def test_json_schema_and_usage(openai_server):
    url, script = openai_server
    script.replies.append(Scripted(body=chat('{"statements": []}', prompt=77, completion=5)))
    b = OpenAIBackend(url, "m-1", "sk-test")
    out = b.complete([{"role": "user", "content": "hi"}], schema=SCHEMA, max_tokens=33)
    assert json.loads(out.content) == {"statements": []}
    assert (out.usage.prompt_tokens, out.usage.completion_tokens, out.constrained) == (77, 5, True)
    sent = script.requests[0]
    assert sent["model"] == "m-1" and sent["max_tokens"] == 33 and sent["temperature"] == 0
    assert sent["response_format"]["json_schema"]["schema"] == SCHEMA
    assert script.headers[0]["authorization"] == "Bearer sk-test"


def test_native_tool_call(openai_server):
    url, script = openai_server
    script.replies.append(Scripted(body=chat(None, tool_calls=[{"id": "call_9", "type": "function", "function": {
        "name": "lab_series", "arguments": '{"code": "LOINC//2160-0"}'}}])))  # fmt: skip
    out = OpenAIBackend(url, "m").complete([{"role": "user", "content": "x"}], schema=SCHEMA, tools=[TOOL])
    assert out.content is None and [(c.id, c.name, c.arguments) for c in out.tool_calls] == [
        ("call_9", "lab_series", {"code": "LOINC//2160-0"})]
    assert script.requests[0]["tools"][0]["function"]["name"] == "lab_series"


def test_endpoint_without_tools_or_json_schema_falls_back_to_json_prompting(openai_server):
    url, script = openai_server
    script.replies += [Scripted(400, {"error": {"message": "tools are not supported by this model"}}),
                       Scripted(400, {"error": {"message": "response_format json_schema unsupported"}}),
                       Scripted(body=chat('{"tool": "lab_series", "arguments": {"code": "LOINC//4548-4"}}'))]  # fmt: skip
    b = OpenAIBackend(url, "m")
    out = b.complete([{"role": "system", "content": "sys"}, {"role": "user", "content": "x"}], schema=SCHEMA, tools=[TOOL])
    assert [c.name for c in out.tool_calls] == ["lab_series"] and out.tool_calls[0].arguments == {"code": "LOINC//4548-4"}
    last = script.requests[-1]
    assert "tools" not in last and "response_format" not in last
    assert "JSON schema" in last["messages"][0]["content"] and "lab_series" in last["messages"][0]["content"]
    assert (b.supports_tools, b.supports_json_schema) == (False, False)


def test_retries_transient_errors_then_succeeds(openai_server):
    url, script = openai_server
    script.replies += [Scripted(503, {"error": "busy"}), Scripted(429, {"error": "slow down"}, headers={"Retry-After": "0"}),
                       Scripted(body=chat('{"statements": []}'))]  # fmt: skip
    out = OpenAIBackend(url, "m", max_retries=2, backoff_s=0.01).complete([{"role": "user", "content": "x"}])
    assert out.content == '{"statements": []}' and len(script.requests) == 3


def test_down_after_retries_is_unavailable_with_retry_after(openai_server):
    url, script = openai_server
    script.replies += [Scripted(502, {}), Scripted(502, {}), Scripted(502, {}, headers={"Retry-After": "7"})]
    with pytest.raises(BackendUnavailable) as err:
        OpenAIBackend(url, "m", max_retries=2, backoff_s=0.01).complete([{"role": "user", "content": "x"}])
    assert err.value.retry_after_s == 7 and len(script.requests) == 3


def test_slow_endpoint_times_out_without_hanging(openai_server):
    url, script = openai_server
    script.replies += [Scripted(body=chat("late"), delay_s=3.0)] * 3
    t0 = time.monotonic()
    with pytest.raises(BackendUnavailable):
        OpenAIBackend(url, "m", timeout_s=0.5, max_retries=5, backoff_s=0.01).complete([{"role": "user", "content": "x"}])
    assert time.monotonic() - t0 < 1.5


def test_nothing_listening_is_unavailable():
    with pytest.raises(BackendUnavailable):
        OpenAIBackend("http://127.0.0.1:9/v1", "m", timeout_s=1.0, max_retries=1, backoff_s=0.01).complete(
            [{"role": "user", "content": "x"}])


def test_client_error_is_a_backend_error(openai_server):
    url, script = openai_server
    script.replies.append(Scripted(401, {"error": "bad key"}))
    with pytest.raises(BackendError, match="HTTP 401") as err:
        OpenAIBackend(url, "m").complete([{"role": "user", "content": "x"}])
    assert not isinstance(err.value, BackendUnavailable)


def test_streaming_text_tool_deltas_and_usage(openai_server):
    url, script = openai_server
    chunks = [{"choices": [{"index": 0, "delta": {"content": '{"statements"'}}]},
              {"choices": [{"index": 0, "delta": {"content": ": []}"}, "finish_reason": "stop"}]},
              {"choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 6}}]  # fmt: skip
    script.replies.append(Scripted(stream=chunks))
    seen: list[str] = []
    out = OpenAIBackend(url, "m").complete([{"role": "user", "content": "x"}], on_text=seen.append)
    assert seen == ['{"statements"', ": []}"] and out.content == '{"statements": []}'
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (40, 6)
    assert script.requests[0]["stream"] is True
    tool_chunks = [{"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {
                       "name": "lab_series", "arguments": '{"co'}}]}}]},
                   {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": 'de": "X"}'}}]},
                                 "finish_reason": "tool_calls"}]}]  # fmt: skip
    script.replies.append(Scripted(stream=tool_chunks))
    out = OpenAIBackend(url, "m").complete([{"role": "user", "content": "x"}], tools=[TOOL], on_text=seen.append)
    assert [(c.name, c.arguments) for c in out.tool_calls] == [("lab_series", {"code": "X"})]


def test_azure_style_key_header_and_api_version(openai_server):
    url, script = openai_server
    script.replies.append(Scripted(body=chat("ok")))
    OpenAIBackend(url, "deployment-1", "azkey", api_key_header="api-key", query={"api-version": "2024-10-21"}).complete(
        [{"role": "user", "content": "x"}])
    assert script.headers[0]["api-key"] == "azkey" and "authorization" not in script.headers[0]


def test_refuses_a_non_http_base_url():
    with pytest.raises(ValueError, match="not an http"):
        OpenAIBackend("ftp://x", "m")
