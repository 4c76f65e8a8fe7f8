#!/usr/bin/env python3
"""PyTorch's side of the GPU performance parts of bench/gpu/check.sh: GPT-2 training
throughput and MFU (eager and torch.compile) and KV-cached greedy decode, with the model,
batch and optimizer of Tandem's bench/train_bench.cpp and bench/decode_bench.cpp.

The model is the repository's one PyTorch reference, torch_gpt.py (bench/peers/ in the
repository, beside this script in the kit's scripts/): GPT-2 with pre-LayerNorm blocks, tanh
GELU, learned positions, LM head tied to the token embedding, init N(0, 0.02), zero biases.
This script adds what a GPU user of PyTorch would: fused/flash attention through
F.scaled_dot_product_attention (torch_gpt's attention="sdpa"; PyTorch picks the kernel: flash
for bf16 on Hopper), a fused AdamW, bf16 autocast over fp32 master weights, the head and loss
as one module for torch.compile (HeadLoss), and a preallocated KV cache for decode
(torch_gpt.PreallocatedKv).
The vocabulary is padded to a multiple of 128 (50257 -> 50304) as Tandem pads its embedding;
tokens and targets are drawn below the logical vocabulary, and greedy decode takes the argmax
over the logical vocabulary only.

Training (--mode train): for each model spec and precision, AdamW (lr 1e-4, betas .9/.999,
eps 1e-8, no weight decay, no clipping: train_bench's) over random tokens; --warmup steps,
then --steps timed steps. A step's clock runs from copying the step's tokens (drawn on the
host beforehand) to the device to the end of the optimizer step, with the device
synchronised; tokens/s is the median of batch*seq / step time over the timed steps.
  precision bf16: fp32 parameters, gradients and AdamW state; forward and loss under
                  torch.autocast(dtype=torch.bfloat16).
  precision fp32: no autocast; fp32 matmuls at PyTorch's default precision "highest" (no
                  TF32), as Tandem's plain-fp32 cuBLAS; a machine whose default differs is
                  noted, never changed (see fp32_matmul_precision).
  --compile regional|full: torch.compile of each transformer block and of the head+loss
                  (regional: the blocks share one compiled graph, so cold compilation costs
                  one block, not L) or of the whole model (full). The compile time is the
                  warm-up steps' time minus as many median timed steps, reported
                  separately (compile_s).

MFU (the formula of bench/gpu/perf_report.py, used for Tandem's figures too):
    N               = 12*L*d^2 + 13*L*d + V_pad*d + 2*d   (blocks, final LayerNorm, tied
                                                           embedding/head; not wpe)
    flops_per_token = 6*N + 12*L*T*d
    MFU             = tokens_per_s * flops_per_token / (peak_tflops * 1e12)
L layers, d width, T sequence length, V_pad the padded vocabulary; --peak-tflops is the GPU's
dense bf16 matrix rate (790 on an H200, measured here with an 8192^3 bf16 product).

Decode (--mode decode): for each batch and precision, greedy decode with a KV cache
preallocated for prompt + new tokens, like Tandem's: a prefill of the prompt (its last
token's logits give the first new token), then new_tokens - 1 steps of one token per
sequence; tokens/s = batch * new_tokens / time (prefill included), median of --decode-runs
runs after one warm-up run. The weights are fp32 (precision fp32, Tandem's) or cast to bf16
(precision bf16). Tokens stay on the device between steps (no host round trip per token).
The first run's tokens are compared with a decode without cache (full forward over the
growing context) on up to 4 sequences: "cache_matches" (informative on a GPU, where ties
of near-equal logits may break differently; required in --tiny CPU runs).

Time-boxing: --deadline-s bounds the whole script. Each measurement runs under an alarm set
to what is left; one that would not fit (a compile needs --min-compile-s) or that the alarm
stops is recorded with status "skipped" and a note, and the script goes on to write what it
has. Every result is one JSON line appended to --jsonl as soon as it is measured.

Rehearsal without a GPU: --device cpu --tiny runs every code path at a tiny size (torch 1.13
has no F.scaled_dot_product_attention and no torch.compile: both are noted and replaced by
explicit attention / skipped records).

usage: torch_gpu_bench.py --mode train|decode --jsonl FILE [--device cuda]
       [--models "NAME:L:D:H:BATCH ..."] [--precisions bf16,fp32] [--compile none|regional|full]
       [--seq 1024] [--vocab 50257] [--warmup 2] [--steps 5] [--peak-tflops 790]
       [--batches "1 16 64"] [--prompt 128] [--new-tokens 128] [--decode-runs 3]
       [--deadline-s 120] [--min-compile-s 40] [--tiny]
"""
import time

T0 = time.monotonic()  # --deadline-s counts from here, the import of torch included

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# perf_report.py lies beside this script; torch_gpt.py too in the kit, in ../peers in the repository.
sys.path[:0] = [HERE, os.path.join(HERE, os.pardir, "peers")]
import perf_report  # noqa: E402  (the MFU formula and record layout, shared with Tandem's side)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import torch_gpt  # noqa: E402  (the one PyTorch model of the repository)

HAS_SDPA = torch_gpt.HAS_SDPA
NOTES = []  # script-wide notes, attached to every record


def note(msg):
    if msg not in NOTES:
        NOTES.append(msg)
        print(f"NOTE: {msg}", flush=True)


class Deadline(BaseException):
    """The alarm: a BaseException, so that library code catching Exception (dynamo, inductor)
    does not swallow it."""


def is_deadline(e):
    """True when e is the alarm or was raised while handling it (a library may wrap it)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, Deadline):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


@contextlib.contextmanager
def alarm(seconds):
    """Raises Deadline in the main thread after `seconds` (at the next Python bytecode)."""
    def fire(signum, frame):
        raise Deadline(f"stopped after {seconds:.0f} s")
    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class HeadLoss(nn.Module):
    """Final LayerNorm, the tied LM head and the mean cross-entropy (one compile region)."""

    def __init__(self, ln_f, wte):
        super().__init__()
        self.ln_f, self.wte = ln_f, wte

    def forward(self, x, targets):
        logits = torch_gpt.tied_logits(self.ln_f, self.wte, x)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1))


class GPT(torch_gpt.GPT):
    """torch_gpt's GPT with SDPA attention where torch has it; forward(idx, targets) is the
    training loss alone, through HeadLoss, which is what torch.compile compiles."""

    def __init__(self, layers, dim, heads, vocab_padded, max_seq):
        super().__init__(layers, dim, heads, vocab_padded, max_seq,
                         attention="sdpa" if HAS_SDPA else "explicit")
        self.head_loss = HeadLoss(self.ln_f, self.wte)

    def forward(self, idx, targets):
        return self.head_loss(self.hidden(idx), targets)


def build_model(layers, dim, heads, vocab_padded, max_seq, dev):
    """The model's parameters made and initialised on dev (on the host first, then moved,
    where torch.device is no context manager: torch < 2.0)."""
    torch.manual_seed(0)
    if hasattr(torch.device, "__enter__"):
        with dev:
            return GPT(layers, dim, heads, vocab_padded, max_seq)
    return GPT(layers, dim, heads, vocab_padded, max_seq).to(dev)


_DECODE_MODEL = {}  # (model spec, precision) -> model: one at a time, kept across the batches


def decode_model(spec, precision, vocab_padded, max_seq, dev):
    key = (spec["model"], spec["layers"], spec["dim"], spec["heads"], precision, max_seq)
    if key not in _DECODE_MODEL:
        _DECODE_MODEL.clear()
        reset_mem(dev)
        m = build_model(spec["layers"], spec["dim"], spec["heads"], vocab_padded, max_seq, dev).eval()
        _DECODE_MODEL[key] = m.to(torch.bfloat16) if precision == "bf16" else m
    return _DECODE_MODEL[key]


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def peak_mem_mib(dev):
    return torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None


def reset_mem(dev):
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def make_adamw(model, dev):
    kw = dict(lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    try:
        return torch.optim.AdamW(model.parameters(), fused=True, **kw), "fused"
    except (TypeError, RuntimeError, ValueError) as e:
        note(f"fused AdamW unavailable here ({type(e).__name__}: {str(e)[:80]}); foreach AdamW")
        return torch.optim.AdamW(model.parameters(), foreach=True, **kw), "foreach"


def fp32_matmul_precision():
    """PyTorch's fp32 matmul precision, read and never set: its default, "highest", is plain
    fp32 (no TF32), as Tandem's cuBLAS path. Setting the TF32 flags is left alone on purpose:
    from PyTorch 2.9 on, a mix of the legacy flags (allow_tf32) and the new fp32_precision API
    raises inside inductor."""
    try:
        p = torch.get_float32_matmul_precision()
    except Exception as e:  # noqa: BLE001 - report, do not fail
        return f"unknown ({type(e).__name__})"
    if p != "highest":
        note(f"torch's fp32 matmul precision is {p!r}, not 'highest': fp32 matmuls may use TF32")
    return p


def autocast_ctx(dev, precision):
    if precision == "bf16":
        return torch.autocast(device_type=dev.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def compile_model(model, how):
    """Returns the callable to train with; raises RuntimeError when torch.compile is absent."""
    if not hasattr(torch, "compile"):
        raise RuntimeError(f"torch {torch.__version__} has no torch.compile")
    import torch._dynamo as dynamo
    # Each block is its own nn.Module instance of the same code: allow enough cache entries
    # that none falls back to eager (recompile_limit replaced cache_size_limit in 2.7).
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo.config, name):
            setattr(dynamo.config, name, max(64, getattr(dynamo.config, name)))
    if how == "full":
        return torch.compile(model)
    for i in range(len(model.blocks)):
        model.blocks[i] = torch.compile(model.blocks[i])
    model.head_loss = torch.compile(model.head_loss)
    return model


def graph_count():
    try:
        from torch._dynamo.utils import counters
        return int(counters["stats"]["unique_graphs"])
    except Exception:  # noqa: BLE001 - informative only
        return None


def train_one(spec, precision, args, dev, compile_how, jsonl, part):
    side = "torch-eager" if compile_how == "none" else "torch-compile"
    shape = {"model": spec["model"], "layers": spec["layers"], "dim": spec["dim"],
             "heads": spec["heads"], "vocab": args.vocab, "seq": args.seq,
             "batch": spec["batch"], "precision": precision}
    vp = perf_report.padded_vocab(args.vocab)
    reset_mem(dev)
    model = build_model(spec["layers"], spec["dim"], spec["heads"], vp, args.seq, dev)
    opt, opt_kind = make_adamw(model, dev)
    fwd, graphs0 = model, None
    if compile_how != "none":
        if hasattr(torch, "_dynamo"):
            torch._dynamo.reset()
        graphs0 = graph_count()
        fwd = compile_model(model, compile_how)
    g = torch.Generator().manual_seed(1)
    B, T = spec["batch"], args.seq
    ntok = B * T
    times, losses = [], []
    for step in range(args.warmup + args.steps):
        host = torch.randint(0, args.vocab, (B, T + 1), generator=g, dtype=torch.long)
        if dev.type == "cuda":
            host = host.pin_memory()
        sync(dev)
        t0 = time.perf_counter()
        data = host.to(dev, non_blocking=True)
        x, y = data[:, :-1], data[:, 1:]
        opt.zero_grad(set_to_none=True)
        with autocast_ctx(dev, precision):
            loss = fwd(x, y)
        loss.backward()
        opt.step()
        sync(dev)
        dt = time.perf_counter() - t0
        times.append(dt)
        losses.append(loss.item())
        warm = step < args.warmup
        print(f"{side} {spec['model']} {precision} step {step}: loss {losses[-1]:.4f} "
              f"time {dt * 1e3:.1f} ms tok/s {ntok / dt:.1f}{' (warm-up)' if warm else ''}", flush=True)
    timed = times[args.warmup:]
    med = statistics.median(timed)
    extra = dict(step_ms=round(med * 1e3, 2), peak_mem_mib=peak_mem_mib(dev), optimizer=f"AdamW {opt_kind}",
                 attention="sdpa" if HAS_SDPA else "explicit", part=part, device=device_name(dev),
                 torch=torch.__version__, first_step_s=round(times[0], 3),
                 loss_first=round(losses[0], 4), loss_last=round(losses[-1], 4), note="; ".join(NOTES))
    if compile_how != "none":
        warm_times = times[:args.warmup] or times[:1]
        extra.update(compile_mode=compile_how,
                     compile_s=round(sum(warm_times) - len(warm_times) * med, 2))
        gc = graph_count()
        if gc is not None and graphs0 is not None:
            extra["compiled_graphs"] = gc - graphs0
    rec = perf_report.train_record(side, shape, statistics.median(ntok / t for t in timed),
                                   args.peak_tflops, **extra)
    perf_report.append(jsonl, rec)
    print("RESULT " + json.dumps(rec), flush=True)
    del opt, model, fwd
    reset_mem(dev)


@torch.no_grad()
def greedy(model, prompt, new_tokens, vocab, cache):
    """Greedy decode of new_tokens after prompt [B, P]; returns ([B, new_tokens] ids on the
    device, prefill seconds). cache: one torch_gpt.PreallocatedKv per block, or None: no cache."""
    dev = prompt.device
    out = []
    t0 = time.perf_counter()
    if cache is not None:
        logits = model.last_logits(prompt, cache, past=0)
        nxt = logits[:, :vocab].argmax(dim=-1, keepdim=True)
        sync(dev)
        prefill_s = time.perf_counter() - t0
        out.append(nxt)
        P = prompt.size(1)
        for i in range(new_tokens - 1):
            logits = model.last_logits(nxt, cache, past=P + i)
            nxt = logits[:, :vocab].argmax(dim=-1, keepdim=True)
            out.append(nxt)
    else:
        ctx = prompt
        prefill_s = 0.0
        for _ in range(new_tokens):
            nxt = model.last_logits(ctx)[:, :vocab].argmax(dim=-1, keepdim=True)
            out.append(nxt)
            ctx = torch.cat([ctx, nxt], dim=1)
    return torch.cat(out, dim=1), prefill_s


def decode_one(spec, batch, precision, args, dev, jsonl, part):
    vp = perf_report.padded_vocab(args.vocab)
    L, C, H = spec["layers"], spec["dim"], spec["heads"]
    P, G = args.prompt, args.new_tokens
    model = decode_model(spec, precision, vp, P + G, dev)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, args.vocab, (batch, P), generator=g).to(dev)
    cache = [torch_gpt.PreallocatedKv(batch, H, P + G, C // H, dtype, dev) for _ in range(L)]
    rates, prefills, steady, first = [], [], [], None
    for run in range(args.decode_runs + 1):
        sync(dev)
        t0 = time.perf_counter()
        toks, prefill_s = greedy(model, prompt, G, args.vocab, cache)
        sync(dev)
        dt = time.perf_counter() - t0
        if run == 0:
            first = toks.cpu()
            print(f"decode {spec['model']} {precision} batch {batch} warm-up: {dt * 1e3:.1f} ms", flush=True)
            continue
        rates.append(batch * G / dt)
        prefills.append(prefill_s)
        if G > 1:
            steady.append(batch * (G - 1) / (dt - prefill_s))
        print(f"decode {spec['model']} {precision} batch {batch} run {run}: {G} new tokens from "
              f"prompt {P} in {dt * 1e3:.1f} ms ({(dt - prefill_s) / max(G - 1, 1) * 1e3:.3f} ms/step) "
              f"tok/s {batch * G / dt:.1f}", flush=True)
    n = min(batch, 4)
    ref, _ = greedy(model, prompt[:n], G, args.vocab, None)
    matches = bool(torch.equal(ref.cpu(), first[:n]))
    med = statistics.median(rates)
    pre = statistics.median(prefills)
    rec = {"kind": "decode", "side": "torch-eager", "model": spec["model"], "layers": L, "dim": C,
           "heads": H, "vocab": args.vocab, "batch": batch, "prompt": P, "new_tokens": G,
           "precision": precision, "tokens_per_s": round(med, 2),
           "steady_tokens_per_s": round(statistics.median(steady), 2) if steady else None,
           "prefill_ms": round(pre * 1e3, 3), "cache_matches": matches,
           "attention": "sdpa" if HAS_SDPA else "explicit", "peak_mem_mib": peak_mem_mib(dev),
           "device": device_name(dev), "torch": torch.__version__, "status": "ok", "part": part,
           "note": "; ".join(NOTES)}
    perf_report.append(jsonl, rec)
    print("RESULT " + json.dumps(rec), flush=True)
    del model, cache
    return matches


def device_name(dev):
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


def skipped(jsonl, kind, side, model, precision, part, why, batch=None):
    perf_report.append(jsonl, perf_report.status_record(kind, side, model, precision, part,
                                                        "skipped", why, batch))
    print(f"SKIPPED {kind} {side} {model} {precision}{'' if batch is None else f' batch {batch}'}: {why}",
          flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["train", "decode"], required=True)
    ap.add_argument("--jsonl", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--models", default="gpt2-124M:12:768:12:16 gpt2-350M:24:1024:16:8",
                    help="NAME:LAYERS:DIM:HEADS:BATCH, space-separated (decode ignores BATCH)")
    ap.add_argument("--precisions", default="bf16,fp32")
    ap.add_argument("--compile", choices=["none", "regional", "full"], default="none")
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="timed steps after the warm-up")
    ap.add_argument("--peak-tflops", type=float, default=perf_report.DEFAULT_PEAK_TFLOPS)
    ap.add_argument("--batches", default="1 16 64")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--decode-runs", type=int, default=3)
    ap.add_argument("--deadline-s", type=float, default=120.0)
    ap.add_argument("--min-compile-s", type=float, default=40.0,
                    help="a compiled model is not started with less than this left")
    ap.add_argument("--part", default="")
    ap.add_argument("--tiny", action="store_true",
                    help="rehearsal size: 2 x 64, 2 heads, vocab 500, seq 32, batch 2, 2 + 3 steps")
    args = ap.parse_args()
    left = lambda: args.deadline_s - (time.monotonic() - T0)  # noqa: E731

    if args.tiny:
        args.models = "tiny-a:2:64:2:2 tiny-b:3:96:3:2"
        args.vocab, args.seq, args.warmup, args.steps = 500, 32, 2, 3
        args.batches, args.prompt, args.new_tokens, args.decode_runs = "1 3", 8, 8, 2
    if min(args.seq, args.steps, args.prompt, args.new_tokens, args.decode_runs) < 1 or \
            args.warmup < 0 or args.vocab < 2:
        sys.exit("need seq, steps, prompt, new-tokens, decode-runs >= 1, warmup >= 0, vocab >= 2")
    specs = [perf_report.parse_spec(s) for s in args.models.split()]
    precisions = list(dict.fromkeys(p for p in args.precisions.split(",") if p))
    for p in precisions:
        if p not in ("bf16", "fp32"):
            sys.exit(f"unknown precision {p!r} (bf16, fp32)")
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("torch: CUDA is not available (torch.cuda.is_available() is False)")
    fp32_prec = fp32_matmul_precision()
    if dev.type == "cpu":
        torch.set_num_threads(max(1, min(os.cpu_count() or 1, 4)))
    if not HAS_SDPA:
        note(f"torch {torch.__version__} has no F.scaled_dot_product_attention: explicit attention")
    print(f"torch {torch.__version__} device {device_name(dev)} mode {args.mode} compile {args.compile} "
          f"precisions {precisions} fp32 matmul precision {fp32_prec} deadline {args.deadline_s:.0f} s",
          flush=True)

    part = args.part or f"{args.mode}_{args.compile}"
    side = "torch-eager" if args.compile == "none" else "torch-compile"
    failed = []

    def measure(kind, model, prec, batch, need, fn):
        """Runs fn under the alarm, or records why not: too little time left, the alarm, or an
        error (recorded as failed, with the traceback in the log; the next measurement runs)."""
        if left() < need:
            skipped(args.jsonl, kind, side, model, prec, part,
                    f"{max(left(), 0):.0f} s left of the part's {args.deadline_s:.0f} s, "
                    f"{need:.0f} s needed to start", batch)
            return None
        try:
            with alarm(left() - 1.0):
                return fn()
        except BaseException as e:  # noqa: BLE001 - the alarm may come wrapped
            if isinstance(e, KeyboardInterrupt) and not is_deadline(e):
                raise
            reset_mem(dev)
            if is_deadline(e):
                skipped(args.jsonl, kind, side, model, prec, part,
                        f"did not finish within the part's {args.deadline_s:.0f} s", batch)
                return None
            traceback.print_exc()
            why = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"
            print(f"Error: {kind} {side} {model} {prec} batch {batch}: {why}", flush=True)
            rec = perf_report.status_record(kind, side, model, prec, part, "failed", why, batch)
            perf_report.append(args.jsonl, rec)
            failed.append(rec)
            return None

    if args.mode == "train":
        for spec in specs:
            if "batch" not in spec:
                sys.exit(f"model spec {spec['model']}: training needs :BATCH")
            for prec in precisions:
                if args.compile != "none" and not hasattr(torch, "compile"):
                    skipped(args.jsonl, "train", side, spec["model"], prec, part,
                            f"torch {torch.__version__} has no torch.compile", spec["batch"])
                    continue
                need = args.min_compile_s if args.compile != "none" else 5.0
                measure("train", spec["model"], prec, spec["batch"], need,
                        lambda: train_one(spec, prec, args, dev, args.compile, args.jsonl, part))
    else:
        batches = [int(b) for b in args.batches.split()]
        for spec in specs:
            for prec in precisions:
                for b in batches:
                    ok = measure("decode", spec["model"], prec, b, 3.0,
                                 lambda: decode_one(spec, b, prec, args, dev, args.jsonl, part))
                    if ok is False and dev.type == "cpu" and prec == "fp32":
                        print(f"Error: cached decode differs from uncached at batch {b} ({prec})", flush=True)
                        failed.append(b)
    print(f"done in {time.monotonic() - T0:.1f} s", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
