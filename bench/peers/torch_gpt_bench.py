#!/usr/bin/env python3
"""The CPU peer: the PyTorch reference model (torch_gpt.py beside this file: GPT-2, plain
torch.nn ops, explicit attention), fp32, on the CPU, timed the way bench/run_train_bench.sh and
bench/run_decode_bench.sh compare it with Tandem's train_bench and decode_bench.

Modes
  train : AdamW training steps on random tokens; prints per-step time and
          median tokens/s over steps after 2 warm-up steps.
  infer : (1) prefill: one forward over batch x seq prompt tokens (no grad),
              repeated --steps times; tokens/s = batch*seq / time.
          (2) greedy decode with NO KV cache: each new token re-runs the full
              forward over the whole (growing) context, takes argmax of the
              last position; tokens/s = batch * new_tokens / total time.
          (3) greedy decode WITH a KV cache from the same prompt (prefill
              included in the time; the cache grows by concatenation); checks
              it yields the same tokens as (2).

Final line is machine-readable, e.g. `tokens_per_s=1234.5`
(infer mode prints `prefill_tokens_per_s=... decode_tokens_per_s=...
decode_kv_tokens_per_s=...`).

Run with Debian's torch:  /usr/bin/python3 bench/peers/torch_gpt_bench.py --layers 4 ...
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_gpt import GPT, GrowingKv  # noqa: E402  (the one PyTorch model, beside this file)


def now():
    return time.perf_counter()


def count_rate(rates, step, ntok, dt):
    """Appends the step's tokens/s to rates unless it is one of the 2 warm-up steps; returns
    the end of the step's line."""
    warm = step < 2
    if not warm:
        rates.append(ntok / dt)
    return f"tok/s {ntok/dt:.1f}{' (warm-up)' if warm else ''}"


def run_train(model, args):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999),
                            eps=1e-8, weight_decay=0.0)
    g = torch.Generator().manual_seed(1)
    ntok = args.batch * args.seq
    rates = []
    for step in range(args.steps):
        data = torch.randint(0, args.vocab, (args.batch, args.seq + 1), generator=g)
        x, y = data[:, :-1].contiguous(), data[:, 1:].contiguous()
        t0 = now()
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        dt = now() - t0
        print(f"step {step}: loss {loss.item():.4f} time {dt*1000:.1f} ms "
              f"{count_rate(rates, step, ntok, dt)}", flush=True)
    if not rates:
        sys.exit("need --steps > 2")
    print(f"tokens_per_s={statistics.median(rates):.1f}")


@torch.no_grad()
def run_infer(model, args):
    model.eval()
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, args.vocab, (args.batch, args.seq), generator=g)
    # --- prefill: full forward over batch*seq tokens
    ntok = args.batch * args.seq
    rates = []
    for step in range(args.steps):
        t0 = now()
        model(prompt)
        dt = now() - t0
        print(f"prefill {step}: {dt*1000:.1f} ms {count_rate(rates, step, ntok, dt)}", flush=True)
    prefill = statistics.median(rates) if rates else float("nan")
    # --- greedy decode, naive (no KV cache): context grows from a short prompt
    # prompt of length seq - new_tokens so the final context is exactly seq.
    new = args.gen_tokens
    p0 = max(1, args.seq - new)
    ctx = prompt[:, :p0]
    model(ctx)  # warm-up
    t0 = now()
    for _ in range(new):
        logits, _ = model(ctx[:, -args.seq:])
        nxt = logits[:, -1, :].argmax(dim=-1, keepdim=True)
        ctx = torch.cat([ctx, nxt], dim=1)
    dt = now() - t0
    decode = args.batch * new / dt
    print(f"decode: {new} new tokens x batch {args.batch} from prompt {p0} "
          f"in {dt:.2f} s ({dt/new*1000:.1f} ms/step)")
    # --- greedy decode with a KV cache (what a serving engine does); same prompt, same length
    caches = [GrowingKv() for _ in model.blocks]
    t0 = now()
    logits, _ = model(prompt[:, :p0], caches=caches)
    ttft = now() - t0
    out = [logits[:, -1, :].argmax(dim=-1, keepdim=True)]
    for i in range(new - 1):
        logits, _ = model(out[-1], caches=caches, past=p0 + i)
        out.append(logits[:, -1, :].argmax(dim=-1, keepdim=True))
    dt_kv = now() - t0
    kv_ctx = torch.cat([prompt[:, :p0]] + out, dim=1)
    same = torch.equal(kv_ctx[:, p0:], ctx[:, p0:])
    decode_kv = args.batch * new / dt_kv
    print(f"decode with KV cache: {new} new tokens x batch {args.batch} in {dt_kv:.2f} s, "
          f"prefill of the prompt {ttft*1000:.1f} ms; same tokens as without cache: {same}")
    print(f"prefill_tokens_per_s={prefill:.1f} decode_tokens_per_s={decode:.2f} "
          f"decode_kv_tokens_per_s={decode_kv:.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mode", choices=["train", "infer"], default="train")
    ap.add_argument("--gen-tokens", type=int, default=32,
                    help="infer mode: new tokens to decode greedily")
    ap.add_argument("--block-size", type=int, default=1024,
                    help="position-embedding rows (GPT-2: 1024); must be >= seq")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    assert args.dim % args.heads == 0 and args.block_size >= args.seq

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = GPT(args.layers, args.dim, args.heads, args.vocab, args.block_size)
    nparam = sum(p.numel() for p in model.parameters())
    print(f"torch {torch.__version__} threads={torch.get_num_threads()} "
          f"params={nparam/1e6:.2f}M mode={args.mode} layers={args.layers} "
          f"dim={args.dim} heads={args.heads} vocab={args.vocab} seq={args.seq} "
          f"batch={args.batch}", flush=True)
    if args.mode == "train":
        run_train(model, args)
    else:
        run_infer(model, args)


if __name__ == "__main__":
    main()
