"""Fine-tuning on tiny data: instruction examples come from train subjects only with clinician corrections, a few
LoRA steps lower the training loss, training resumes from its checkpoint, and the registered version's lineage
names its base weights. A tiny randomly initialised Llama with a tokenizer trained here stands in for SmolLM2
(same code path, seconds instead of minutes)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("peft", reason="peft is not installed (pip install 'peft==0.21.2')")

from clinfm.agentbench.finetune import (  # noqa: E402
    FinetuneConfig,
    decide,
    finetune,
    instruction_examples,
    paired_comparison,
    register_finetuned,
)
from clinfm.govern.registry import sha256_file  # noqa: E402

CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tiny_model(folder, texts):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=600, special_tokens=["<|im_start|>", "<|im_end|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", bos_token="<|im_start|>")
    fast.chat_template = CHAT
    fast.save_pretrained(folder)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096)
    import torch

    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_lora_lowers_loss_resumes_and_registers_with_lineage(tiny, tmp_path):
    from clinfm.govern.registry import get_model

    feedback = [{"id": "fb_1", "question": "Latest potassium of patient 1002?", "correction": "5.1 mmol/L"},
                {"id": "fb_2", "question": "x", "correction": None}]
    config = FinetuneConfig(steps=4, learning_rate=1e-2, rank=4, alpha=8, dropout=0.0, target_modules=("q_proj", "v_proj"),
                            max_tokens=768, save_every=2, examples=1, per_subject=3)
    examples, manifest = instruction_examples(tiny, tmp_path / "work", config, feedback)
    assert manifest["feedback_ids"] == ["fb_1"] and manifest["split"] == "train"
    assert {e["source"] for e in examples} == {"train", "feedback"}
    first = examples[0]["messages"]
    assert first[-1]["role"] == "assistant" and first[-1]["content"].startswith("FINISH(")
    assert "1001" not in json.dumps([e["messages"] for e in examples])  # 1001 is held out
    model = tiny_model(tmp_path / "base", [m["content"] for e in examples for m in e["messages"]])
    out = tmp_path / "run"
    r1 = finetune(examples, manifest, out, config, model_path=str(model))
    assert r1.resumed_from == 0 and len(r1.losses) == 4
    config.steps = 12
    r2 = finetune(examples, manifest, out, config, model_path=str(model))
    assert r2.resumed_from == 4 and len(r2.losses) == 12 and r2.losses[:4] == r1.losses
    # the same two examples alternate: the last pair's loss is below the first pair's
    assert sum(r2.losses[-2:]) < sum(r2.losses[:2]) - 0.05, r2.losses
    assert (out / "adapter" / "adapter_model.safetensors").exists() and (out / "merged" / "model.safetensors").exists()
    lineage = json.loads((out / "lineage.json").read_text())
    assert lineage["base_weights_sha256"] == sha256_file(model / "model.safetensors")
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    v = register_finetuned(r2, tiny, "assistant-tuned", "test", db=db)
    got = get_model(v.id, db=db)
    values = got.training_config["values"]
    assert values["base_weights_sha256"] == lineage["base_weights_sha256"]
    assert values["feedback_ids"] == ["fb_1"] and values["data_manifest"]["examples_sha256"] == manifest["examples_sha256"]
    assert got.state == "draft"


def test_change_decision_needs_a_lower_bound_above_zero():
    from clinfm.agentbench.grade import Grade
    from clinfm.agentbench.tasks import Task

    tasks = [Task(f"t{i}", "age", i % 10, "", "", "", {}, [1]) for i in range(60)]
    base = [(t, None, Grade(i % 2 == 0, "")) for i, t in enumerate(tasks)]
    better = [(t, None, Grade(True, "")) for t in tasks]
    same = [(t, None, Grade(i % 2 == 0, "")) for i, t in enumerate(tasks)]
    up = paired_comparison(base, better, n_resamples=300)
    assert up["difference"] == pytest.approx(0.5) and decide(up)[0]
    flat = paired_comparison(base, same, n_resamples=300)
    assert flat["difference"] == 0 and not decide(flat)[0]


@pytest.mark.slow
def test_cli_finetune_compares_on_held_out_and_refuses_an_unproven_change(tiny, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from clinfm.agentbench.finetune import FinetuneConfig, instruction_examples
    from clinfm.cli import app

    examples, _ = instruction_examples(tiny, tmp_path / "w", FinetuneConfig(examples=2, per_subject=3))
    model = tiny_model(tmp_path / "base", [m["content"] for e in examples for m in e["messages"]])
    monkeypatch.setenv("CLINFM_HOME", str(tmp_path / "home"))
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["assist-finetune", str(tiny), "--out", str(out), "--model", str(model), "--steps", "2",
                                 "--examples", "2", "--feedback", str(tmp_path / "none.jsonl"), "--compare-limit", "3",
                                 "--max-steps", "1", "--max-new-tokens", "8"])  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "change_comparison.json").read_text())
    assert doc["accepted"] is False and "not registered" in r.output
    assert doc["comparison"]["all"]["n"] == 3 and doc["lineage"]["base_weights_sha256"]
    assert (out / "compare-base.json").exists() and (out / "compare-tuned.json").exists()
