#!/usr/bin/env python3
"""The performance parts' bookkeeping for bench/gpu/check.sh (no PyTorch needed).

One formula, used for both sides (Tandem and PyTorch), so their MFU figures are comparable:

    N               = 12*L*d^2 + 13*L*d + V_pad*d + 2*d
                      (the parameters that take part in a matmul or a LayerNorm: the blocks,
                      the final LayerNorm, and the tied embedding, which is the LM head's
                      matmul; the position embedding, a lookup, is left out)
    flops_per_token = 6*N + 12*L*T*d
                      (6N: forward 2N + backward 4N; 12*L*T*d: attention's QK^T and AV,
                      forward and backward, over the full T x T square, as PaLM counts it)
    MFU             = tokens_per_s * flops_per_token / peak

with L layers, width d, sequence length T, V_pad the vocabulary padded to a multiple of 128
(50257 -> 50304: Tandem pads its embedding so, and the PyTorch model is built with 50304
rows and draws tokens below 50257), and peak the dense bf16 matrix rate of the GPU, a
parameter (--peak-tflops; 790 TFLOP/s is what an 8192^3 bf16 matrix product measured on
an H200 here). The MFU of an fp32 run is taken against the same bf16 peak: it says how much of
the machine the run uses, not how close it is to the fp32 ceiling.

Commands
  shape SPEC                 prints train_bench/decode_bench flags for a model spec
                             NAME:LAYERS:DIM:HEADS[:BATCH]
  tandem-train LOG ...       reads train_bench's output, appends one JSON line to --jsonl
  tandem-decode LOG ...      reads decode_bench's output, appends one JSON line to --jsonl
  brief JSONL --part PART    one line on the records of one part (check.sh's summary)
  summary JSONL              prints the tables (training: tokens/s, MFU, memory; decode:
                             tokens/s) of every record in JSONL
"""
import argparse
import json
import re
import sys

VOCAB_PAD = 128
DEFAULT_PEAK_TFLOPS = 790.0


def padded_vocab(vocab):
    return (vocab + VOCAB_PAD - 1) // VOCAB_PAD * VOCAB_PAD


def matmul_params(layers, dim, vocab):
    """N of the formula above (vocab is the logical vocabulary; it is padded here)."""
    return 12 * layers * dim * dim + 13 * layers * dim + padded_vocab(vocab) * dim + 2 * dim


def flops_per_token(layers, dim, vocab, seq):
    return 6 * matmul_params(layers, dim, vocab) + 12 * layers * seq * dim


def mfu(tokens_per_s, layers, dim, vocab, seq, peak_tflops):
    return tokens_per_s * flops_per_token(layers, dim, vocab, seq) / (peak_tflops * 1e12)


def parse_spec(spec):
    """NAME:LAYERS:DIM:HEADS[:BATCH] -> dict."""
    parts = spec.split(":")
    if len(parts) not in (4, 5):
        raise ValueError(f"model spec {spec!r}: expected NAME:LAYERS:DIM:HEADS[:BATCH]")
    out = {"model": parts[0], "layers": int(parts[1]), "dim": int(parts[2]),
           "heads": int(parts[3])}
    if len(parts) == 5:
        out["batch"] = int(parts[4])
    if out["dim"] % out["heads"]:
        raise ValueError(f"model spec {spec!r}: dim {out['dim']} not divisible by heads {out['heads']}")
    return out


def train_record(side, shape, tokens_per_s, peak_tflops, **extra):
    """A training measurement as one JSON object (shape: model, layers, dim, heads, vocab,
    seq, batch, precision)."""
    fpt = flops_per_token(shape["layers"], shape["dim"], shape["vocab"], shape["seq"])
    rec = {"kind": "train", "side": side, **shape, "vocab_padded": padded_vocab(shape["vocab"]),
           "tokens_per_s": round(tokens_per_s, 1), "flops_per_token": fpt,
           "tflops": round(tokens_per_s * fpt / 1e12, 2), "peak_tflops": peak_tflops,
           "mfu": round(tokens_per_s * fpt / (peak_tflops * 1e12), 4), "status": "ok"}
    rec.update(extra)
    return rec


def status_record(kind, side, model, precision, part, status, note, batch=None):
    """A measurement that did not run (status "skipped") or broke ("failed"), and why."""
    rec = {"kind": kind, "side": side, "model": model, "precision": precision, "status": status,
           "part": part, "note": note}
    if batch is not None:
        rec["batch"] = batch
    return rec


def append(path, rec):
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")


def kv_fields(line):
    return {k: v for k, v in re.findall(r"(\w+)=(\S+)", line)}


def last_line_with(text, key):
    lines = [l for l in text.splitlines() if l.startswith(key + "=") or f" {key}=" in l]
    return lines[-1] if lines else None


def header_ints(text, prefix):
    """key=int pairs of the first line that starts with prefix (the binaries' header)."""
    for l in text.splitlines():
        if l.startswith(prefix):
            return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)\b(?![.\w])", l)}
    return {}


def read_bench_log(path, binary, key):
    """(text, header ints, result key=values) of a train_bench/decode_bench log; exits when
    the log has no header or no result line (the binary failed)."""
    text = open(path, errors="replace").read()
    head = header_ints(text, f"tandem {binary}")
    last = last_line_with(text, key)
    if not head or not last:
        sys.exit(f"{path}: no {binary} header or result line")
    return text, head, kv_fields(last)


def cmd_tandem_train(a):
    _, head, kv = read_bench_log(a.log, "train_bench", "tokens_per_s")
    shape = {"model": a.model, "layers": head["layers"], "dim": head["dim"],
             "heads": head["heads"], "vocab": head["vocab"], "seq": head["seq"],
             "batch": head["batch"], "precision": kv.get("precision", "fp32")}
    rec = train_record("tandem", shape, float(kv["tokens_per_s"]), a.peak_tflops,
                       step_ms=float(kv["step_ms"]), peak_mem_mib=float(kv["peak_alloc_mib"]),
                       timed_steps=int(kv.get("timed_steps", 0)),
                       precision_asked=a.precision_asked, part=a.part, note=a.note or "")
    append(a.jsonl, rec)
    print(json.dumps(rec))


def cmd_tandem_decode(a):
    text, head, kv = read_bench_log(a.log, "decode_bench", "decode_kv_tokens_per_s")
    same = re.search(r"every run yields the same tokens: (\w+)", text)
    rec = {"kind": "decode", "side": "tandem", "model": a.model, "layers": head["layers"],
           "dim": head["dim"], "heads": head["heads"], "vocab": head["vocab"],
           "batch": head["batch"], "prompt": head["seq"] - head["gen_tokens"],
           "new_tokens": head["gen_tokens"], "precision": "fp32",
           "tokens_per_s": float(kv["decode_kv_tokens_per_s"]),
           "steady_tokens_per_s": float(kv["steady_decode_tokens_per_s"]),
           "bound_tokens_per_s": float(kv["bound_decode_tokens_per_s"]),
           "mem_gbps": float(kv["read_gbps"]),
           "runs_agree": (same.group(1) == "true") if same else None,
           "status": "ok", "part": a.part, "note": a.note or ""}
    append(a.jsonl, rec)
    print(json.dumps(rec))


def read_records(path):
    recs = []
    for line in open(path):
        line = line.strip()
        if line:
            try:
                recs.append(json.loads(line))
            except json.JSONDecodeError as e:
                print(f"(unreadable line in {path}: {e})")
    return recs


def cmd_brief(a):
    """One line on the records of one part: counts, then each measurement in short."""
    recs = [r for r in read_records(a.jsonl) if r.get("part") == a.part]
    ok = [r for r in recs if r.get("status") == "ok"]
    items = []
    for r in recs:
        what = f"{r.get('model')} b{r.get('batch')} {r.get('precision')}"
        if r.get("status") != "ok":
            items.append(f"{what} {r.get('status')}")
        elif r.get("kind") == "train":
            items.append(f"{what} {r['tokens_per_s']:.0f} tok/s {100 * r['mfu']:.1f}% MFU"
                         + (f" (compile {r['compile_s']:.0f}s)" if r.get("compile_s") is not None else ""))
        else:
            items.append(f"{what} {r['tokens_per_s']:.1f} tok/s")
    print(f"{len(ok)} measured, {len(recs) - len(ok)} not: " + "; ".join(items))


def fmt_rate(r):
    return f"{r['tokens_per_s']:12.1f}" if r.get("status") == "ok" else f"{'-':>12}"


def cmd_summary(a):
    recs = read_records(a.jsonl)
    sides = ["tandem", "torch-eager", "torch-compile"]
    train = [r for r in recs if r.get("kind") == "train"]
    keys = []
    for r in train:
        k = (r.get("model"), r.get("batch"), r.get("precision"))
        if k not in keys:
            keys.append(k)
    peak = next((r["peak_tflops"] for r in train if "peak_tflops" in r), a.peak_tflops)
    print(f"Training throughput (tokens/s; MFU against {peak:g} TFLOP/s dense bf16; "
          "the median of the timed steps)")
    print(f"{'model':<10} {'batch':>5} {'prec':<5} " + " ".join(
        f"{s + ' tok/s':>19} {'MFU':>6}" for s in sides) + f" {'tandem/eager':>12} {'tandem/compile':>14}")
    for k in keys:
        rows = {s: next((r for r in train if (r.get("model"), r.get("batch"), r.get("precision")) == k
                         and r.get("side") == s), None) for s in sides}
        cells = []
        for s in sides:
            r = rows[s]
            if r and r.get("status") == "ok":
                cells.append(f"{r['tokens_per_s']:19.1f} {100 * r['mfu']:5.1f}%")
            else:
                cells.append(f"{'-':>19} {'':>6}")
        def ratio(other):
            t, o = rows["tandem"], rows[other]
            if t and o and t.get("status") == "ok" and o.get("status") == "ok" and o["tokens_per_s"] > 0:
                return f"{t['tokens_per_s'] / o['tokens_per_s']:.3f}x"
            return "-"
        print(f"{str(k[0]):<10} {str(k[1]):>5} {str(k[2]):<5} " + " ".join(cells)
              + f" {ratio('torch-eager'):>12} {ratio('torch-compile'):>14}")
    models = list(dict.fromkeys((r.get("model"), r.get("batch")) for r in train))
    for m, b in models:  # each side at its fastest precision and mode
        best = {}
        for r in train:
            if (r.get("model"), r.get("batch")) == (m, b) and r.get("status") == "ok":
                side = "tandem" if r["side"] == "tandem" else "torch"
                if side not in best or r["tokens_per_s"] > best[side]["tokens_per_s"]:
                    best[side] = r
        if len(best) == 2 and best["torch"]["tokens_per_s"] > 0:
            t, p = best["tandem"], best["torch"]
            print(f"best of each, {m} b{b}: tandem {t['precision']} {t['tokens_per_s']:.1f} tok/s "
                  f"({100 * t['mfu']:.1f}% MFU) / {p['side']} {p['precision']} {p['tokens_per_s']:.1f} "
                  f"tok/s ({100 * p['mfu']:.1f}% MFU) = {t['tokens_per_s'] / p['tokens_per_s']:.3f}x")
    mem = [r for r in train if r.get("status") == "ok" and r.get("peak_mem_mib") is not None]
    if mem:
        print("peak device memory (MiB): " + "; ".join(
            f"{r['side']} {r['model']} b{r['batch']} {r['precision']} {r['peak_mem_mib']:.0f}" for r in mem))
    comp = [r for r in train if r.get("side") == "torch-compile" and r.get("compile_s") is not None]
    if comp:
        print("torch.compile time (warm-up steps minus as many timed steps): " + "; ".join(
            f"{r['model']} {r['precision']} {r['compile_s']:.1f} s ({r.get('compile_mode', '?')})" for r in comp))
    decode = [r for r in recs if r.get("kind") == "decode"]
    if decode:
        print()
        print("KV-cached greedy decode (tokens/s, prompt prefill included; the median of the timed runs)")
        dsides = ["tandem", "torch-eager"]
        dkeys = []
        for r in decode:
            k = (r.get("model"), r.get("batch"), r.get("precision"))
            if k not in dkeys:
                dkeys.append(k)
        print(f"{'model':<10} {'batch':>5} {'prec':<5} {'tandem':>12} {'torch-eager':>12} "
              f"{'tandem/torch':>12} {'tandem bound':>12} {'tandem steady':>13}")
        for k in dkeys:
            rows = {s: next((r for r in decode if (r.get("model"), r.get("batch"), r.get("precision")) == k
                             and r.get("side") == s), None) for s in dsides}
            t, p = rows["tandem"], rows["torch-eager"]
            ok = lambda r: r is not None and r.get("status") == "ok"
            ratio = f"{t['tokens_per_s'] / p['tokens_per_s']:.3f}x" if ok(t) and ok(p) and p["tokens_per_s"] > 0 else "-"
            bound = f"{t['bound_tokens_per_s']:12.1f}" if ok(t) else f"{'-':>12}"
            steady = f"{t['steady_tokens_per_s']:13.1f}" if ok(t) else f"{'-':>13}"
            print(f"{str(k[0]):<10} {str(k[1]):>5} {str(k[2]):<5} "
                  f"{fmt_rate(t) if t else '-':>12} {fmt_rate(p) if p else '-':>12} {ratio:>12} {bound} {steady}")
    notes = [r for r in recs if r.get("note")]
    if notes:
        print()
        print("notes:")
        grouped = {}  # the notes of measurements that ran, once each, with what they apply to
        for r in notes:
            what = f"{r.get('side')} {r.get('kind')} {r.get('model')} {r.get('precision')}" + (
                f" b{r['batch']}" if "batch" in r else "")
            if r.get("status") != "ok":
                print(f"  [{r.get('status')}] {what}: {r['note']}")
            else:
                grouped.setdefault(r["note"], []).append(f"{r.get('side')} {r.get('kind')}")
        for text, whom in grouped.items():
            counts = {w: whom.count(w) for w in dict.fromkeys(whom)}
            print(f"  {text} ({', '.join(f'{w} x{n}' for w, n in counts.items())})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("shape")
    s.add_argument("spec")
    for name in ("tandem-train", "tandem-decode"):
        s = sub.add_parser(name)
        s.add_argument("log")
        s.add_argument("--jsonl", required=True)
        s.add_argument("--model", required=True)
        s.add_argument("--part", default="")
        s.add_argument("--note", default="")
        s.add_argument("--precision-asked", default="fp32")
        s.add_argument("--peak-tflops", type=float, default=DEFAULT_PEAK_TFLOPS)
    s = sub.add_parser("brief")
    s.add_argument("jsonl")
    s.add_argument("--part", required=True)
    s = sub.add_parser("summary")
    s.add_argument("jsonl")
    s.add_argument("--peak-tflops", type=float, default=DEFAULT_PEAK_TFLOPS)
    a = ap.parse_args()
    if a.cmd == "shape":
        sp = parse_spec(a.spec)
        print(f"--layers {sp['layers']} --dim {sp['dim']} --heads {sp['heads']}"
              + (f" --batch {sp['batch']}" if "batch" in sp else ""))
    elif a.cmd == "tandem-train":
        cmd_tandem_train(a)
    elif a.cmd == "tandem-decode":
        cmd_tandem_decode(a)
    elif a.cmd == "brief":
        cmd_brief(a)
    else:
        cmd_summary(a)


if __name__ == "__main__":
    main()
