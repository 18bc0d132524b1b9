"""Where extraction's model workers go (extract.vision.runner.plan_actors), from `ray.nodes()` rows, no Ray."""

from __future__ import annotations

from extract.vision.runner import plan_actors


def node(i: int, cpus: int, gpus: int = 0, alive: bool = True) -> dict:
    res = {"CPU": float(cpus), **({"GPU": float(gpus)} if gpus else {})}
    return {"NodeID": f"n{i}", "Alive": alive, "Resources": res}


def test_one_worker_per_gpu_across_nodes():
    plans = plan_actors([node(0, 16, 4), node(1, 16, 2)], workers=0, device="auto")
    assert len(plans) == 6 and all(p.device == "cuda" and p.num_gpus == 1 for p in plans)
    assert sum(p.num_cpus for p in plans) <= 32 - 2  # a CPU per node left for decoding
    assert len(plan_actors([node(0, 16, 4)], workers=2, device="auto")) == 2
    assert len(plan_actors([node(0, 16, 4)], workers=9, device="auto")) == 4  # never more than the GPUs


def test_without_gpus_one_worker_per_node_pinned_computing_with_all_its_cpus():
    plans = plan_actors([node(0, 8), node(1, 4), node(2, 2, alive=False)], workers=0, device="auto")
    assert [(p.node, p.threads, p.device) for p in plans] == [("n0", 8, "cpu"), ("n1", 4, "cpu")]
    assert all(p.num_cpus == 1.0 for p in plans)


def test_this_machine_keeps_its_single_worker_and_device_cpu_ignores_gpus():
    (one,) = plan_actors([node(0, 2)], workers=0, device="auto")
    assert (one.threads, one.num_cpus, one.num_gpus) == (2, 1.0, 0)  # both cores; one left unreserved
    plans = plan_actors([node(0, 8, 2)], workers=0, device="cpu")
    assert [p.device for p in plans] == ["cpu"]
    many = plan_actors([node(0, 9)], workers=4, device="auto")
    assert len(many) == 4 and sum(p.num_cpus for p in many) <= 8 and all(p.threads == 2 for p in many)
