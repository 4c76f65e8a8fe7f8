#!/usr/bin/env python3
"""Compares per-step loss and grad_norm of training runs (metrics JSON lines, --metrics-out).

usage: compare_metrics.py [--exact | --tol REL] BASE.jsonl RUN.jsonl [RUN2.jsonl ...]
  The runs together (in order) must cover steps that BASE has; each step present in a run is
  compared with BASE's same step: bitwise (--exact, on the 17-digit JSON values) or within a
  relative tolerance. Prints one line per run and exits 1 on any difference, naming the step.
"""
import json
import sys


def load(path):
    recs = {}
    for line in open(path):
        r = json.loads(line)
        recs[r["step"]] = r
    return recs


def main(argv):
    exact, tol, files = False, 0.0, []
    i = 0
    while i < len(argv):
        if argv[i] == "--exact":
            exact = True
        elif argv[i] == "--tol":
            tol = float(argv[i + 1])
            i += 1
        else:
            files.append(argv[i])
        i += 1
    if len(files) < 2:
        print(__doc__)
        return 2
    base = load(files[0])
    ok = True
    covered = set()
    for f in files[1:]:
        run = load(f)
        worst = 0.0
        bad = []
        for step, r in sorted(run.items()):
            covered.add(step)
            if step not in base:
                bad.append(f"step {step} not in {files[0]}")
                continue
            for key in ("loss", "grad_norm"):
                a, b = r[key], base[step][key]
                if exact:
                    if a != b:
                        bad.append(f"step {step} {key} {a!r} != {b!r}")
                else:
                    rel = abs(a - b) / max(abs(b), 1e-30)
                    worst = max(worst, rel)
                    if rel > tol:
                        bad.append(f"step {step} {key} {a:.9g} vs {b:.9g} (rel {rel:.2e} > {tol:g})")
        steps = f"steps {min(run)}..{max(run)}" if run else "no steps"
        how = "bitwise" if exact else f"max rel diff {worst:.2e}"
        print(f"{f}: {steps}, {how} {'ok' if not bad else 'FAIL: ' + '; '.join(bad[:4])}")
        ok &= not bad
    missing = sorted(set(base) - covered)
    if missing:
        print(f"steps of {files[0]} no run covers: {missing}")
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
