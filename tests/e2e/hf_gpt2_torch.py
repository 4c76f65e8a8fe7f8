#!/usr/bin/env python3
"""The repository's PyTorch reference model (bench/peers/torch_gpt.py) read from and written in
Hugging Face GPT-2 names and layout, to check Tandem's HF export/import without `transformers`
or `safetensors` (run with Debian's /usr/bin/python3 + python3-torch).

    hf_gpt2_torch.py loss MODEL_DIR SHARD SEQ_LEN NWINDOWS
        -> "loss <float>": mean next-token cross-entropy (float32) over the first NWINDOWS
           windows of the Tandem token shard SHARD; window w is
           tokens[w*SEQ_LEN : w*SEQ_LEN + SEQ_LEN + 1] (inputs, then targets shifted by one).
    hf_gpt2_torch.py random OUT_DIR --layers L --dim C --heads H --vocab V --positions P --seed S
                            [--attn-std A]
        -> OUT_DIR/model.safetensors (F32, HF names, no lm_head) + OUT_DIR/config.json for a
           random GPT-2: weights and biases std 0.02, LayerNorm weights 1 + 0.1*randn and
           biases 0.02*randn, so every tensor affects the loss. With std 0.02 the attention
           scores q.k/sqrt(head_dim) are ~1e-3, so attention is almost uniform and the q and k
           columns of c_attn move the loss only ~1e-6 relative (below an fp32 comparison's
           tolerance); --attn-std A (default 0.02) draws every c_attn.weight with std A
           instead, e.g. 0.2 makes a q/k or head-order mistake move the loss by >= ~5e-5.
           The same draws either way (only the scale differs).
    hf_gpt2_torch.py shard OUT.bin --from SHARD --windows N --seq-len T
        -> a Tandem token shard holding the first N*T+1 tokens of SHARD (same vocab field).

Contract: the model computed is HF's GPT2LMHeadModel in eval mode (torch_gpt.py's GPT:
learned wte/wpe, pre-LN blocks, causal softmax attention scaled by 1/sqrt(head_dim), GELU
tanh approximation, LayerNorm eps 1e-5, LM head tied to wte); this script adds HF's names and
layout: Conv1D weights stored [in, out] (y = x @ W + b), read into and written from
torch_gpt's nn.Linear [out, in] by a transpose, c_attn columns q heads | k heads | v heads
(torch_gpt's qkv rows). MODEL_DIR holds model.safetensors (F32/F16/BF16; names with or
without "transformer."; attn.bias/masked_bias buffers and a tied lm_head.weight are ignored)
and config.json. Token shards: 32-byte header "TNDMTOK\\0", u32 version 1, u32 vocab,
u64 count, u64 reserved, then count uint16 tokens (little-endian). Errors print a message
naming the values involved and exit 2; without torch the script prints
"SKIP: torch not available" and exits 77.
"""
import argparse
import json
import math
import os
import struct
import sys

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError:
    print("SKIP: torch not available")
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "peers"))
from torch_gpt import GPT  # noqa: E402  (the one PyTorch model of the repository)


class UserError(Exception):
    pass


# ---------------------------------------------------------------- file formats
ST_DTYPES = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2)}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise UserError(f"{path}: {len(raw)} bytes, too short for a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise UserError(f"{path}: header length {n} runs past the end of the file ({len(raw)} bytes)")
    header = json.loads(raw[8:8 + n])
    data = memoryview(raw)[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        if e["dtype"] not in ST_DTYPES:
            raise UserError(f"{path}: tensor {name} has dtype {e['dtype']}; only F32, F16, BF16 are read")
        b, end = e["data_offsets"]
        dtype, size = ST_DTYPES[e["dtype"]]
        want = math.prod(e["shape"]) * size
        if not 0 <= b <= end <= len(data) or end - b != want:
            raise UserError(f"{path}: tensor {name} data_offsets [{b}, {end}] do not hold "
                            f"shape {e['shape']} of {e['dtype']} ({want} bytes) in {len(data)} bytes")
        t = torch.frombuffer(bytearray(data[b:end]), dtype=dtype) if end > b \
            else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(e["shape"]).float()
    return out


def write_safetensors(path, tensors, metadata):
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        b = t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    write_atomic(path, struct.pack("<Q", len(h)) + h + b"".join(blobs))


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


SHARD_MAGIC = b"TNDMTOK\0"


def read_shard(path, need):
    """(vocab, first `need` tokens as int64) of a Tandem token shard."""
    with open(path, "rb") as f:
        head = f.read(32)
        if len(head) < 32 or head[:8] != SHARD_MAGIC:
            raise UserError(f"{path}: not a Tandem token shard (magic {head[:8]!r})")
        version, vocab, count, _ = struct.unpack("<IIQQ", head[8:])
        if version != 1:
            raise UserError(f"{path}: token shard version {version}, expected 1")
        if need > count:
            raise UserError(f"{path}: holds {count} tokens, {need} needed")
        body = f.read(2 * need)
    if len(body) != 2 * need:
        raise UserError(f"{path}: truncated: header says {count} tokens, file holds fewer than {need}")
    return vocab, torch.from_numpy(np.frombuffer(body, dtype="<u2").astype(np.int64))


# ---------------------------------------------------------------- HF names and layout
TOP_NAMES = {"wte.weight": "transformer.wte.weight", "wpe.weight": "transformer.wpe.weight",
             "ln_f.weight": "transformer.ln_f.weight", "ln_f.bias": "transformer.ln_f.bias"}
BLOCK_PARTS = {"ln1": "ln_1", "qkv": "attn.c_attn", "proj": "attn.c_proj", "ln2": "ln_2",
               "fc": "mlp.c_fc", "fc_proj": "mlp.c_proj"}
CONV1D_PARTS = ("qkv", "proj", "fc", "fc_proj")  # nn.Linear in torch_gpt, Conv1D in HF


def hf_tensors(model):
    """(HF name, torch_gpt parameter, transposed) in HF's GPT2LMHeadModel order (= torch_gpt's),
    without the tied lm_head; transposed: HF stores the parameter's transpose (Conv1D)."""
    out = []
    for name, p in model.named_parameters():
        if name in TOP_NAMES:
            out.append((TOP_NAMES[name], p, False))
            continue
        _, layer, part, kind = name.split(".")
        out.append((f"transformer.h.{layer}.{BLOCK_PARTS[part]}.{kind}", p,
                    part in CONV1D_PARTS and kind == "weight"))
    return out


def hf_state(model):
    """HF name -> tensor in HF's layout."""
    return {n: (p.t() if transposed else p).detach() for n, p, transposed in hf_tensors(model)}


def set_from_hf(model, tensors):
    """Copies HF-layout tensors (name -> tensor, every name of hf_tensors) into the model."""
    with torch.no_grad():
        for n, p, transposed in hf_tensors(model):
            p.copy_(tensors[n].t() if transposed else tensors[n])


def make_model(cfg):
    return GPT(cfg["n_layer"], cfg["n_embd"], cfg["n_head"], cfg["vocab_size"], cfg["n_positions"])


CONFIG_KEYS = ("n_layer", "n_embd", "n_head", "vocab_size", "n_positions")


def load_model(model_dir):
    cfg_path = os.path.join(model_dir, "config.json")
    st_path = os.path.join(model_dir, "model.safetensors")
    for p in (cfg_path, st_path):
        if not os.path.isfile(p):
            raise UserError(f"{model_dir}: no {os.path.basename(p)}")
    with open(cfg_path) as f:
        cfg = json.load(f)
    missing = [k for k in CONFIG_KEYS if k not in cfg]
    if missing:
        raise UserError(f"{cfg_path}: missing keys {', '.join(missing)}")
    if cfg.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        raise UserError(f"{cfg_path}: activation_function {cfg['activation_function']} is not tanh GELU")
    model = make_model(cfg)
    sd = {}
    for name, t in read_safetensors(st_path).items():
        n = name if name.startswith("transformer.") or name.startswith("lm_head.") else "transformer." + name
        if n.endswith(".attn.bias") or n.endswith(".attn.masked_bias"):
            continue
        sd[n] = t
    head = sd.pop("lm_head.weight", None)
    wte = sd.get("transformer.wte.weight")
    if head is not None and (wte is None or not torch.equal(head, wte)):
        raise UserError(f"{st_path}: lm_head.weight differs from transformer.wte.weight (untied head)")
    want = {n: p.shape for n, p in hf_state(model).items()}
    problems = [f"missing {n}" for n in want if n not in sd]
    problems += [f"unknown {n}" for n in sd if n not in want]
    problems += [f"{n} expected {list(want[n])} found {list(sd[n].shape)}"
                 for n in sd if n in want and sd[n].shape != want[n]]
    if problems:
        raise UserError(f"{st_path}: " + "; ".join(problems))
    set_from_hf(model, sd)
    return model.eval(), cfg


def config_json(layers, dim, heads, vocab, positions):
    cfg = {"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"],
           "attn_pdrop": 0.0, "embd_pdrop": 0.0, "initializer_range": 0.02,
           "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": positions, "n_embd": dim,
           "n_head": heads, "n_inner": None, "n_layer": layers, "n_positions": positions,
           "resid_pdrop": 0.0, "scale_attn_weights": True, "tie_word_embeddings": True,
           "torch_dtype": "float32", "use_cache": True, "vocab_size": vocab}
    return json.dumps(cfg, indent=2, sort_keys=True) + "\n"


# ---------------------------------------------------------------- subcommands
def cmd_loss(a):
    if a.seq_len <= 0 or a.nwindows <= 0:
        raise UserError(f"SEQ_LEN {a.seq_len} and NWINDOWS {a.nwindows} must be positive")
    model, cfg = load_model(a.model_dir)
    if a.seq_len > cfg["n_positions"]:
        raise UserError(f"SEQ_LEN {a.seq_len} exceeds the model's n_positions {cfg['n_positions']}")
    _, tokens = read_shard(a.shard, a.nwindows * a.seq_len + 1)
    if int(tokens.max()) >= cfg["vocab_size"]:
        raise UserError(f"{a.shard}: token id {int(tokens.max())} >= model vocab_size {cfg['vocab_size']}")
    T = a.seq_len
    win = torch.stack([tokens[w * T:w * T + T + 1] for w in range(a.nwindows)])
    total = 0.0
    with torch.no_grad():
        for s in range(0, a.nwindows, a.chunk):
            x, y = win[s:s + a.chunk, :-1], win[s:s + a.chunk, 1:]
            logits, _ = model(x)
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                           reduction="sum").double())
    print(f"loss {total / (a.nwindows * T):.8f}")


def cmd_random(a):
    for k in ("layers", "dim", "heads", "vocab", "positions"):
        if getattr(a, k) <= 0:
            raise UserError(f"--{k} {getattr(a, k)} must be positive")
    if not a.attn_std > 0:
        raise UserError(f"--attn-std {a.attn_std} must be positive")
    if a.dim % a.heads:
        raise UserError(f"--dim {a.dim} is not a multiple of --heads {a.heads}")
    cfg = dict(zip(CONFIG_KEYS, (a.layers, a.dim, a.heads, a.vocab, a.positions)))
    model = make_model(cfg)
    gen = torch.Generator().manual_seed(a.seed)
    drawn = {}
    for name, p, transposed in hf_tensors(model):  # drawn in HF's order and shapes
        r = torch.randn(p.t().shape if transposed else p.shape, generator=gen)
        is_ln_weight = ".ln_" in name and name.endswith(".weight")
        std = a.attn_std if name.endswith(".attn.c_attn.weight") else 0.02
        drawn[name] = 1.0 + 0.1 * r if is_ln_weight else std * r
    set_from_hf(model, drawn)
    os.makedirs(a.out_dir, exist_ok=True)
    write_safetensors(os.path.join(a.out_dir, "model.safetensors"), hf_state(model),
                      {"format": "pt"})
    write_atomic(os.path.join(a.out_dir, "config.json"),
                 config_json(a.layers, a.dim, a.heads, a.vocab, a.positions).encode())
    print(f"wrote {a.out_dir}: {sum(p.numel() for p in model.parameters())} parameters")


def cmd_shard(a):
    if a.windows <= 0 or a.seq_len <= 0:
        raise UserError(f"--windows {a.windows} and --seq-len {a.seq_len} must be positive")
    n = a.windows * a.seq_len + 1
    vocab, tokens = read_shard(a.src, n)
    body = tokens.numpy().astype("<u2").tobytes()
    write_atomic(a.out, SHARD_MAGIC + struct.pack("<IIQQ", 1, vocab, n, 0) + body)
    print(f"wrote {a.out}: {n} tokens, vocab {vocab}")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("loss", help="mean cross-entropy of an HF GPT-2 on a token shard")
    p.add_argument("model_dir")
    p.add_argument("shard")
    p.add_argument("seq_len", type=int)
    p.add_argument("nwindows", type=int)
    p.add_argument("--chunk", type=int, default=16, help="windows per forward (default 16)")
    p = sub.add_parser("random", help="write a random HF GPT-2 directory")
    p.add_argument("out_dir")
    for k in ("layers", "dim", "heads", "vocab", "positions"):
        p.add_argument(f"--{k}", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--attn-std", type=float, default=0.02,
                   help="std of every attn.c_attn.weight (default 0.02, like the rest)")
    p = sub.add_parser("shard", help="write the first windows of a token shard")
    p.add_argument("out")
    p.add_argument("--from", dest="src", required=True)
    p.add_argument("--windows", type=int, required=True)
    p.add_argument("--seq-len", type=int, required=True)
    a = ap.parse_args(argv)
    if getattr(a, "chunk", 1) <= 0:
        raise UserError(f"--chunk {a.chunk} must be positive")
    {"loss": cmd_loss, "random": cmd_random, "shard": cmd_shard}[a.cmd](a)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (UserError, OSError, ValueError, KeyError) as e:
        print(f"hf_gpt2_torch.py: error: {e}", file=sys.stderr)
        sys.exit(2)
