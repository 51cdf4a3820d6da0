"""Sizing a Ray Train job: arithmetic against the cluster, and agreement with Ray's own ScalingConfig."""

from __future__ import annotations

import pytest

from scaling_planner.base.errors import InfeasibleError, InputError
from scaling_planner.hardware.profiles import get_profile
from scaling_planner.preflight.sizing import accelerator_type_for_profile, ray_accelerator_type, size_ray_job

TWO_NODES = [{"Alive": True, "Resources": {"CPU": 16.0, "GPU": 8.0, "accelerator_type:H100": 1.0}},
             {"Alive": True, "Resources": {"CPU": 16.0, "GPU": 8.0, "accelerator_type:H100": 1.0}},
             {"Alive": False, "Resources": {"CPU": 16.0, "GPU": 8.0}}]
TWO_NODES_TOTAL = {"CPU": 32.0, "GPU": 16.0, "accelerator_type:H100": 2.0}


@pytest.mark.parametrize(("name", "expected"), [
    ("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA A100-SXM4-80GB", "A100"), ("NVIDIA H100 PCIe", "H100"),
    ("NVIDIA L4", "L4"), ("Tesla V100-SXM2-32GB", "V100"), ("NVIDIA GeForce RTX 4090", "GeForce-RTX-4090"),
    (None, None)])
def test_accelerator_type_matches_rays_rule(name, expected):
    assert ray_accelerator_type(name) == expected


def test_accelerator_type_agrees_with_ray_itself():
    from ray._private.accelerators.nvidia_gpu import NvidiaGPUAcceleratorManager as M

    for name in ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB", "NVIDIA L40S", "NVIDIA GeForce RTX 4090",
                 "NVIDIA H200", "Tesla V100-SXM2-16GB"):
        assert ray_accelerator_type(name) == M._gpu_name_to_accelerator_type(name)


def test_profiles_map_to_labels():
    assert accelerator_type_for_profile(get_profile("h100-sxm")) == "H100"
    assert accelerator_type_for_profile(get_profile("a100-sxm-80gb")) == "A100"
    assert accelerator_type_for_profile(get_profile("cpu")) is None


def test_one_node_job_is_strict_pack():
    s = size_ray_job(8, cluster_resources=TWO_NODES_TOTAL, nodes=TWO_NODES, accelerator_type="H100",
                     devices_per_node=8, cpus_per_worker=2)
    assert s.placement_strategy == "STRICT_PACK"
    assert s.total_resources["GPU"] == 8 and s.total_resources["CPU"] == 16


def test_two_node_job_packs():
    s = size_ray_job(16, cluster_resources=TWO_NODES_TOTAL, nodes=TWO_NODES, accelerator_type="H100",
                     devices_per_node=8)
    assert s.placement_strategy == "PACK" and s.num_workers == 16


def test_too_many_gpus_says_by_how_much():
    with pytest.raises(InfeasibleError, match=r"needs 24 GPU .* has 16: short by 8"):
        size_ray_job(24, cluster_resources=TWO_NODES_TOTAL, nodes=TWO_NODES, accelerator_type="H100")


def test_wrong_accelerator_type():
    with pytest.raises(InfeasibleError, match="no A100 nodes .*present: H100"):
        size_ray_job(2, cluster_resources=TWO_NODES_TOTAL, accelerator_type="A100")


def test_strict_pack_beyond_one_node():
    with pytest.raises(InfeasibleError, match="largest alive node holds 8"):
        size_ray_job(12, cluster_resources=TWO_NODES_TOTAL, nodes=TWO_NODES, placement_strategy="STRICT_PACK")


def test_cpu_job():
    s = size_ray_job(2, cluster_resources={"CPU": 2.0}, nodes=[{"Alive": True, "Resources": {"CPU": 2.0}}],
                     use_gpu=False)
    assert s.scaling_config_kwargs() == {"num_workers": 2, "use_gpu": False, "resources_per_worker": {"CPU": 1.0},
                                         "placement_strategy": "STRICT_PACK"}
    with pytest.raises(InfeasibleError, match="short by 1"):
        size_ray_job(3, cluster_resources={"CPU": 2.0}, use_gpu=False)


@pytest.mark.parametrize(("kw", "field"), [({"workers": 0}, "workers"), ({"workers": 1.5}, "workers"),
                                           ({"workers": 1, "placement_strategy": "pack"}, "placement_strategy"),
                                           ({"workers": 1, "cpus_per_worker": -1}, "cpus_per_worker")])
def test_bad_input(kw, field):
    workers = kw.pop("workers")
    with pytest.raises(InputError) as exc:
        size_ray_job(workers, cluster_resources=TWO_NODES_TOTAL, **kw)
    assert exc.value.field == field


def test_kwargs_build_rays_scaling_config_with_the_same_totals():
    from ray.train import ScalingConfig

    s = size_ray_job(16, cluster_resources=TWO_NODES_TOTAL, nodes=TWO_NODES, accelerator_type="H100",
                     devices_per_node=8, cpus_per_worker=2)
    sc = ScalingConfig(**s.scaling_config_kwargs())
    assert sc.total_resources == pytest.approx(s.total_resources)
