#!/usr/bin/env python3
"""Serving while training on one fleet: the measure of docs/performance.md ("Sharing the fleet").

For each mode (windows: the training ranks serve at every safe point; steps: they serve only
between optimizer steps, the plain alternative; dedicated: one of the two ranks is set apart
to serve, fed the weights every step) and each realtime request rate (with a batch stream
beside it), it starts `tandem run` on the quickstart model, lets it warm up, runs the
open-loop load generator (`tandem bench-serve`) against it, and reads:
  - realtime TTFT p50/p99 and batch output tokens/s (bench-serve's JSON);
  - training tokens/s over the load window by the wall clock (the per-step metrics), as a
    fraction of training alone: for windows and steps the same process with no request for
    --idle-s seconds just before and just after the load (a paired baseline: this VM drifts
    by +-10 % within minutes; it includes the idle safe-point checks), for dedicated `tandem
    train` on the whole machine (measured before and after the sweep), whose one core of two
    the dedicated trainer holds; and training's own rate between windows (safe-point time taken
    out), whose ratio to the baseline is the slowdown of training outside the windows;
  - the serving fraction: engine busy seconds (Prometheus tandem_busy_seconds_total) over the
    load window's wall time, times the share of the machine the serving ranks hold;
  - efficiency = training fraction + serving fraction.
Writes results.jsonl and share_bench.png (matplotlib; skipped visibly without it) into OUT.

usage: bench/share_bench.py BUILD_DIR OUT [--rates 0.5,1,2,4] [--batch-rate 1] [--load-s 40]
       [--modes windows,steps,dedicated] [--config configs/quickstart.yaml]
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def read_metrics(path):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    pass  # a line being written
    return rows


def train_rate(rows, first_step, last_step, outside_windows=False):
    """Training tokens/s over steps (first_step, last_step], by the wall clock: the tokens of
    those steps over the elapsed time from the end of first_step to the end of last_step. Not
    over the steps' own step_s, which leaves out what runs between steps (the between-steps
    safe point and its serving windows): that would count serving there as free.
    outside_windows: the time inside safe points (serving windows and idle checks,
    `safe_point_s`) taken out: how fast training itself ran between windows. Against training
    alone this separates the time serving took from a slowdown of training outside the
    windows (caches refilled, threads preempted)."""
    by_step = {r["step"]: r for r in rows}
    sel = [r for r in rows if first_step < r["step"] <= last_step]
    if not sel or first_step not in by_step:
        return 0.0
    tokens = sum(r["tokens_per_s"] * r["step_s"] for r in sel)
    wall = by_step[last_step]["elapsed_s"] - by_step[first_step]["elapsed_s"]
    if outside_windows:
        wall -= sum(r.get("safe_point_s", 0.0) for r in sel)
    return tokens / wall if wall > 0 else 0.0


def scrape(port, name, labels=""):
    """The value of metric `name` (the first series whose labels contain `labels`)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    m = re.search(rf"^{name}(?:{{[^}}]*{re.escape(labels)}[^}}]*}})? ([0-9.eE+-]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def wait_for(cond, timeout, what, proc):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the job exited with {proc.returncode}")
        time.sleep(0.2)
    raise RuntimeError(f"{what}: not within {timeout} s")


def solo(args, out, tag):
    metrics = os.path.join(out, f"solo_{tag}.jsonl")
    cmd = [os.path.join(args.build, "tandem"), "train", args.config, "--set", f"train.steps={args.solo_steps}",
           "--set", "train.eval_every=0", "--set", "sample.count=0", "--metrics-out", metrics]
    subprocess.run(cmd, cwd=ROOT, env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = read_metrics(metrics)
    return train_rate(rows, args.warm_steps, rows[-1]["step"])


def one_point(args, out, mode, rate, seed):
    name = f"{mode}_rt{rate}"
    port_file = os.path.join(out, name + ".port")
    metrics = os.path.join(out, name + ".jsonl")
    for p in (port_file, metrics):
        if os.path.exists(p):
            os.remove(p)
    sets = ["train.steps=100000", "train.eval_every=0", "sample.count=0", "serve.listen=127.0.0.1:0",
            "serve.metrics_listen=127.0.0.1:0", f"serve.stream_interval_ms={args.stream_interval_ms:g}"]
    if mode == "dedicated":
        launch = ["mpirun", "-np", "2", "--oversubscribe"]
        sets += ["serve.mode=dedicated", "serve.ranks=1", "serve.sync_every=1"]
        serving_share = 0.5  # one rank (one core) of two
    else:
        launch = []
        sets += ["serve.mode=windows", f"serve.window_points={'all' if mode == 'windows' else 'steps'}"]
        serving_share = 1.0  # the whole machine, while a window is open
    cmd = launch + [os.path.join(args.build, "tandem"), "run", args.config, "--port-file", port_file,
                    "--metrics-out", metrics]
    for s in sets:
        cmd += ["--set", s]
    log = open(os.path.join(out, name + ".log"), "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: os.path.exists(port_file) and len(open(port_file).read().split()) >= 2, 120, name, proc)
        rpc_port, metrics_port = open(port_file).read().split()[:2]
        wait_for(lambda: len(read_metrics(metrics)) >= args.warm_steps, 300, name + " warm-up", proc)
        # Idle (no request) before and after the load, in the same process: the paired baseline
        # that cancels this VM's drift of +-10 % over minutes.
        idle_a = read_metrics(metrics)[-1]["step"]
        time.sleep(args.idle_s)
        step0 = read_metrics(metrics)[-1]["step"]
        busy0, t0 = scrape(metrics_port, "tandem_busy_seconds_total"), time.time()
        total_rate = rate + args.batch_rate
        requests = max(8, int(round(total_rate * args.load_s)))
        report = os.path.join(out, name + "_serve.json")
        subprocess.run(args.client_prefix.split() + [os.path.join(args.build, "tandem"), "bench-serve", "--server", f"127.0.0.1:{rpc_port}",
                        "--rate", str(total_rate), "--requests", str(requests), "--realtime-fraction",
                        str(rate / total_rate), "--prompt-tokens", "8:64", "--output-tokens", "8:32",
                        "--seed", str(seed), "--json", report],
                       cwd=ROOT, env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        busy1, t1 = scrape(metrics_port, "tandem_busy_seconds_total"), time.time()
        step1 = read_metrics(metrics)[-1]["step"]
        staleness = scrape(metrics_port, "tandem_weights_staleness")
        # The server's own TTFT (submission to first token; this process served only the load)
        srv_ttft = {q: scrape(metrics_port, "tandem_ttft_seconds", f'class="realtime",quantile="{q}"')
                    for q in ("0.5", "0.99")}
        time.sleep(args.idle_s)
        idle_b = read_metrics(metrics)[-1]["step"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    rep = json.load(open(report))
    rt, bt = rep["classes"]["realtime"], rep["classes"]["batch"]
    wall = t1 - t0
    rows = read_metrics(metrics)
    # the step that ended the load also ran before it was over: idle after it starts one later
    # (a side with no complete step counts as missing, not as 0 tokens/s)
    idle_rates = [x for x in (train_rate(rows, idle_a, step0), train_rate(rows, step1 + 1, idle_b)) if x > 0]
    if not idle_rates:
        raise RuntimeError(f"{name}: no complete step in either idle window of {args.idle_s} s (raise --idle-s)")
    idle_rate = sum(idle_rates) / len(idle_rates)
    return {
        "mode": mode, "realtime_rate": rate, "batch_rate": args.batch_rate, "requests": requests,
        "rt_ttft_p50_ms": rt["ttft_s"]["p50"] * 1e3, "rt_ttft_p99_ms": rt["ttft_s"]["p99"] * 1e3,
        "rt_server_ttft_p50_ms": srv_ttft["0.5"] * 1e3, "rt_server_ttft_p99_ms": srv_ttft["0.99"] * 1e3,
        "rt_count": rt["ttft_s"]["count"], "batch_ttft_p99_ms": bt["ttft_s"]["p99"] * 1e3,
        "batch_tokens_per_s": bt["output_tokens"] / rep["seconds"] if rep["seconds"] > 0 else 0.0,
        "rejected": sum(rep["rejected"].values()), "finished": rt["finished"] + bt["finished"],
        "train_tokens_per_s": train_rate(rows, step0, step1), "train_steps": step1 - step0,
        "train_outside_windows_tokens_per_s": train_rate(rows, step0, step1, outside_windows=True),
        "train_idle_tokens_per_s": idle_rate,
        "serving_fraction": (busy1 - busy0) / wall * serving_share, "wall_s": wall,
        "staleness_end": staleness,
    }


def plot(rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("SKIP plot: matplotlib is not installed (apt install python3-matplotlib)")
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"windows": ("o-", "windows (every safe point)"), "steps": ("s--", "between steps only"),
              "dedicated": ("^-.", "dedicated rank")}
    for mode, (style, label) in styles.items():
        pts = [r for r in rows if r["mode"] == mode]
        if not pts:
            continue
        ax.plot([r["train_fraction"] * 100 for r in pts], [r["rt_ttft_p99_ms"] for r in pts], style, label=label)
        for r in pts:
            ax.annotate(f'{r["realtime_rate"]:g}/s', (r["train_fraction"] * 100, r["rt_ttft_p99_ms"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.axhline(100, color="grey", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("training tokens/s, % of training alone")
    ax.set_ylabel("realtime TTFT p99 (ms, log)")
    ax.set_title("Serving while training on 2 cores (quickstart model; labels: realtime rate)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print("plot:", path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("out")
    ap.add_argument("--rates", default="0.5,1,2,4")
    ap.add_argument("--batch-rate", type=float, default=1.0)
    ap.add_argument("--load-s", type=float, default=40.0)
    ap.add_argument("--idle-s", type=float, default=12.0)
    ap.add_argument("--stream-interval-ms", type=float, default=0.0)
    ap.add_argument("--client-prefix", default="", help="command prefix for the load generator, e.g. 'chrt --idle 0'")
    ap.add_argument("--modes", default="windows,steps,dedicated")
    ap.add_argument("--config", default="configs/quickstart.yaml")
    # Both the runs under load and training alone skip their first warm-steps steps (buffers
    # first touched, allocator caches filling: the first 20 steps run ~10 % slower), so the
    # baseline is steady-state training like the rest of the load's steps.
    ap.add_argument("--warm-steps", type=int, default=20)
    ap.add_argument("--solo-steps", type=int, default=120)
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    os.makedirs(args.out, exist_ok=True)
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = re.search(r"^Model name:\s*(.*)$", cpu, re.M)
    print(f"cpu: {model.group(1) if model else '?'}, {os.cpu_count()} cores; config {args.config}")
    solo_a = solo(args, args.out, "before")
    print(f"training alone: {solo_a:.0f} tokens/s")
    rows = []
    rates = [float(x) for x in args.rates.split(",")]
    for i, rate in enumerate(rates):
        for mode in args.modes.split(","):  # modes alternate within each rate
            r = one_point(args, args.out, mode, rate, seed=1 + i)
            rows.append(r)
            print(json.dumps(r), flush=True)
    solo_b = solo(args, args.out, "after")
    base = (solo_a + solo_b) / 2
    print(f"training alone again: {solo_b:.0f} tokens/s (baseline = mean {base:.0f})")
    with open(os.path.join(args.out, "results.jsonl"), "w") as f:
        for r in rows:
            r["train_solo_tokens_per_s"] = base
            # Training alone: for windows and steps the same process idle just before and after
            # the load (paired; it includes the idle safe-point checks), for dedicated `tandem
            # train` on the whole machine (its trainer holds one core of two).
            alone = base if r["mode"] == "dedicated" else r["train_idle_tokens_per_s"]
            r["train_fraction"] = r["train_tokens_per_s"] / alone
            r["train_fraction_vs_solo"] = r["train_tokens_per_s"] / base
            r["efficiency"] = r["train_fraction"] + r["serving_fraction"]
            # > 1: training ran slower between windows than alone (0 where not measured)
            r["slowdown_outside_windows"] = (alone / r["train_outside_windows_tokens_per_s"]
                                             if r["train_outside_windows_tokens_per_s"] > 0 else 0.0)
            f.write(json.dumps(r) + "\n")
    print(f"\n| mode | rt/s | rt TTFT p50 ms | rt TTFT p99 ms | batch tok/s | train tok/s | train % of alone | "
          f"serving % | efficiency | slowdown outside windows | failed |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f'| {r["mode"]} | {r["realtime_rate"]:g} | {r["rt_ttft_p50_ms"]:.0f} | {r["rt_ttft_p99_ms"]:.0f} | '
              f'{r["batch_tokens_per_s"]:.1f} | {r["train_tokens_per_s"]:.0f} | {100 * r["train_fraction"]:.1f} | '
              f'{100 * r["serving_fraction"]:.1f} | {r["efficiency"]:.3f} | {r["slowdown_outside_windows"]:.3f} | '
              f'{r["rejected"]} |')
    plot(rows, os.path.join(args.out, "share_bench.png"))


if __name__ == "__main__":
    sys.exit(main())
