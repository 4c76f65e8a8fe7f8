#!/usr/bin/env python3
"""Writes tests/fixtures/golden_gpt.bin: a tiny GPT-2 run in plain PyTorch (fp32, CPU) that
tests/runtime/golden_test.cpp replays with Tandem, so CI needs no PyTorch.

Regenerate (Debian's python3-torch):
    /usr/bin/python3 tests/golden/make_golden.py            # from the repository root
The output is deterministic for a given torch build (fixed seeds, one thread).

Contract: the model is the repository's one PyTorch reference, bench/peers/torch_gpt.py (learned
wte/wpe, pre-LN blocks, qkv Linear(C,3C) with rows q heads | k heads | v heads, GELU tanh,
ln_f, LM head tied to wte, LayerNorm eps 1e-5); this script adds only the fixture's sizes, its
weights and the file. Weights are random (std 0.02, drawn from the fixture's own generator)
with non-trivial LayerNorm weights/biases and Linear biases, so every parameter affects the
loss. Parameters are named as Tandem names them, with torch shapes (wte is [vocab, C]; Tandem
pads it to 128 rows).

File format (all little-endian):
    8 bytes magic "TNDMGLD1", u32 record count, then per record:
    u32 name length, name bytes (ASCII), u32 dtype (0 = f32, 1 = i32), u32 ndim,
    ndim x i64 dims, raw data (prod(dims) elements; ndim 0 = one scalar).
Records:
    config.{layers,dim,heads,vocab,seq_len,batch,steps} i32 scalars
    config.{lr,beta1,beta2,eps,weight_decay,clip}       f32 scalars
    x, y                  i32 [batch, seq_len]  inputs and targets
    param.<name>          f32 initial weights
    logits                f32 [batch, seq_len, vocab]  first forward
    loss                  f32 scalar  mean cross-entropy of the first forward
    grad.<name>           f32 gradient of the mean loss (one forward/backward)
    train.loss            f32 [steps + 1]  mean loss before AdamW step 1..steps, and after
                          the last step (same batch each time)
    train.grad_norm       f32 [steps]  global gradient norm before clipping, per step
    final.<name>          f32 weights after the last step (1-D parameters and wpe only,
                          to keep the fixture small)
"""
import os
import struct
import sys

import torch
import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench", "peers"))
from torch_gpt import GPT  # noqa: E402  (the one PyTorch model of the repository)

LAYERS, DIM, HEADS, VOCAB, SEQ, BATCH, STEPS = 2, 24, 4, 97, 16, 3, 3
LR, BETA1, BETA2, EPS, WD, CLIP = 1e-3, 0.9, 0.95, 1e-8, 0.1, 1.0
SEED = 1234


TOP_NAMES = {"wte.weight": "wte", "wpe.weight": "wpe", "ln_f.weight": "lnf.w", "ln_f.bias": "lnf.b"}
BLOCK_PARTS = {"ln1": "ln1", "qkv": "attn.qkv", "proj": "attn.proj", "ln2": "ln2", "fc": "mlp.fc",
               "fc_proj": "mlp.proj"}


def tandem_name(name):
    """Tandem's name of a torch_gpt parameter: blocks.3.qkv.weight -> h.3.attn.qkv.w."""
    if name in TOP_NAMES:
        return TOP_NAMES[name]
    _, layer, part, kind = name.split(".")
    return f"h.{layer}.{BLOCK_PARTS[part]}.{kind[0]}"


def tandem_names(model):
    """(tandem name, torch parameter) in Tandem's registration order (torch_gpt's order)."""
    return [(tandem_name(n), p) for n, p in model.named_parameters()]


def init_weights(model, gen):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * 0.02)
            if isinstance(m, nn.Linear):
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.02)
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1.0 + 0.2 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=gen))


class Writer:
    def __init__(self):
        self.records = []

    def add(self, name, t):
        t = torch.as_tensor(t).detach().contiguous()
        if t.dtype in (torch.int32, torch.int64):
            dtype, data = 1, t.to(torch.int32).numpy().astype("<i4").tobytes()
        else:
            dtype, data = 0, t.to(torch.float32).numpy().astype("<f4").tobytes()
        nb = name.encode("ascii")
        head = struct.pack("<I", len(nb)) + nb + struct.pack("<II", dtype, t.dim())
        head += b"".join(struct.pack("<q", d) for d in t.shape)
        self.records.append(head + data)

    def write(self, path):
        with open(path, "wb") as f:
            f.write(b"TNDMGLD1" + struct.pack("<I", len(self.records)))
            for r in self.records:
                f.write(r)


def run(dtype):
    """The whole golden computation in `dtype`; returns a dict of results."""
    gen = torch.Generator().manual_seed(SEED)
    model = GPT(LAYERS, DIM, HEADS, VOCAB, SEQ)
    init_weights(model, gen)
    model = model.to(dtype)
    x = torch.randint(0, VOCAB, (BATCH, SEQ), generator=gen)
    y = torch.randint(0, VOCAB, (BATCH, SEQ), generator=gen)
    named = tandem_names(model)
    assert len(named) == len(list(model.parameters()))
    res = {"x": x, "y": y, "params": {n: p.detach().clone() for n, p in named}}

    logits, loss = model(x, y)
    loss.backward()
    res["logits"], res["loss"] = logits.detach().clone(), loss.detach().clone()
    res["grads"] = {n: p.grad.detach().clone() for n, p in named}
    model.zero_grad(set_to_none=True)

    decay = [p for n, p in named if p.dim() == 2]
    no_decay = [p for n, p in named if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=(BETA1, BETA2), eps=EPS)
    losses, norms = [], []
    for _ in range(STEPS):
        opt.zero_grad(set_to_none=True)
        _, loss = model(x, y)
        loss.backward()
        losses.append(loss.item())
        norms.append(float(nn.utils.clip_grad_norm_(model.parameters(), CLIP)))
        opt.step()
    with torch.no_grad():
        losses.append(model(x, y)[1].item())
    res["train_loss"], res["grad_norm"] = losses, norms
    res["final"] = {n: p.detach().clone() for n, p in named if p.dim() == 1 or n == "wpe"}
    return res


def main():
    torch.set_num_threads(1)
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests/fixtures/golden_gpt.bin")
    r = run(torch.float32)
    ref = run(torch.float64)  # context only: how far torch's own fp32 is from fp64

    w = Writer()
    for k, v in (("layers", LAYERS), ("dim", DIM), ("heads", HEADS), ("vocab", VOCAB),
                 ("seq_len", SEQ), ("batch", BATCH), ("steps", STEPS)):
        w.add("config." + k, torch.tensor(v, dtype=torch.int32))
    for k, v in (("lr", LR), ("beta1", BETA1), ("beta2", BETA2), ("eps", EPS),
                 ("weight_decay", WD), ("clip", CLIP)):
        w.add("config." + k, torch.tensor(v, dtype=torch.float32))
    w.add("x", r["x"])
    w.add("y", r["y"])
    for n, p in r["params"].items():
        w.add("param." + n, p)
    w.add("logits", r["logits"])
    w.add("loss", r["loss"])
    for n, g in r["grads"].items():
        w.add("grad." + n, g)
    w.add("train.loss", torch.tensor(r["train_loss"], dtype=torch.float32))
    w.add("train.grad_norm", torch.tensor(r["grad_norm"], dtype=torch.float32))
    for n, p in r["final"].items():
        w.add("final." + n, p)
    w.write(out)

    print(f"wrote {out} ({os.path.getsize(out)} bytes)")
    print(f"loss {r['loss'].item():.7f}  train.loss {r['train_loss']}  grad_norm {r['grad_norm']}")
    rel = lambda a, b: ((a.double() - b).abs().max() / b.abs().max()).item()
    print(f"fp32 vs fp64: logits rel {rel(r['logits'], ref['logits']):.2e}, "
          f"loss {abs(r['loss'].item() - ref['loss'].item()):.2e}, "
          f"worst grad rel {max(rel(r['grads'][n], ref['grads'][n]) for n in r['grads']):.2e}, "
          f"train.loss {max(abs(a - b) for a, b in zip(r['train_loss'], ref['train_loss'])):.2e}")


if __name__ == "__main__":
    main()
