"""The network: causality, the KV cache, and that it can learn (overfit a tiny dataset)."""

from __future__ import annotations

import torch

from clinfm.model.transformer import GPT, IGNORE_INDEX, GPTConfig


def _model(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=50, block_size=32, n_layer=2, n_head=2, n_embd=32, **kw)).eval()


def test_no_future_leakage():
    model = _model()
    x = torch.randint(0, 50, (2, 20))
    logits, _ = model(x)
    for t in (0, 7, 18):
        y = x.clone()
        y[:, t + 1 :] = torch.randint(0, 50, (2, 19 - t))  # change everything after position t
        changed, _ = model(y)
        assert torch.allclose(logits[:, : t + 1], changed[:, : t + 1], atol=1e-6)
        assert not torch.allclose(logits[:, t + 1 :], changed[:, t + 1 :])


def test_kv_cache_matches_full_forward():
    model = _model()
    x = torch.randint(0, 50, (3, 24))
    full, _ = model(x)
    cache = model.new_kv_cache(3)
    prefill, _ = model(x[:, :10], kv_cache=cache, start_pos=0)
    chunk, _ = model(x[:, 10:14], kv_cache=cache, start_pos=10)  # several tokens after a cached prefix
    steps = [model(x[:, t : t + 1], kv_cache=cache, start_pos=t)[0] for t in range(14, 24)]
    stitched = torch.cat([prefill, chunk, *steps], dim=1)
    assert torch.allclose(full, stitched, atol=1e-5)


def test_tied_embeddings_and_loss_ignores_padding():
    model = _model()
    assert model.lm_head.weight is model.wte.weight
    x = torch.randint(0, 50, (2, 8))
    y = x.clone()
    y[:, 4:] = IGNORE_INDEX
    _, loss = model(x, y)
    _, half = model(x[:, :4], y[:, :4])
    assert torch.allclose(loss, half, atol=1e-6)


def test_overfits_a_tiny_dataset(tiny_meds):
    from clinfm.data.store import SubjectDatabase
    from clinfm.model.corpus import build_windows
    from clinfm.model.tokenizer import ClinicalTokenizer
    from clinfm.model.train import inputs_and_targets, no_loss_mask

    db = SubjectDatabase(tiny_meds)
    tok = ClinicalTokenizer(min_count=1, n_value_bins=4).fit(db)
    rows = build_windows(db, tok, [1, 2, 3, 4, 5, 6], 65)
    x, y = inputs_and_targets(rows, no_loss_mask(tok))
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=64))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
