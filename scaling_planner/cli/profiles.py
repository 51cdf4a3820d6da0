"""``planner profiles [list | show NAME]``: the hardware profiles and where their numbers come from.

``planner profiles`` alone lists. Both actions take ``--json`` (one JSON object on stdout) and
``--profiles-dir DIR`` (repeatable; added after the ``SCALING_PLANNER_PROFILES`` directories, and
a profile there overrides a built-in of the same name, which ``origin`` shows).
"""

from __future__ import annotations

import argparse
import textwrap

from .common import print_json, table


def _add_common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default_json = argparse.SUPPRESS if suppress else False
    default_dirs = argparse.SUPPRESS if suppress else []
    parser.add_argument(
        "--json", action="store_true", default=default_json, help="print one JSON object instead of a table"
    )
    parser.add_argument(
        "--profiles-dir",
        action="append",
        default=default_dirs,
        metavar="DIR",
        dest="profiles_dir" if not suppress else "sub_profiles_dir",
        help="extra directory of profile YAML files (repeatable); overrides built-ins of the same name",
    )


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "profiles",
        help="list hardware profiles or show one with its sources",
        description="List the hardware profiles (dense peaks, memory, bandwidth, price) or show one with "
        "the source of every number. Extra profile directories come from --profiles-dir and the "
        "SCALING_PLANNER_PROFILES environment variable.",
    )
    _add_common(parser, suppress=False)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=type(parser))
    list_parser = actions.add_parser("list", help="one line per profile (the default)")
    _add_common(list_parser, suppress=True)
    show_parser = actions.add_parser("show", help="every field of one profile, with its source")
    show_parser.add_argument("name", metavar="NAME", help="profile name, e.g. h100-sxm (or an NVML device name)")
    _add_common(show_parser, suppress=True)
    parser.set_defaults(func=run, action=None)


def run(args: argparse.Namespace) -> int:
    dirs = list(getattr(args, "profiles_dir", []) or []) + list(getattr(args, "sub_profiles_dir", []) or [])
    as_json = bool(getattr(args, "json", False))
    if args.action == "show":
        return _show(args.name, dirs, as_json)
    return _list(dirs, as_json)


def _origin(profile) -> str:
    if profile.is_builtin:
        return "built-in"
    from ..hardware import builtin_profiles

    return "user (overrides built-in)" if profile.name in builtin_profiles() else "user"


def _entry(profile) -> dict:
    data = profile.model_dump(mode="json")
    data["origin"] = _origin(profile)
    data["file"] = str(profile.path) if profile.path is not None else None
    return data


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if 0 < abs(value) < 10:  # small nominal figures (the CPU profile) keep two significant digits
        digits = max(digits, 2)
    return f"{value:,.{digits}f}"


def _list(dirs: list[str], as_json: bool) -> int:
    from ..hardware import load_profiles

    profiles = load_profiles(dirs)
    if as_json:
        print_json({"count": len(profiles), "profiles": [_entry(p) for p in profiles.values()]})
        return 0
    rows = []
    name_width = max((len(p.display_name) for p in profiles.values()), default=0)
    for p in profiles.values():
        peaks = p.peak_dense_tflops.supported()
        rows.append(
            [
                p.name,
                p.display_name.ljust(name_width),  # table() right-aligns; pad to read left-aligned
                _fmt(peaks.get("bf16")),
                _fmt(peaks.get("fp8")),
                _fmt(p.memory_gib, 0),
                _fmt(p.memory_bandwidth_gb_per_s, 0),
                f"{p.price_usd_per_device_hour:.2f}",
                "built-in" if p.is_builtin else "user",
            ]
        )
    header = ["name", "display name", "bf16 TF/s", "fp8 TF/s", "mem GiB", "mem GB/s", "$/h", "origin"]
    print(table(rows, header))
    print("\n  TF/s: dense peak TFLOP/s per device (no 2:4 sparsity); '-' = dtype not supported.")
    print("  $/h: default price per device-hour (dated; override it). `planner profiles show NAME` gives sources.")
    return 0


def _show(name: str, dirs: list[str], as_json: bool) -> int:
    from ..hardware import get_profile

    profile = get_profile(name, dirs)
    if as_json:
        print_json(_entry(profile))
        return 0
    sources = profile.sources
    used: set[str] = set()
    width = 100

    def source_for(*keys: str) -> str | None:
        for key in keys:
            if key in sources:
                used.add(key)
                return sources[key]
        return None

    def line(label: str, value: str, *keys: str) -> None:
        print(f"  {label:<28} {value}")
        src = source_for(*keys) if keys else None
        if src:
            for text in textwrap.wrap(src, width - 8):
                print(f"      {text}")

    print(f"{profile.name}: {profile.display_name}")
    print(f"  {'file':<28} {profile.path} [{_origin(profile)}]")
    line("vendor / kind", f"{profile.vendor} / {profile.kind}")
    peaks = profile.peak_dense_tflops.supported()
    print(f"  {'peak_dense_tflops':<28} " + ", ".join(f"{d} {v:g}" for d, v in peaks.items()))
    src = source_for("peak_dense_tflops")
    for text in textwrap.wrap(src or "", width - 8):
        print(f"      {text}")
    for dtype in peaks:
        extra = source_for(f"peak_dense_tflops.{dtype}")
        if extra:
            print(f"      {dtype}: {extra}")
    line("memory_gib", f"{profile.memory_gib:g} GiB ({profile.memory_bytes / 1e9:.1f} GB)", "memory_gib")
    line(
        "memory_bandwidth_gb_per_s",
        f"{profile.memory_bandwidth_gb_per_s:g} GB/s",
        "memory_bandwidth_gb_per_s",
    )
    line("devices_per_node", str(profile.devices_per_node), "devices_per_node")
    for tier in ("intra_node", "inter_node"):
        link = getattr(profile, tier)
        line(
            tier,
            f"{link.name}: {link.bandwidth_gb_per_s:g} GB/s per device per direction, {link.latency_us:g} us",
            tier,
        )
    line("tdp_w", f"{profile.tdp_w:g} W", "tdp_w")
    if profile.idle_w is not None:
        line("idle_w", f"{profile.idle_w:g} W", "idle_w")
    line(
        "achievable_matmul_fraction",
        f"{profile.achievable_matmul_fraction:g} (prior; a measurement replaces it)",
        "achievable_matmul_fraction",
    )
    line("price", f"${profile.price.usd_per_hour:g}/h as of {profile.price.date}", "price")
    for text in textwrap.wrap(profile.price.source, width - 8):
        print(f"      {text}")
    line("nvml_names", ", ".join(profile.nvml_names) or "-", "nvml_names")
    rest = [k for k in sources if k not in used]
    if rest:
        print("  other sources")
        for key in rest:
            print(f"    {key}:")
            for text in textwrap.wrap(sources[key], width - 8):
                print(f"      {text}")
    return 0
