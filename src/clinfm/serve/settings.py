"""Serving settings, read from ``CLINFM_*`` environment variables (or a ``.env`` file) by pydantic-settings.

In ``CLINFM_ENV=production`` the settings refuse to load with a missing or default tenant secret or with
open CORS, so an unsafe server never starts; development keeps working without any of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET_MARKERS = ("changeme", "change-me", "default", "secret", "demo")
"""Secret file contents that are placeholders, never real keys (refused in production)."""


class ServeSettings(BaseSettings):
    """Everything ``clinfm serve`` needs; each field is ``CLINFM_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="CLINFM_", env_file=".env", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    data_dir: Path = Field(Path("clinfm-data"), description="Where feedback, predictions and inline bundles kept on request are written.")
    dataset_path: Path | None = Field(None, description="The (de-identified) MEDS dataset predictions read subjects from.")
    dataset_org: str = Field("demo", description="The organization that owns the dataset: only its keys read its subjects.")
    model_run_dir: Path | None = Field(None, description="A foundation-model run folder (checkpoint) when the registry gives none.")
    database_url: str | None = Field(None, description="Governance database (registry, keys, audit); default: sqlite in data_dir.")
    tenant_secret_file: Path | None = Field(None, description="Secret for pseudonyms and date shifts of inline FHIR data.")
    cors_origins: list[str] = Field(default_factory=list, description="Allowed browser origins; '*' is refused in production.")
    max_body_bytes: int = Field(2 * 2**20, gt=0, description="Larger request bodies get 413.")
    prediction_cache_size: int = Field(4096, ge=0, description="Cached (model version, subject, time) results.")
    batch_window_ms: float = Field(2.0, ge=0, description="How long a model call waits to batch concurrent requests.")
    max_batch_size: int = Field(32, gt=0)
    rollout_samples: int = Field(64, gt=0, description="Sampled futures per prediction (fewer: faster, wider intervals).")
    default_horizon_days: int = Field(365, gt=0, le=3650)
    model_timeout_s: float = Field(30.0, gt=0, le=600, description="Time budget of one forecast; past it: 503 with Retry-After.")
    model_queue_limit: int = Field(64, ge=1, le=100_000, description="Forecasts queued per model; more are shed with 503.")
    ddx_sessions_per_org: int = Field(1000, ge=1, le=1_000_000, description="Differential-diagnosis sessions kept per organization.")
    model_threads: int = Field(1, ge=1, le=256, description="torch CPU threads for rollouts (the event loop keeps a core).")
    cookie_secure: bool = Field(False, description="Mark the web login cookie Secure (needs HTTPS); forced on in production.")
    public_base_url: str = Field("", description="Base URL used in CDS cards' links (empty: from the request).")
    fhir_identified_orgs: list[str] = Field(default_factory=list, description="Organizations the FHIR API may serve a dataset that is not de-identified.")

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def feedback_file(self) -> Path:
        return self.data_dir / "cds-feedback.jsonl"

    @property
    def predictions_file(self) -> Path:
        return self.data_dir / "predictions.jsonl"

    @property
    def resolved_database_url(self) -> str:
        """``CLINFM_DATABASE_URL``, else governance's default (``$CLINFM_HOME/registry.db``), shared with the CLI."""
        if self.database_url:
            return self.database_url
        try:
            from clinfm.govern.db import default_url
        except ModuleNotFoundError:
            return f"sqlite:///{(self.data_dir / 'registry.db').resolve()}"
        return default_url()

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> ServeSettings:
        if not self.production:
            return self
        problems = []
        if "*" in self.cors_origins:
            problems.append("CLINFM_CORS_ORIGINS contains '*' (open CORS); list the EHR and web origins")
        problems += _secret_problems(self.tenant_secret_file)
        problems += _audit_key_problems()
        if problems:
            raise ValueError("refusing to start in production: " + "; ".join(problems))
        self.cookie_secure = True
        return self


def _audit_key_problems() -> list[str]:
    import os

    problems = []
    if not (os.environ.get("CLINFM_AUDIT_KEY") or os.environ.get("CLINFM_AUDIT_KEY_FILE")):
        problems.append("neither CLINFM_AUDIT_KEY nor CLINFM_AUDIT_KEY_FILE is set (the audit chain's MAC key, "
                        "from the secret store; `clinfm audit init-keys DIR` makes one)")  # fmt: skip
    signing = os.environ.get("CLINFM_AUDIT_SIGNING_KEY_FILE")
    if not signing or not Path(signing).is_file():
        problems.append("CLINFM_AUDIT_SIGNING_KEY_FILE does not name an Ed25519 key file (the audit checkpoints' "
                        "signing key; `clinfm audit init-keys DIR` makes one)")  # fmt: skip
    return problems


def _secret_problems(path: Path | None) -> list[str]:
    if path is None:
        return ["CLINFM_TENANT_SECRET_FILE is not set (create one with `clinfm deid-secret FILE`)"]
    if not path.is_file():
        return [f"CLINFM_TENANT_SECRET_FILE {str(path)!r} does not exist"]
    secret = path.read_bytes().strip()
    if len(secret) < 32:
        return [f"CLINFM_TENANT_SECRET_FILE holds {len(secret)} bytes; expected at least 32 random bytes"]
    if secret.lower().decode(errors="ignore") in DEFAULT_SECRET_MARKERS or len(set(secret)) < 8:
        return ["CLINFM_TENANT_SECRET_FILE holds a placeholder, not a random secret"]
    return []
