"""Hardware profiles: built-ins validate and agree with data/gpu_specs.csv; user profiles are
validated with errors that name the file and the field; lookup by name and by NVML name; CLI."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import yaml

from scaling_planner.base.errors import InputError
from scaling_planner.base.units import GB, GIB
from scaling_planner.cli import main
from scaling_planner.hardware import (
    ENV_VAR,
    HardwareProfile,
    builtin_profiles,
    get_profile,
    load_profiles,
    profile_for_nvml_name,
)

# The shared reference table; the test skips the CSV comparison where no copy is reachable.
_CSV_CANDIDATES = (
    Path(__file__).resolve().parents[1] / "shared" / "data" / "gpu_specs.csv",
    Path("/work/shared/data/gpu_specs.csv"),
)
GPU_SPECS_CSV = next((p for p in _CSV_CANDIDATES if p.is_file()), None)
needs_csv = pytest.mark.skipif(GPU_SPECS_CSV is None, reason="data/gpu_specs.csv not found")

EXPECTED_NAMES = {
    "v100-sxm-32gb", "a100-sxm-40gb", "a100-sxm-80gb", "a100-pcie-40gb", "a100-pcie-80gb",
    "h100-sxm", "h100-pcie", "h100-nvl", "h200-sxm", "h800-sxm", "b200", "gb200", "l40s", "l4",
    "a10g", "rtx-4090", "mi250x", "mi300x", "mi325x", "tpu-v4", "tpu-v5e", "tpu-v5p", "gaudi2",
    "gaudi3", "cpu",
}  # fmt: skip

# Every row of gpu_specs.csv, mapped explicitly to the profile that must agree with it.
CSV_ROW_TO_PROFILE = {
    "NVIDIA V100 32GB": "v100-sxm-32gb",
    "NVIDIA A100 40GB": "a100-sxm-40gb",
    "NVIDIA A100 80GB": "a100-sxm-80gb",
    "NVIDIA A100 80GB PCIe": "a100-pcie-80gb",
    "NVIDIA H100 80GB": "h100-sxm",
    "NVIDIA H100 80GB PCIe": "h100-pcie",
    "NVIDIA H100 NVL 94GB": "h100-nvl",
    "NVIDIA H200 141GB": "h200-sxm",
    "NVIDIA H800 80GB": "h800-sxm",
    "NVIDIA B200 (HGX B200, per GPU)": "b200",
    "NVIDIA GB200 (per Blackwell GPU in GB200 NVL72)": "gb200",
    "NVIDIA L40S": "l40s",
    "NVIDIA L4": "l4",
    "NVIDIA A10G (AWS G5)": "a10g",
    "NVIDIA GeForce RTX 4090": "rtx-4090",
    "AMD Instinct MI250X": "mi250x",
    "AMD Instinct MI300X": "mi300x",
    "AMD Instinct MI325X": "mi325x",
    "Google TPU v4": "tpu-v4",
    "Google TPU v5e": "tpu-v5e",
    "Google TPU v5p": "tpu-v5p",
    "Intel Gaudi 2": "gaudi2",
    "Intel Gaudi 3": "gaudi3",
}

# Where the CSV leaves a cell empty but a profile still gives a value, the profile's sources must
# say why: an estimate (A10G), a newer vendor page (TPU v5p fp8), or a measured max power (TPU v4).
CSV_GAPS_FILLED = {
    ("a10g", "bf16"): "ESTIMATED",
    ("a10g", "fp32"): "ESTIMATED",
    ("tpu-v5p", "fp8"): "docs.cloud.google.com/tpu/docs/v5p",
    ("a10g", "tdp_w"): "ESTIMATE",
    ("tpu-v4", "tdp_w"): "MEASURED max power",
    ("tpu-v5e", "tdp_w"): "ESTIMATE",
    ("tpu-v5p", "tdp_w"): "ESTIMATE",
}

# CSV capacity column: the vendor's nominal "GB" label, which for HBM/GDDR is binary (80 GB HBM3 =
# 80 GiB of stacks), so memory_gib equals it; except TPU v4, where the CSV converted 32 GiB to 34.4 GB.
CSV_MEMORY_IN_DECIMAL_GB = {"tpu-v4"}

NUMERIC_FIELDS_NEEDING_SOURCES = (
    "peak_dense_tflops",
    "memory_gib",
    "memory_bandwidth_gb_per_s",
    "devices_per_node",
    "intra_node",
    "inter_node",
    "tdp_w",
    "achievable_matmul_fraction",
)


def _csv_rows() -> list[dict[str, str]]:
    if GPU_SPECS_CSV is None:
        return []
    with GPU_SPECS_CSV.open(newline="") as f:
        return list(csv.DictReader(f))


def _num(cell: str) -> float | None:
    cell = (cell or "").strip()
    return float(cell) if cell else None


@pytest.fixture(autouse=True)
def _no_env_profiles(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.fixture
def h100_data() -> dict:
    return yaml.safe_load(builtin_profiles()["h100-sxm"].path.read_text())


def _write(directory: Path, name: str, data: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ---- built-ins -------------------------------------------------------------------------------


def test_every_builtin_profile_validates_and_is_named_as_specified():
    profiles = builtin_profiles()
    assert set(profiles) == EXPECTED_NAMES
    for name, profile in profiles.items():
        assert isinstance(profile, HardwareProfile)
        assert profile.is_builtin
        assert profile.path is not None and profile.path.stem == name
        assert profile.peak_flops_per_s(profile.supported_dtypes[0]) > 0


def test_every_builtin_number_has_a_source():
    for name, profile in builtin_profiles().items():
        missing = [f for f in NUMERIC_FIELDS_NEEDING_SOURCES if not profile.sources.get(f, "").strip()]
        if profile.idle_w is not None and not profile.sources.get("idle_w"):
            missing.append("idle_w")
        assert not missing, f"{name}: no source for {missing}"
        assert profile.price.source.strip() and profile.price.date.strip(), name


def test_cpu_profile_is_marked_nominal():
    cpu = builtin_profiles()["cpu"]
    assert cpu.kind == "cpu" and cpu.vendor == "generic"
    for field in ("peak_dense_tflops", "memory_gib", "tdp_w"):
        assert "NOMINAL" in cpu.sources[field]
    assert "NOMINAL" in cpu.price.source


@needs_csv
def test_every_csv_row_is_mapped_to_a_profile():
    rows = {r["gpu"] for r in _csv_rows()}
    assert rows == set(CSV_ROW_TO_PROFILE)


@needs_csv
@pytest.mark.parametrize("row", _csv_rows(), ids=lambda r: CSV_ROW_TO_PROFILE.get(r["gpu"], r["gpu"]))
def test_profile_agrees_with_gpu_specs_csv(row):
    name = CSV_ROW_TO_PROFILE[row["gpu"]]
    profile = builtin_profiles()[name]
    peaks = profile.peak_dense_tflops.supported()

    for dtype, column in (
        ("bf16", "peak_bf16_dense_tflops"),
        ("fp8", "peak_fp8_dense_tflops"),
        ("fp32", "peak_fp32_tflops"),
        ("tf32", "peak_tf32_dense_tflops"),
    ):
        expected = _num(row[column])
        if expected is not None:
            assert peaks.get(dtype) == pytest.approx(expected, rel=1e-9), f"{name} {dtype}"
            assert profile.peak_flops_per_s(dtype) == pytest.approx(expected * 1e12, rel=1e-9)
        elif dtype in peaks:
            marker = CSV_GAPS_FILLED.get((name, dtype))
            assert marker, f"{name}: {dtype} is empty in the CSV but the profile gives {peaks[dtype]}"
            assert marker in profile.sources["peak_dense_tflops"], f"{name} {dtype} must say why"

    memory = _num(row["memory_gb"])
    if name in CSV_MEMORY_IN_DECIMAL_GB:
        assert profile.memory_bytes / GB == pytest.approx(memory, rel=2e-3)
    else:
        assert profile.memory_gib == pytest.approx(memory, rel=1e-9)
    assert profile.memory_bandwidth_gb_per_s == pytest.approx(_num(row["memory_bw_tbs"]) * 1000, rel=1e-9)

    tdp = _num(row["tdp_w"])
    if tdp is not None:
        assert profile.tdp_w == pytest.approx(tdp, rel=1e-9)
    else:
        marker = CSV_GAPS_FILLED[(name, "tdp_w")]
        assert marker in profile.sources["tdp_w"]


def test_peaks_are_dense_not_sparse():
    profiles = builtin_profiles()
    h100 = profiles["h100-sxm"]
    assert h100.peak_flops_per_s("bf16") == 989.5e12  # 1979 is the 2:4-sparsity figure
    assert h100.peak_flops_per_s() == 989.5e12  # bf16 is the default dtype
    assert h100.peak_flops_per_s("fp8") == 1979e12
    assert profiles["h200-sxm"].peak_flops_per_s("bf16") == 989.5e12
    assert profiles["a100-sxm-80gb"].peak_flops_per_s("bf16") == 312e12
    assert profiles["mi300x"].peak_flops_per_s("bf16") == pytest.approx(1307.4e12)
    assert profiles["l4"].peak_flops_per_s("bf16") == 121e12  # the datasheet's 242 is sparse


def test_si_accessors():
    h100 = builtin_profiles()["h100-sxm"]
    assert h100.memory_bytes == 80 * GIB
    assert h100.memory_bandwidth_bytes_per_s == 3350 * GB
    assert h100.intra_node_bandwidth_bytes_per_s == 450 * GB
    assert h100.inter_node_bandwidth_bytes_per_s == 50 * GB
    assert h100.intra_node_latency_s == pytest.approx(8e-6)
    assert h100.inter_node_latency_s == pytest.approx(10e-6)
    assert h100.price_usd_per_device_hour == h100.price.usd_per_hour > 0
    assert h100.peak_flops_per_s("bfloat16") == h100.peak_flops_per_s("BF16")


def test_unsupported_dtype_names_the_supported_ones():
    v100 = builtin_profiles()["v100-sxm-32gb"]  # Volta has no bf16
    with pytest.raises(InputError) as info:
        v100.peak_flops_per_s("bf16")
    assert info.value.field == "dtype"
    assert "fp32, fp16" in str(info.value)
    assert v100.peak_flops_per_s("fp16") == 125e12
    with pytest.raises(InputError, match="supported: "):
        builtin_profiles()["a100-sxm-80gb"].peak_flops_per_s("fp8")  # no fp8 on Ampere


def test_builtins_are_parsed_once():
    assert load_profiles()["h100-sxm"] is load_profiles()["h100-sxm"]


# ---- user profiles: validation errors name the file and the field --------------------------


def _one_line_error(tmp_path: Path, data: dict, name: str = "bad-gpu") -> InputError:
    path = _write(tmp_path / "user", name, data)
    with pytest.raises(InputError) as info:
        load_profiles([tmp_path / "user"])
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return info.value


def test_unknown_key_is_an_error_naming_file_and_field(tmp_path, h100_data):
    data = dict(h100_data, name="bad-gpu", memory_gb=80)
    error = _one_line_error(tmp_path, data)
    assert error.field == "memory_gb"
    assert "unknown key" in str(error)


def test_unknown_nested_key_is_an_error(tmp_path, h100_data):
    data = dict(h100_data, name="bad-gpu")
    data["peak_dense_tflops"] = dict(data["peak_dense_tflops"], bf16_sparse=1979.0)
    error = _one_line_error(tmp_path, data)
    assert error.field == "peak_dense_tflops.bf16_sparse"


def test_missing_field_is_an_error_naming_file_and_field(tmp_path, h100_data):
    data = dict(h100_data, name="bad-gpu")
    del data["memory_bandwidth_gb_per_s"]
    error = _one_line_error(tmp_path, data)
    assert error.field == "memory_bandwidth_gb_per_s"
    assert "missing" in str(error)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("memory_gib",), -80.0),
        (("tdp_w",), -1.0),
        (("peak_dense_tflops", "bf16"), -989.5),
        (("inter_node", "bandwidth_gb_per_s"), -50.0),
        (("price", "usd_per_hour"), -2.0),
    ],
)
def test_negative_value_is_an_error_naming_file_and_field(tmp_path, h100_data, path, value):
    data = yaml.safe_load(yaml.safe_dump(dict(h100_data, name="bad-gpu")))
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    error = _one_line_error(tmp_path, data)
    assert error.field == ".".join(path)
    assert "greater than" in str(error)


def test_name_must_match_file_and_yaml_must_parse(tmp_path, h100_data):
    error = _one_line_error(tmp_path, dict(h100_data, name="other-name"), name="bad-gpu")
    assert error.field == "name"
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "x.yaml").write_text("name: [unclosed\n")
    with pytest.raises(InputError, match=r"not valid YAML.*x\.yaml"):
        load_profiles([bad])


def test_missing_directory_is_an_error(tmp_path):
    with pytest.raises(InputError, match="not a directory"):
        load_profiles([tmp_path / "nope"])


# ---- user directories add and override -------------------------------------------------------


def test_user_directory_adds_and_overrides(tmp_path, h100_data):
    user = tmp_path / "user"
    _write(user, "my-gpu", dict(h100_data, name="my-gpu", display_name="My GPU"))
    _write(user, "h100-sxm", dict(h100_data, price=dict(h100_data["price"], usd_per_hour=1.23)))
    profiles = load_profiles([user])
    assert "my-gpu" in profiles and not profiles["my-gpu"].is_builtin
    assert profiles["h100-sxm"].price_usd_per_device_hour == 1.23
    assert not profiles["h100-sxm"].is_builtin
    assert get_profile("h100-sxm", [user]).path == user / "h100-sxm.yaml"
    # the built-in is untouched for callers that pass no directory
    assert load_profiles()["h100-sxm"].price_usd_per_device_hour == 4.916


def test_env_var_adds_profiles_and_flag_wins(tmp_path, h100_data, monkeypatch):
    env_dir, flag_dir = tmp_path / "env", tmp_path / "flag"
    _write(env_dir, "h100-sxm", dict(h100_data, price=dict(h100_data["price"], usd_per_hour=1.0)))
    _write(env_dir, "env-gpu", dict(h100_data, name="env-gpu"))
    _write(flag_dir, "h100-sxm", dict(h100_data, price=dict(h100_data["price"], usd_per_hour=2.0)))
    monkeypatch.setenv(ENV_VAR, str(env_dir))
    assert load_profiles()["h100-sxm"].price_usd_per_device_hour == 1.0
    assert "env-gpu" in load_profiles()
    assert load_profiles([flag_dir])["h100-sxm"].price_usd_per_device_hour == 2.0


# ---- lookup ----------------------------------------------------------------------------------


def test_unknown_name_suggests_the_closest():
    with pytest.raises(InputError) as info:
        get_profile("h100")
    message = str(info.value)
    assert info.value.field == "profile"
    for name in ("h100-sxm", "h100-pcie", "h100-nvl"):
        assert name in message
    with pytest.raises(InputError, match="mi300x"):
        get_profile("mi300")


def test_get_profile_is_tolerant_of_case_and_underscores():
    assert get_profile("H100_SXM").name == "h100-sxm"
    assert get_profile("NVIDIA H100 80GB HBM3").name == "h100-sxm"


@pytest.mark.parametrize(
    ("nvml_name", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA H100 NVL", "h100-nvl"),
        ("NVIDIA H200", "h200-sxm"),
        ("NVIDIA A100-SXM4-80GB", "a100-sxm-80gb"),
        ("NVIDIA A100-SXM4-40GB", "a100-sxm-40gb"),
        ("NVIDIA A100 80GB PCIe", "a100-pcie-80gb"),
        ("NVIDIA A100-PCIE-40GB", "a100-pcie-40gb"),
        ("Tesla V100-SXM2-32GB", "v100-sxm-32gb"),
        ("NVIDIA L4", "l4"),
        ("NVIDIA L40S", "l40s"),
        # tolerant: case, separators, word order
        ("nvidia a100-sxm4-80gb", "a100-sxm-80gb"),
        ("NVIDIA A100 SXM4 80 GB", "a100-sxm-80gb"),
        ("NVIDIA A100 PCIe 80GB", "a100-pcie-80gb"),
        ("  NVIDIA H100 80GB HBM3  ", "h100-sxm"),
        # never a looser match
        ("NVIDIA H200 NVL", None),
        ("NVIDIA H100", None),
        ("NVIDIA A100-SXM4-40GB MIG 1g.5gb", None),
        ("", None),
    ],
)
def test_profile_for_nvml_name(nvml_name, expected):
    profile = profile_for_nvml_name(nvml_name)
    assert (profile.name if profile else None) == expected


def test_nvml_names_are_unique_across_builtins():
    seen: dict[str, str] = {}
    for name, profile in builtin_profiles().items():
        for nvml in profile.nvml_names:
            assert nvml not in seen, f"{nvml!r} in both {seen.get(nvml)} and {name}"
            seen[nvml] = name
            assert profile_for_nvml_name(nvml).name == name


# ---- CLI -------------------------------------------------------------------------------------


def test_cli_list_table_and_default(capsys):
    assert main(["profiles", "list"]) == 0
    out = capsys.readouterr().out
    assert "h100-sxm" in out and "989.5" in out and "1,979.0" in out
    assert main(["profiles"]) == 0
    assert capsys.readouterr().out == out


def test_cli_list_json(capsys):
    assert main(["profiles", "list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["count"] == len(EXPECTED_NAMES)
    by_name = {p["name"]: p for p in data["profiles"]}
    assert by_name["h100-sxm"]["peak_dense_tflops"]["bf16"] == 989.5
    assert by_name["h100-sxm"]["origin"] == "built-in"
    assert main(["profiles", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == len(EXPECTED_NAMES)


def test_cli_show_text_and_json(capsys):
    assert main(["profiles", "show", "h100-sxm"]) == 0
    out = capsys.readouterr().out
    assert "NVIDIA H100 SXM5 80GB" in out and "gpu_specs.csv" in out and "$4.916/h" in out
    assert main(["profiles", "show", "h100-sxm", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["peak_dense_tflops"]["bf16"] == 989.5
    assert data["sources"]["tdp_w"]
    assert data["file"].endswith("h100-sxm.yaml")
    assert math.isclose(data["memory_gib"], 80.0)


def test_cli_unknown_name_exits_2_with_one_line(capsys):
    assert main(["profiles", "show", "h100"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert "\n" not in err
    assert "h100-sxm" in err and "h100-pcie" in err


def test_cli_profiles_dir_override_is_visible_in_show(tmp_path, h100_data, capsys):
    user = tmp_path / "user"
    _write(user, "h100-sxm", dict(h100_data, price=dict(h100_data["price"], usd_per_hour=1.23)))
    _write(user, "my-gpu", dict(h100_data, name="my-gpu"))
    assert main(["profiles", "show", "h100-sxm", "--json", "--profiles-dir", str(user)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["price"]["usd_per_hour"] == 1.23
    assert data["origin"] == "user (overrides built-in)"
    assert data["file"] == str(user / "h100-sxm.yaml")
    assert main(["profiles", "--profiles-dir", str(user), "show", "h100-sxm"]) == 0
    assert "overrides built-in" in capsys.readouterr().out
    assert main(["profiles", "list", "--json", "--profiles-dir", str(user)]) == 0
    names = [p["name"] for p in json.loads(capsys.readouterr().out)["profiles"]]
    assert "my-gpu" in names


def test_cli_bad_user_profile_exits_2(tmp_path, h100_data, capsys):
    _write(tmp_path / "user", "bad-gpu", dict(h100_data, name="bad-gpu", memory_gib=-1))
    assert main(["profiles", "list", "--profiles-dir", str(tmp_path / "user")]) == 2
    err = capsys.readouterr().err.strip()
    assert "memory_gib" in err and "bad-gpu.yaml" in err and "\n" not in err
