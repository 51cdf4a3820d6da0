"""The closed-form pipeline term of ``step_time(pipeline_engine="deepspeed")`` against an event
simulation of DeepSpeed's ``TrainSchedule`` (microsoft/DeepSpeed v0.5.3,
``deepspeed/runtime/pipe/schedule.py``) with blocking rendezvous point-to-point transfers.

The model says the engine costs ``(m + p - 1)`` micro-batch times like Megatron's 1F1B, with four
blocking transfers per micro-batch on the critical path. This file re-derives that by running the
schedule's instruction stream stage by stage: a compute instruction advances its stage's clock; a send
and the peer's matching receive start when both stages have reached them and hold both stages until
the transfer ends (``p2p.send`` forces ``async_op=False``; NCCL send/recv is a rendezvous).
"""

import pytest

from scaling_planner.hardware.profiles import get_profile
from scaling_planner.simulate import efficiency as eff
from scaling_planner.simulate.architecture import get_arch
from scaling_planner.simulate.memory import RECOMPUTE_FULL
from scaling_planner.simulate.training.step import step_time

PEER = {"send_act": (1, "recv_act"), "recv_act": (-1, "send_act"),
        "send_grad": (-1, "recv_grad"), "recv_grad": (1, "send_grad")}


def train_schedule(m, p, stage):
    """Instruction stream of one stage: 2 (m + p - 1) steps; even stages run forwards on even steps,
    odd stages on odd steps; a forward step receives its activation then sends the previous step's
    input gradient, a backward step sends the previous activation then receives its gradient."""
    def valid(mb):
        return 0 <= mb < m

    cmds, prev = [], -1
    for step in range(2 * (m + p - 1)):
        if step % 2 == stage % 2:
            mb, forward = (step - stage % 2) // 2 - stage // 2, True
        elif step % 2 == 0:
            mb, forward = step // 2 - p + (stage + 1) // 2, False
        else:
            mb, forward = (step - 1) // 2 - p + 1 + stage // 2, False
        if forward:
            if valid(mb) and stage > 0:
                cmds.append(("recv_act", mb))
            if valid(prev) and stage > 0:
                cmds.append(("send_grad", prev))
        else:
            if valid(prev) and stage < p - 1:
                cmds.append(("send_act", prev))
            if valid(mb) and stage < p - 1:
                cmds.append(("recv_grad", mb))
        if valid(mb):
            cmds.append(("fwd" if forward else "bwd", mb))
        prev = mb
    return cmds


def simulate_s(m, p, fwd_s, bwd_s, act_s=0.0, grad_s=0.0):
    """Makespan of one batch; raises on a deadlock (no stage can advance)."""
    prog = [train_schedule(m, p, s) for s in range(p)]
    pc, clock = [0] * p, [0.0] * p
    cost = {"fwd": fwd_s, "bwd": bwd_s, "send_act": act_s, "send_grad": grad_s}
    remaining = sum(len(x) for x in prog)
    while remaining:
        moved = False
        for s in range(p):
            while pc[s] < len(prog[s]):
                op, mb = prog[s][pc[s]]
                if op in ("fwd", "bwd"):
                    clock[s] += cost[op]
                    pc[s] += 1
                    remaining -= 1
                    moved = True
                    continue
                step, want = PEER[op]
                q = s + step
                if pc[q] >= len(prog[q]) or prog[q][pc[q]] != (want, mb):
                    break
                send = op if op.startswith("send") else want
                clock[s] = clock[q] = max(clock[s], clock[q]) + cost[send]
                pc[s] += 1
                pc[q] += 1
                remaining -= 2
                moved = True
        if not moved:
            raise AssertionError(f"deadlock at {pc}")
    return max(clock)


@pytest.mark.parametrize("m,p", [(1, 1), (4, 2), (8, 4), (7, 5), (240, 35), (160, 35), (3, 8)])
def test_schedule_without_transfers_is_one_f_one_b(m, p):
    """No transfer cost: every stage runs m forwards and m backwards and the makespan is exactly
    (m + p - 1)(t_f + t_b), the 1F1B closed form, whatever the forward/backward split."""
    for fwd, bwd in [(1.0, 3.0), (1.0, 2.0), (1.0, 1.0)]:
        assert simulate_s(m, p, fwd, bwd) == pytest.approx((m + p - 1) * (fwd + bwd), rel=1e-12)


def test_each_stage_runs_every_micro_batch_once():
    for p in (2, 5):
        for s in range(p):
            cmds = train_schedule(6, p, s)
            assert sorted(mb for op, mb in cmds if op == "fwd") == list(range(6))
            assert sorted(mb for op, mb in cmds if op == "bwd") == list(range(6))


def _mtnlg(a100, d):
    arch = get_arch("megatron-530b")
    return step_time(arch, a100, s=2048, b=1, t=8, p=35, d=d, e=1, v=1, m=1920 // d, recompute=RECOMPUTE_FULL,
                     zero=1, sp=False, dp_overlap=0.0, flash_attention=False, pipeline_engine="deepspeed")


@pytest.mark.parametrize("d", [8, 10, 12])
def test_closed_form_matches_schedule_simulation_for_mtnlg(d):
    """MT-NLG's shapes (TP 8, PP 35, m = 240/192/160): the model's pipeline term, (m + p - 1) x
    (compute + four transfers), against the simulated schedule with the same compute and transfer
    times. They agree within 2 %: the schedule itself is not where MT-NLG's residual lies."""
    a100 = eff.DeviceRates(get_profile("a100-sxm-80gb"))
    st = _mtnlg(a100, d)
    m, p = 1920 // d, 35
    t_mb = float(st["bubble"]) / (p - 1)
    p2p_mb = float(st["pp_comm"]) / m
    act = eff.p2p_time_s(a100, 2048 * 20480 * 2.0 / 8, True)
    grad = eff.p2p_time_s(a100, 2048 * 20480 * 2.0, True)
    gather = p2p_mb - 2 * act - 2 * grad
    assert gather > 0
    compute = t_mb - p2p_mb + gather  # the all-gather after each activation receive is stage work
    simulated = simulate_s(m, p, compute / 4, 3 * compute / 4, act, grad)
    modelled = m * t_mb + float(st["bubble"])
    assert simulated == pytest.approx(modelled, rel=0.02)
