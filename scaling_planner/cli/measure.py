"""``planner measure``: probe every GPU (or GPU-less node's CPU) of a Ray cluster.

Runs :func:`scaling_planner.measure.cluster.measure_cluster` in a child process
(:mod:`scaling_planner.measure.isolated`: a driver whose Ray head dies is ended by Ray itself; the CLI
then still prints what had reported and one line, exit 4): uses ``--ray-address`` (``auto``,
``HOST:PORT`` or ``ray://HOST:PORT``) or starts a local Ray instance, and prints one row per device
(achieved matmul rate per dtype with its fraction of the profile's dense peak, copy bandwidth,
status), the cluster totals, stragglers and what did not report. ``--json`` prints the
:class:`~scaling_planner.measure.models.ClusterMeasurement` as one JSON object on stdout and nothing
else there. A progress bar goes to stderr when stderr is a terminal.

``--save`` appends probe records to the calibration history (``--calibration-dir``, else
``$SCALING_PLANNER_CALIBRATION_DIR``, else ``~/.scaling-planner/calibration``) and says which files
it wrote (on stderr with ``--json``). Ray that cannot be reached, or a cluster where no device could be
measured, is one line on stderr and exit code 4. Ray and torch load inside :func:`run`.
"""

from __future__ import annotations

import argparse
import sys

from .common import bounded, print_json, stdout_to_stderr, table

DTYPE_ORDER = ("fp8", "bf16", "fp16", "tf32", "fp32", "fp64")


def _dtypes(text: str) -> list[str]:
    from ..measure.probes import MATMUL_DTYPES

    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in MATMUL_DTYPES]
    if not items or bad:
        raise argparse.ArgumentTypeError(
            f"dtypes: expected a comma-separated list of {', '.join(MATMUL_DTYPES)}, got {text!r}")
    return list(dict.fromkeys(items))


def _timeout(text: str) -> float:
    from ..base.errors import InputError
    from ..base.units import parse_duration_s

    try:
        return parse_duration_s(text, "timeout", default_unit="s")
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_timeout.__name__ = "timeout"
_dtypes.__name__ = "dtypes"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "measure",
        help="probe every GPU of a Ray cluster: achieved matmul FLOP/s and bandwidth",
        description="Run matmul and memory-bandwidth probes on every GPU of a Ray cluster (the CPU of a node "
        "without GPUs), read NVML, and report the achieved rates, stragglers and what did not report.",
    )
    p.add_argument("--ray-address", metavar="ADDR", default=None,
                   help="Ray cluster to measure: auto, HOST:PORT or ray://HOST:PORT (default: start a local one)")
    p.add_argument("--dtypes", type=_dtypes, default=None, metavar="LIST",
                   help="matmul dtypes, comma-separated (default: the device's set: bf16,fp16,tf32,fp32[,fp8] on "
                   "a GPU, fp32,bf16 on a CPU)")
    p.add_argument("--quick", action="store_true", help="small sizes and few repeats (a smoke test, not a figure)")
    p.add_argument("--timeout", type=_timeout, default=60.0, metavar="S",
                   help="seconds every device gets to report before it is cancelled (default 60; 2min works)")
    p.add_argument("--straggler-margin", type=bounded("straggler_margin", 0.0, 0.99), default=0.10, metavar="F",
                   help="a device slower than its peers' median by more than this fraction is a straggler "
                   "(default 0.10)")
    p.add_argument("--save", action="store_true", help="append the results to the calibration history")
    p.add_argument("--calibration-dir", metavar="DIR", default=None,
                   help="calibration history directory (default $SCALING_PLANNER_CALIBRATION_DIR or "
                   "~/.scaling-planner/calibration)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run)


class _Bar:
    """A one-line text progress bar on stderr, drawn only when stderr is a terminal."""

    WIDTH = 24

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.drawn = False

    def __call__(self, done: int, total: int, label: str) -> None:
        if not self.enabled:
            return
        filled = self.WIDTH * done // max(total, 1)
        line = f"measuring [{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{total} {label}"
        self.stream.write("\r\033[K" + line[:120])
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()


def run(args: argparse.Namespace) -> int:
    from ..base.errors import MeasurementError
    from ..measure.isolated import measure_isolated

    bar = _Bar()
    try:
        with stdout_to_stderr():  # nothing printed while measuring is ours to put on stdout
            m = measure_isolated(ray_address=args.ray_address, dtypes=args.dtypes, quick=args.quick,
                                 probe_timeout_s=args.timeout, straggler_margin=args.straggler_margin, progress=bar)
    except MeasurementError as exc:
        partial = getattr(exc, "partial", None)
        if partial is not None:  # the cluster was lost: what had reported, then the one-line reason
            print_json(partial) if args.json else print(render(partial))
        raise
    finally:
        bar.close()
    saved = _save(m, args.calibration_dir) if args.save else None
    if args.json:
        print_json(m)
    else:
        print(render(m))
    if saved is not None:
        out = sys.stderr if args.json else sys.stdout
        for line in saved:
            print(line, file=out)
    if m.totals.devices_ok == 0:
        raise MeasurementError(f"no device was measured ({len(m.missing)} did not report: "
                               f"{m.missing[0] if m.missing else 'the cluster has nothing to measure'})")
    return 0


def _save(m, directory: str | None) -> list[str]:
    from ..calibration.store import append, calibration_dir, records_from_cluster

    records = records_from_cluster(m)
    if not records:
        return [f"nothing saved to {calibration_dir(directory)}: no device with a hardware profile reported"]
    return [f"saved calibration record {append(r, directory)} ({r.describe()})" for r in records]


# ---- the table -------------------------------------------------------------------------------------------

def _rate(value: float | None, unit: str = "FLOP/s") -> str:
    from ..base.units import format_rate

    return "-" if value is None else format_rate(value, unit)


def _with_fraction(text: str, fraction: float | None) -> str:
    return text if fraction is None else f"{text} ({fraction:.0%})"


def _dtypes_measured(m) -> list[str]:
    found = {p.dtype for d in m.devices() for p in d.probes if p.kind == "matmul" and p.error is None}
    return [d for d in DTYPE_ORDER if d in found] + sorted(found - set(DTYPE_ORDER))


def _device_row(node, dev, dtypes: list[str]) -> list[str]:
    row = [node.hostname or node.address or "-", node.node_id[:8], dev.device,
           " / ".join(x for x in (dev.name, dev.profile) if x) or "-"]
    for dtype in dtypes:
        best = dev.best_matmul(dtype)
        row.append(_with_fraction(_rate(best.median), best.fraction_of_peak) if best else "-")
    bw = next((p for p in dev.probes if p.kind == "memory_bandwidth" and p.error is None), None)
    row.append(_with_fraction(_rate(bw.median, "B/s"), bw.fraction_of_peak) if bw else "-")
    row.append(dev.status)
    return row


def render(m) -> str:
    """The readable report of a ClusterMeasurement: devices, totals, stragglers, missing, notes."""
    dtypes = _dtypes_measured(m)
    header = ["host", "node", "device", "name / profile", *(f"{d} matmul" for d in dtypes), "copy bandwidth",
              "status"]
    rows = [_device_row(n, d, dtypes) for n in m.nodes for d in n.devices]
    t = m.totals
    lines = [f"Cluster measurement at {m.measured_at} ({m.elapsed_s:.1f} s"
             f"{', PARTIAL' if m.partial else ''}; Ray {m.ray_address or 'local'})", ""]
    lines.append(table(rows, header) if rows else "  no device to measure")
    lines += ["", f"Nodes {t.nodes_alive} alive of {t.nodes}; devices {t.devices_ok} ok of {t.devices}; "
                  f"GPU slots {t.gpus}"]
    for dtype in dtypes:
        if dtype in t.achieved_flops_per_s:
            lines.append(f"  total {dtype} matmul: {_rate(t.achieved_flops_per_s[dtype])}")
    dead = [n for n in m.nodes if not n.alive]
    for n in dead:
        lines.append(f"  dead node {n.node_id[:8]} ({n.hostname or n.address or '-'}): {n.error}")
    if m.stragglers:
        lines += ["", f"Stragglers (more than {m.straggler_margin:.0%} below their peers' median):"]
        lines += [f"  node {s.node_id[:8]} {s.device} {s.dtype}: {_rate(s.achieved_flops_per_s)} vs median "
                  f"{_rate(s.median_flops_per_s)} ({s.shortfall:.0%} short)" for s in m.stragglers]
    else:
        lines.append(f"No stragglers (margin {m.straggler_margin:.0%}).")
    if m.missing:
        lines += ["", "Did not report:"] + [f"  {x}" for x in m.missing]
    if m.notes:
        lines += ["", "Notes:"] + [f"  {x}" for x in m.notes]
    if m.load_average:
        lines.append(f"  driver load average {', '.join(f'{x:.2f}' for x in m.load_average)} (1, 5, 15 min)")
    return "\n".join(lines)
