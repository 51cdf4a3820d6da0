"""Hardware profiles: one YAML file per accelerator, validated into :class:`HardwareProfile`.

A profile holds what the cost model needs about one device: dense peak FLOP/s per dtype (never
the 2:4-sparsity figure), memory capacity (GiB, 2**30 bytes) and bandwidth (GB/s, 1e9 bytes/s),
the two interconnect tiers (per device, one direction), power, a prior for the achievable
fraction of the peak on a large bf16 GEMM, a dated default price, the NVML names the device
reports, and a ``sources`` mapping that says where every number comes from.

``devices_per_node`` is the number of devices that share the ``intra_node`` fabric: a server for
most GPUs, an NVL72 rack for GB200, an ICI slice for TPUs. Traffic between those domains uses
``inter_node``.

Built-in profiles live in ``hardware_profiles/`` at the repository root (checkouts, editable
installs) or in ``<prefix>/share/scaling-planner/hardware_profiles`` (wheel installs). User
directories, from the ``extra_dirs`` argument or the ``SCALING_PLANNER_PROFILES`` environment
variable (``os.pathsep``-separated), add profiles and override built-ins of the same name.

YAML is read with ``yaml.safe_load`` only. Importing this module pulls in pydantic and PyYAML,
nothing heavier.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import sys
import sysconfig
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from ..base.errors import InputError
from ..base.units import GB, GIB, TERA

ENV_VAR = "SCALING_PLANNER_PROFILES"
"""Environment variable naming extra profile directories, separated by ``os.pathsep``."""

DTYPES = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8")
"""The dtypes a profile may give a dense peak for."""

_DTYPE_ALIASES = {
    "float64": "fp64",
    "double": "fp64",
    "float32": "fp32",
    "float": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "float8": "fp8",
    "e4m3": "fp8",
    "e5m2": "fp8",
}

_SHARE_SUBDIR = Path("share") / "scaling-planner" / "hardware_profiles"
_PROFILE_SUFFIXES = (".yaml", ".yml")

DirsArg = Iterable[str | os.PathLike] | str | os.PathLike | None
"""One directory or several; ``None`` for none."""

# Finite: YAML reads 1e400 as inf, and an infinite peak or bandwidth plans a run at MFU 0 % without a word.
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
# A dense peak per device in TFLOP/s: at most 1e6 (an exaFLOP/s per device, 200x a B200's dense FP8); a
# larger figure is a unit slip (FLOP/s for TFLOP/s) that would plan every run at MFU 0.0 %.
PeakValue = Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PeakTflops(_Strict):
    """Dense peak throughput per dtype in TFLOP/s (TOPS for int8), per device; absent = unsupported."""

    fp64: PeakValue | None = None
    fp32: PeakValue | None = None
    tf32: PeakValue | None = None
    bf16: PeakValue | None = None
    fp16: PeakValue | None = None
    fp8: PeakValue | None = None
    int8: PeakValue | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> PeakTflops:
        if not self.supported():
            raise ValueError(f"give a dense peak for at least one of {', '.join(DTYPES)}")
        return self

    def supported(self) -> dict[str, float]:
        """The dtypes with a peak, in :data:`DTYPES` order."""
        return {d: v for d in DTYPES if (v := getattr(self, d)) is not None}


class Link(_Strict):
    """One interconnect tier, per device and per direction."""

    name: str = Field(min_length=1)
    bandwidth_gb_per_s: PositiveFloat
    latency_us: NonNegativeFloat


class Price(_Strict):
    """A dated default price per device-hour; a user input in any real plan."""

    usd_per_hour: NonNegativeFloat
    date: str = Field(min_length=1)
    source: str = Field(min_length=1)


class HardwareProfile(_Strict):
    """One accelerator (or a generic CPU machine), as described by a ``hardware_profiles/*.yaml`` file."""

    name: str = Field(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
    display_name: str = Field(min_length=1)
    vendor: Literal["nvidia", "amd", "google", "intel", "generic"]
    kind: Literal["gpu", "tpu", "accelerator", "cpu"]
    peak_dense_tflops: PeakTflops
    memory_gib: PositiveFloat
    memory_bandwidth_gb_per_s: PositiveFloat
    devices_per_node: int = Field(ge=1)
    devices_per_host: int | None = Field(None, ge=1, description="TPU: chips per host; a run above one ICI "
                                         "domain (devices_per_node) splits into equal slices of whole hosts")
    intra_node: Link
    inter_node: Link
    tdp_w: PositiveFloat
    idle_w: NonNegativeFloat | None = None
    achievable_matmul_fraction: float = Field(gt=0, le=1)
    price: Price
    nvml_names: list[str] = Field(default_factory=list)
    sources: dict[str, str] = Field(default_factory=dict)

    _path: Path | None = PrivateAttr(default=None)
    _builtin: bool = PrivateAttr(default=False)

    @model_validator(mode="after")
    def _check(self) -> HardwareProfile:
        fields = set(type(self).model_fields)
        for key in self.sources:
            if key.split(".", 1)[0] not in fields:
                raise ValueError(f"sources has a key {key!r} that names no field of a profile")
        if self.idle_w is not None and self.idle_w > self.tdp_w:
            raise ValueError(f"idle_w ({self.idle_w:g}) must not exceed tdp_w ({self.tdp_w:g})")
        return self

    # ---- provenance -------------------------------------------------------------------------
    @property
    def path(self) -> Path | None:
        """The file this profile was read from (None when built in code)."""
        return self._path

    @property
    def is_builtin(self) -> bool:
        """True for a profile shipped with scaling-planner, False for a user profile."""
        return self._builtin

    # ---- SI accessors -----------------------------------------------------------------------
    @property
    def supported_dtypes(self) -> tuple[str, ...]:
        """The dtypes with a dense peak, in :data:`DTYPES` order."""
        return tuple(self.peak_dense_tflops.supported())

    @property
    def training_precision(self) -> str:
        """The precision a model trains in on this device: bf16 mixed precision on accelerators, fp32 on
        a CPU (without bf16 matrix units throughout, bf16 autocast there is slower than fp32: this
        project's CPU sweep measured fp32 faster, reference/stack_notes.md)."""
        return "fp32" if self.kind == "cpu" else "bf16"

    def peak_flops_per_s(self, dtype: str = "bf16") -> float:
        """Dense peak FLOP/s per device for ``dtype`` (no 2:4 sparsity).

        Raises :class:`InputError` naming the supported dtypes when the device has no peak for it.
        """
        key = _DTYPE_ALIASES.get(str(dtype).strip().lower(), str(dtype).strip().lower())
        peaks = self.peak_dense_tflops.supported()
        if key not in peaks:
            raise InputError(
                "dtype",
                f"{self.name} has no dense {dtype} peak; supported: {', '.join(peaks)}",
            )
        return peaks[key] * TERA

    @property
    def memory_bytes(self) -> float:
        return self.memory_gib * GIB

    @property
    def memory_bandwidth_bytes_per_s(self) -> float:
        return self.memory_bandwidth_gb_per_s * GB

    @property
    def intra_node_bandwidth_bytes_per_s(self) -> float:
        return self.intra_node.bandwidth_gb_per_s * GB

    @property
    def inter_node_bandwidth_bytes_per_s(self) -> float:
        return self.inter_node.bandwidth_gb_per_s * GB

    @property
    def intra_node_latency_s(self) -> float:
        return self.intra_node.latency_us * 1e-6

    @property
    def inter_node_latency_s(self) -> float:
        return self.inter_node.latency_us * 1e-6

    @property
    def price_usd_per_device_hour(self) -> float:
        return self.price.usd_per_hour


# ---- reading and validating files -----------------------------------------------------------


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(error: Mapping[str, Any]) -> tuple[str, str]:
    """(field, problem) for one pydantic error, in words a profile author understands."""
    loc = ".".join(str(p) for p in error.get("loc", ())) or "(top level)"
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return loc, "unknown key (check the spelling; see an existing profile for the allowed keys)"
    if kind == "missing":
        return loc, "required field is missing"
    msg = str(error.get("msg", "invalid value"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if "input" in error and kind not in ("model_type", "dict_type"):
        msg += f", got {_one_line(repr(error['input']), 60)}"
    return loc, _one_line(msg)


def profile_from_mapping(data: Any, path: Path | str | None = None, *, builtin: bool = False) -> HardwareProfile:
    """Validate a parsed YAML mapping into a profile; errors name the file and the field (one line)."""
    where = f" in hardware profile {path}" if path is not None else " in hardware profile"
    if not isinstance(data, Mapping):
        raise InputError("(top level)", f"expected a mapping of fields, got {type(data).__name__}{where}")
    try:
        profile = HardwareProfile.model_validate(dict(data))
    except ValidationError as exc:
        errors = exc.errors()
        field, problem = _describe(errors[0])
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise InputError(field, f"{problem}{where}{more}") from None
    if path is not None:
        stem = Path(path).stem
        if profile.name != stem:
            raise InputError("name", f"{profile.name!r} must match the file name {stem!r}{where}")
        profile._path = Path(path)
    profile._builtin = builtin
    return profile


def load_profile_file(path: Path | str, *, builtin: bool = False) -> HardwareProfile:
    """Read and validate one profile file (``yaml.safe_load`` only)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError("profile file", f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InputError("profile file", f"{path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                                         f"{exc.start}); save it as UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError("(YAML)", f"not valid YAML: {_one_line(str(exc))} in hardware profile {path}") from None
    return profile_from_mapping(data, path, builtin=builtin)


def _profile_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in _PROFILE_SUFFIXES and p.is_file())


def _load_directory(directory: Path, *, builtin: bool) -> dict[str, HardwareProfile]:
    profiles: dict[str, HardwareProfile] = {}
    for file in _profile_files(directory):
        profile = load_profile_file(file, builtin=builtin)
        if profile.name in profiles:
            raise InputError(
                "name",
                f"{profile.name!r} is defined twice in {directory} "
                f"({profiles[profile.name].path.name} and {file.name})",
            )
        profiles[profile.name] = profile
    return profiles


def _candidate_builtin_dirs() -> list[Path]:
    here = Path(__file__).resolve()
    candidates = [here.parents[2] / "hardware_profiles"]  # checkout / editable install
    prefixes = [sysconfig.get_path("data"), sys.prefix, sys.base_prefix]
    try:
        import site

        prefixes.append(site.getuserbase())
    except Exception:  # pragma: no cover - site may be disabled
        pass
    for prefix in prefixes:
        if prefix:
            candidates.append(Path(prefix) / _SHARE_SUBDIR)
    seen: list[Path] = []
    for c in candidates:
        if c not in seen:
            seen.append(c)
    return seen


@functools.cache
def builtin_profiles_dir() -> Path:
    """The directory the built-in profiles are read from."""
    for candidate in _candidate_builtin_dirs():
        if candidate.is_dir() and any(candidate.glob("*.yaml")):
            return candidate
    tried = ", ".join(str(c) for c in _candidate_builtin_dirs())
    raise InputError("hardware_profiles", f"no built-in hardware profiles found (looked in {tried})")


@functools.cache
def _builtin_profiles() -> dict[str, HardwareProfile]:
    return _load_directory(builtin_profiles_dir(), builtin=True)


def builtin_profiles() -> dict[str, HardwareProfile]:
    """The profiles shipped with scaling-planner (parsed once per process)."""
    return dict(_builtin_profiles())


def _user_dirs(extra_dirs: DirsArg) -> list[Path]:
    if extra_dirs is None:
        given: list[str | os.PathLike] = []
    elif isinstance(extra_dirs, (str, os.PathLike)):
        given = [extra_dirs]
    else:
        given = list(extra_dirs)
    env = [d for d in os.environ.get(ENV_VAR, "").split(os.pathsep) if d.strip()]
    # Later directories win: environment first, then the explicit argument (a flag beats the env).
    dirs = [Path(d).expanduser() for d in env] + [Path(d).expanduser() for d in given]
    for d in dirs:
        if not d.is_dir():
            source = ENV_VAR if str(d) in {str(Path(e).expanduser()) for e in env} else "profiles_dir"
            raise InputError(source, f"{d} is not a directory of hardware profiles")
    return dirs


def load_profiles(extra_dirs: DirsArg = None) -> dict[str, HardwareProfile]:
    """All profiles by name: built-ins, then the ``SCALING_PLANNER_PROFILES`` directories, then
    ``extra_dirs``; a later profile with the same name overrides an earlier one."""
    profiles = builtin_profiles()
    for directory in _user_dirs(extra_dirs):
        profiles.update(_load_directory(directory, builtin=False))
    return dict(sorted(profiles.items()))


def _closest(name: str, names: Iterable[str], n: int = 3) -> list[str]:
    names = list(names)
    contains = [c for c in names if name and (name in c or c in name)]
    close = difflib.get_close_matches(name, names, n=n, cutoff=0.4)
    out: list[str] = []
    for c in contains + close:
        if c not in out:
            out.append(c)
    return out[: max(n, len(contains))]


def get_profile(name, extra_dirs: DirsArg = None) -> HardwareProfile:
    """The profile called ``name`` (case and ``_``/``-`` insensitive; an NVML device name also works);
    a :class:`HardwareProfile` is returned as it is. The one loader of profiles.

    Fast path: with no user profile directory (``extra_dirs`` or the environment), read only the
    built-in ``<name>.yaml`` instead of validating every profile, with libyaml's safe loader where
    PyYAML has it (the same SafeLoader constructors, ~10x faster than the pure Python one: the cold
    start of ``planner recommend``); any problem falls back to the full loader and its messages.
    An unknown name raises :class:`InputError` suggesting the closest names.
    """
    if isinstance(name, HardwareProfile):
        return name
    key = str(name).strip().lower().replace("_", "-").replace(" ", "-")
    if extra_dirs is None and not os.environ.get(ENV_VAR, "").strip():
        fast = _builtin_file(key)
        if fast is not None:
            return fast
    profiles = load_profiles(extra_dirs)
    if key in profiles:
        return profiles[key]
    by_nvml = _match_nvml(str(name), profiles.values())
    if by_nvml is not None:
        return by_nvml
    suggestions = _closest(key, profiles)
    hint = f"closest: {', '.join(suggestions)}" if suggestions else f"known: {', '.join(profiles)}"
    raise InputError("profile", f"unknown hardware profile {name!r}; {hint} (see `planner profiles list`)")


def _builtin_file(key: str) -> HardwareProfile | None:
    """The built-in profile ``<key>.yaml`` read alone (``get_profile``'s fast path), or None."""
    try:
        path = builtin_profiles_dir() / f"{key}.yaml"
    except InputError:
        return None
    if not path.is_file():
        return None
    loader = getattr(yaml, "CSafeLoader", None)
    if loader is not None:
        try:
            return profile_from_mapping(yaml.load(path.read_text(encoding="utf-8"), Loader=loader), path, builtin=True)
        except (OSError, UnicodeDecodeError, yaml.YAMLError, InputError):
            pass
    return load_profile_file(path, builtin=True)


load_profile = get_profile  # the name the planner's modules use


# ---- NVML names -------------------------------------------------------------------------------

_VENDOR_WORDS = {"nvidia", "tesla", "geforce", "amd", "instinct", "google", "intel", "habana"}


def _nvml_tokens(text: str) -> frozenset[str]:
    """A tolerant key for a device name: lowercase words, vendor words and separators dropped,
    ``80 GB`` joined to ``80gb``, ``sxm4``/``sxm5`` folded to ``sxm``."""
    s = text.lower()
    s = re.sub(r"(\d+)\s*gb\b", r"\1gb", s)
    words = re.split(r"[^a-z0-9.]+", s)
    out = set()
    for w in words:
        w = w.strip(".")
        if not w or w in _VENDOR_WORDS:
            continue
        w = re.sub(r"^sxm\d$", "sxm", w)
        out.add(w)
    return frozenset(out)


def _match_nvml(nvml_name: str, profiles: Iterable[HardwareProfile]) -> HardwareProfile | None:
    profiles = list(profiles)
    wanted = nvml_name.strip()
    if not wanted:
        return None
    for p in profiles:  # 1. exact
        if wanted in p.nvml_names:
            return p
    lowered = wanted.lower()
    for p in profiles:  # 2. case-insensitive
        if any(lowered == n.lower() for n in p.nvml_names):
            return p
    key = _nvml_tokens(wanted)  # 3. same set of words, order and separators ignored
    hits = [p for p in profiles if any(key == _nvml_tokens(n) for n in p.nvml_names)]
    if len(hits) == 1:
        return hits[0]
    return None


def profile_for_nvml_name(nvml_name: str, extra_dirs: DirsArg = None) -> HardwareProfile | None:
    """The profile of a device by the name NVML reports (``nvmlDeviceGetName``), or None.

    Exact match on ``nvml_names`` first, then case-insensitive, then the same words in any order
    and with any separators (``"A100 SXM4 80GB"`` finds ``NVIDIA A100-SXM4-80GB``). Words are never
    dropped, so ``NVIDIA H100 PCIe`` and ``NVIDIA H100 NVL`` do not fall back to the SXM part, and
    a MIG slice name (``... MIG 1g.10gb``) matches nothing. User profiles take precedence.
    """
    profiles = load_profiles(extra_dirs)
    ordered = [p for p in profiles.values() if not p.is_builtin] + [p for p in profiles.values() if p.is_builtin]
    return _match_nvml(nvml_name, ordered)
