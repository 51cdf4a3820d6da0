"""Snapshot the ``--json`` output of a fixed set of planner commands, or compare against a snapshot.

    python scripts/cli_snapshot.py save DIR      # run every command, write DIR/<n>.json
    python scripts/cli_snapshot.py check DIR     # run again, report every command whose output differs
    python scripts/cli_snapshot.py values DIR    # the same, but a restructured output passes when every value
                                                 # present before is present after and equal (fields may move
                                                 # into typed sub-models: the leaf names are compared)

For refactors that must not change what users see (issue 15 "outputs unchanged"): the commands cover every
verb with a JSON output that does not depend on the machine (measure and sweep measure this box; they are
left out). Keys that hold wall time (search_s, seconds, elapsed_s, fit_s) are dropped before comparing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "runs.csv"
VOLATILE = {"search_s", "seconds", "elapsed_s", "fit_s", "wall_s"}
# fields renamed on purpose (issue 15: one name for the price of a device-hour); `values` reads old as new
RENAMED = {"price_usd_per_gpu_hour": "price_usd_per_device_hour", "price_usd_per_hour": "price_usd_per_device_hour"}
COMMANDS = [
    "recommend --target-loss 2.0",
    "recommend --target-loss 2.0 --efficiency tuned",
    "recommend --target-loss 2.2 --gpu a100-sxm-80gb",
    "recommend --budget-flops 5.76e23",
    "recommend --budget-flops 1e22 --gpus 64",
    "recommend --budget-usd 2e6",
    "recommend --budget-usd 2e6 --deadline-days 60",
    "recommend --gpu-hours 5e5",
    "recommend --gpus 256 --deadline-days 30",
    "recommend --target-loss 2.0 --mfu 0.35",
    "recommend --target-loss 2.0 --inference-tokens 1e13",
    "recommend --target-loss 1.947 --law sardana2024 --inference-tokens 2e12 --mfu 0.25",
    "recommend --target-loss 2.0 --unique-tokens 2e11",
    "recommend --target-loss 2.0 --experts 64 --top-k 2",
    "recommend --target-loss 2.1 --tokens-per-day 1e10 --serving-days 365",
    "recommend --target-loss 2.1 --law muennighoff2023-c4",
    "recommend --target-loss 2.0 --law hoffmann2022",
    "simulate --params 7e9 --tokens 2e12 --gpu h100-sxm --gpus 64",
    "simulate --params 7e9 --tokens 2e12 --gpu h100-sxm --gpus 64 --efficiency tuned",
    "simulate --params 70e9 --tokens 2e12 --gpu a100-sxm-80gb --gpus 2048",
    "simulate --arch llama3-70b --tokens 15e12 --gpu h100-sxm --gpus 1024",
    "simulate --arch gpt3-175b --tokens 300e9 --gpu a100-sxm-80gb --gpus 1024 --pipeline-engine deepspeed",
    "simulate --params 13e9 --tokens 1e12 --gpu h100-sxm --gpus 64 --precision fp8",
    "simulate --params 42e9 --active-params 6.6e9 --experts 16 --top-k 2 --tokens 4.9e12 --gpu h100-sxm --gpus 512",
    "simulate --params 540e9 --tokens 780e9 --gpu tpu-v4 --gpus 6144",
    "simulate --params 7e9 --tokens 1e12 --gpu h100-sxm --gpus 64 --measured-mfu 0.3",
    "simulate --params 7e9 --tokens 1e12 --gpu mi300x --gpus 64 --price 2.5 --pue 1.1",
    "serve --arch llama3-70b --gpu h100-sxm --tokens-per-day 1e10",
    "serve --params 7e9 --gpu a100-sxm-80gb --tokens-per-day 1e9",
    "serve --arch llama3-8b --gpu l40s --tokens-per-day 5e8 --p99-ttft 1",
    f"fit {EXAMPLES} --drop-highest 5",
    f"fit {EXAMPLES} --drop-highest 5 --bootstrap 200",
    "law list",
    "law show besiroglu2024",
    "profiles list",
    "profiles show h100-sxm",
    "validate",
]


def _clean(obj):
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def run(cmd: str) -> tuple[int, object]:
    argv = cmd.split()
    proc = subprocess.run([sys.executable, "-m", "scaling_planner", *argv, "--json"], capture_output=True, text=True,
                          cwd=ROOT)
    try:
        return proc.returncode, _clean(json.loads(proc.stdout)) if proc.stdout.strip() else proc.stderr.strip()
    except json.JSONDecodeError:
        return proc.returncode, proc.stdout


def _leaves(obj, path=""):
    """(path, leaf name, value) of every scalar in a JSON document."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f"{path}.{k}" if path else k)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, path.rsplit(".", 1)[-1], obj


def _values_kept(old, new) -> list[str]:
    """Values of ``old`` missing from ``new``: a leaf kept at its path must be equal; a leaf whose path is
    gone must reappear, equal, under the same leaf name below the same top-level section."""
    new_by_path = {p: v for p, _, v in _leaves(new)}
    new_by_name = {}
    for p, name, v in _leaves(new):
        new_by_name.setdefault((p.split(".", 1)[0], name), []).append(v)
    lost = []
    for p, name, v in _leaves(old):
        for before, after in RENAMED.items():
            if name == before:
                name, p = after, p[: -len(before)] + after
        if p in new_by_path:
            if new_by_path[p] != v:
                lost.append(f"{p}: {v!r} -> {new_by_path[p]!r}")
        elif v not in new_by_name.get((p.split(".", 1)[0], name), []):
            lost.append(f"{p}: {v!r} gone")
    return lost


def main(argv: list[str]) -> int:
    mode, folder = argv[0], Path(argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    bad = 0
    for n, cmd in enumerate(COMMANDS):
        code, out = run(cmd)
        path = folder / f"{n:02d}.json"
        doc = {"command": cmd, "exit": code, "output": out}
        if mode == "save":
            path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
            print(f"{n:02d} exit {code} {cmd}")
        else:
            old = json.loads(path.read_text())
            new = json.loads(json.dumps(doc, sort_keys=True))
            if mode == "values":
                lost = _values_kept(old, new)
                bad += bool(lost)
                print(f"{'kept' if not lost else 'LOST'} {n:02d} {cmd}" + "".join(f"\n    {x}" for x in lost[:5]))
                continue
            same = old == new
            bad += not same
            print(f"{'same' if same else 'DIFF'} {n:02d} {cmd}")
    if mode in ("check", "values"):
        print(f"{len(COMMANDS) - bad}/{len(COMMANDS)} {'identical' if mode == 'check' else 'with every value kept'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
