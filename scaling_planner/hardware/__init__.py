"""Hardware profiles: dense peaks, memory, interconnect, power and price per accelerator."""

from .profiles import (
    DTYPES,
    ENV_VAR,
    HardwareProfile,
    Link,
    PeakTflops,
    Price,
    builtin_profiles,
    builtin_profiles_dir,
    get_profile,
    load_profile_file,
    load_profiles,
    profile_for_nvml_name,
    profile_from_mapping,
)

__all__ = [
    "DTYPES",
    "ENV_VAR",
    "HardwareProfile",
    "Link",
    "PeakTflops",
    "Price",
    "builtin_profiles",
    "builtin_profiles_dir",
    "get_profile",
    "load_profile_file",
    "load_profiles",
    "profile_for_nvml_name",
    "profile_from_mapping",
]
