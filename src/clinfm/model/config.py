"""Foundation-model run configuration: YAML files (packaged ``clinfm/defaults/models/fm-*.yaml``) read into
pydantic models.

One file has three sections: ``tokenizer`` (how timelines become tokens), ``model`` (the network's size)
and ``training`` (optimisation, schedule, evaluation and checkpoints).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from clinfm.defaults import model_config_path
from clinfm.model.transformer import GPTConfig


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenizerSection(_Section):
    min_count: int = Field(5, ge=1, description="codes seen fewer times in train roll up to a parent or UNK")
    n_value_bins: int = Field(10, ge=1, le=100, description="quantile bins per numeric code (10 = deciles)")
    age_band_years: int = Field(5, ge=1)
    fused_values: bool = Field(False, description="code and value bin in one token (LOINC//2160-0|Q3)")


class ModelSection(_Section):
    n_layer: int = Field(4, ge=1)
    n_head: int = Field(4, ge=1)
    n_embd: int = Field(256, ge=8)
    block_size: int = Field(256, ge=8, description="window length in tokens")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    bias: bool = False
    tte_tasks: int = Field(0, ge=0, description="time-to-event head over this many most frequent codes (0: off)")
    tte_weight: float = Field(1.0, ge=0, description="weight of the time-to-event loss beside next-token loss")
    tte_bin_days: tuple[float, ...] = Field((1.0, 7.0, 30.0, 90.0, 365.0), description="piecewise-hazard bin edges")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelSection:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not a multiple of n_head {self.n_head}")
        if (self.n_embd // self.n_head) % 2:
            raise ValueError(f"head size {self.n_embd // self.n_head} must be even for rotary positions")
        return self

    def gpt_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(vocab_size=vocab_size, **self.model_dump())


class TrainingSection(_Section):
    seed: int = 0
    batch_size: int = Field(16, ge=1, description="windows per optimizer step, over all processes")
    grad_accum_steps: int = Field(1, ge=1, description="micro-batches per step in each process")
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; None: epochs x steps per epoch")
    epochs: float = Field(1.0, gt=0)
    lr: float = Field(1e-3, gt=0)
    min_lr: float = Field(1e-4, ge=0)
    warmup_steps: int = Field(20, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm; 0 turns clipping off")
    eval_interval: int = Field(100, ge=1, description="steps between evaluations on the tuning split")
    eval_windows: int | None = Field(None, ge=1, description="tuning windows per evaluation; None: all")
    checkpoint_interval: int = Field(100, ge=1)
    log_interval: int = Field(10, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp_dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="autocast dtype on GPU (auto: bf16 where supported, else fp16); CPU is always fp32"
    )
    compile: bool = False
    parallel: Literal["ddp", "fsdp"] = Field(
        "ddp",
        description="under torchrun: ddp keeps a whole model in every process; fsdp shards parameters, gradients "
        "and optimizer state over the processes, for models that do not fit one GPU",
    )
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads; None leaves torch's default")


class FMConfig(_Section):
    name: str = "fm"
    tokenizer: TokenizerSection = TokenizerSection()
    model: ModelSection = ModelSection()
    training: TrainingSection = TrainingSection()


def load_config(config: str | Path | FMConfig | dict | None = None) -> FMConfig:
    """An :class:`FMConfig` from a YAML path, a packaged size by name (``fm-tiny``, ``fm-small``, ``fm-medium``),
    a dict or an FMConfig (returned as is); ``None`` is ``$CLINFM_MODEL_CONFIG``, else ``fm-small``."""
    if isinstance(config, FMConfig):
        return config
    if isinstance(config, dict):
        return FMConfig.model_validate(config)
    path = model_config_path(config)
    if not path.exists():
        raise FileNotFoundError(f"model config {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    data.setdefault("name", path.stem)
    return FMConfig.model_validate(data)


def save_config(config: FMConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.model_dump(), sort_keys=False))
