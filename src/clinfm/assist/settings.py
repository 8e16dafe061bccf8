"""The assistant's settings, from ``CLINFM_ASSIST_*`` environment variables (pydantic-settings), and the one
place a backend is built from them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from clinfm.assist.backends import LanguageModel, OpenAIBackend


class AssistSettings(BaseSettings):
    """Each field is ``CLINFM_ASSIST_<FIELD>`` in the environment (lists and maps as JSON)."""

    model_config = SettingsConfigDict(env_prefix="CLINFM_ASSIST_", env_file=".env", extra="ignore")

    backend: Literal["local", "openai"] = "local"
    model_path: Path | None = Field(None, description="local: a .gguf file or a Hugging Face folder (default: embedded SmolLM2-135M-Instruct).")
    cache_dir: Path | None = Field(None, description="local: where de-quantized weights are cached (default ~/.cache/clinfm/assist).")
    device: str | None = Field(None, description="local: cpu or cuda (default: cuda when present).")
    threads: int | None = Field(None, ge=1, le=256, description="local: torch CPU threads.")
    base_url: str | None = Field(None, description="openai: the endpoint's base URL, e.g. http://localhost:8000/v1.")
    model: str | None = Field(None, description="openai: the model (or Azure deployment) name.")
    api_key: SecretStr | None = Field(None, description="openai: the endpoint's key.")
    api_key_header: str = Field("Authorization", description="openai: 'Authorization' (Bearer) or 'api-key' (Azure).")
    api_version: str | None = Field(None, description="openai: an 'api-version' query parameter (Azure OpenAI).")
    supports_tools: bool = True
    supports_json_schema: bool = True
    context_tokens: int = Field(8192, ge=512, description="openai: the model's context window.")
    timeout_s: float = Field(60.0, gt=0, le=600, description="Longest wait for one model call (local: one generation).")
    max_retries: int = Field(2, ge=0, le=10)
    max_steps: int = Field(3, ge=1, le=8)
    chart_tokens: int = Field(1500, ge=100)
    answer_tokens: int = Field(200, ge=16, le=4096)
    max_statements: int | None = Field(None, ge=1, le=10, description="Statements in one answer (default: local 2, openai 5).")
    statement_chars: int = Field(140, ge=20, le=1000, description="Longest statement the decoder may write.")
    use_tools: bool | None = Field(None, description="Offer tools to the model (default: openai yes, local no: a 135M model calls them poorly).")
    egress_allow_hosts: dict[str, list[str]] = Field(default_factory=dict, description="Per organization: hosts that may receive identified record data (e.g. {\"demo\": [\"vllm.internal\"]}).")
    keep_text_orgs: list[str] = Field(default_factory=list, description="Organizations whose policy keeps prompt and answer text (in data_dir, never in the audit chain).")

    def is_local(self) -> bool:
        return self.backend == "local"


def make_backend(settings: AssistSettings) -> LanguageModel:
    """The configured backend (the local model is loaded once per process)."""
    if settings.backend == "openai":
        if not settings.base_url or not settings.model:
            raise ValueError("the openai backend needs CLINFM_ASSIST_BASE_URL and CLINFM_ASSIST_MODEL")
        return OpenAIBackend(
            settings.base_url, settings.model, settings.api_key.get_secret_value() if settings.api_key else None,
            timeout_s=settings.timeout_s, max_retries=settings.max_retries, context_tokens=settings.context_tokens,
            api_key_header=settings.api_key_header, query={"api-version": settings.api_version} if settings.api_version else None,
            supports_tools=settings.supports_tools, supports_json_schema=settings.supports_json_schema,
        )  # fmt: skip
    from clinfm.assist.local import LocalBackend

    return LocalBackend(settings.model_path, cache_dir=settings.cache_dir, device=settings.device,
                        timeout_s=settings.timeout_s, threads=settings.threads)  # fmt: skip
