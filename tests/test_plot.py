"""``planner plot``: valid, non-trivial PNGs of the frontier, isoFLOP curves and costs; what the figures
draw is the plan's numbers; a bad --out or a missing matplotlib is one line and exit 2."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli as run

from scaling_planner.laws.chinchilla import frontier_loss, isoflop_loss
from scaling_planner.laws.presets import get_law
from scaling_planner.planning.recommend import recommend
from scaling_planner.render import plots as report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LAW = get_law("besiroglu2024")




def _check_png(path):
    from matplotlib.image import imread

    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 20_000
    img = imread(path)
    h, w = img.shape[:2]
    assert w >= 900 and h >= 600
    rgb = img[..., :3]
    assert (rgb < 0.5).mean() > 0.005  # ink: axes, text and curves, not a blank canvas
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 50  # colours: more than a frame and text


@pytest.fixture(scope="module")
def plan():
    return recommend(LAW, budget_flops=1e22, gpus=64, inference_tokens=1e12)


def test_plot_writes_three_valid_pngs(tmp_path):
    out = tmp_path / "figs"  # created when missing
    code, stdout, err = run("plot", "--target-loss", "2.0", "--inference-tokens", "1e13", "--out", str(out))
    assert code == 0 and err == ""
    paths = stdout.split()
    assert [os.path.basename(p) for p in paths] == ["frontier.png", "isoflops.png", "costs.png"]
    for p in paths:
        assert os.path.dirname(p) == str(out)
        _check_png(p)
    assert sorted(os.listdir(out)) == ["costs.png", "frontier.png", "isoflops.png"]  # no temporary files left


def test_plot_json_is_one_object(tmp_path):
    code, stdout, err = run("plot", "--budget-flops", "1e22", "--law", "hoffmann2022", "--out", str(tmp_path),
                            "--json")
    assert code == 0 and err == ""
    doc = json.loads(stdout)
    assert list(doc) == ["files"] and len(doc["files"]) == 3
    for p in doc["files"]:
        _check_png(p)


def test_frontier_draws_the_law_band_plan_and_alternatives(plan):
    fig = report.frontier_figure(plan, LAW)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and "FLOPs" in ax.get_xlabel() and "loss" in ax.get_ylabel()
    curve = ax.lines[0]
    x, y = curve.get_data()
    assert np.allclose(y, frontier_loss(LAW, x), rtol=1e-12)
    assert x.min() < plan.compute_flops < x.max()
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() < plan.model.loss < band[:, 1].max()  # P10-P90 of the 4000 draws
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("P10–P90" in t for t in labels) and any(t.startswith("plan:") for t in labels)
    star = next(line for line in ax.lines if line.get_label().startswith("plan:"))
    assert star.get_xdata()[0] == pytest.approx(plan.compute_flops) and star.get_ydata()[0] == plan.model.loss
    for a in plan.alternatives:
        if a.name != "compute-optimal" and a.compute_flops is not None:
            mark = next(line for line in ax.lines if line.get_label().startswith(a.name))
            assert mark.get_xdata()[0] == pytest.approx(a.compute_flops) and mark.get_ydata()[0] == a.loss


def test_frontier_without_draws_has_no_band():
    p = recommend(get_law("hoffmann2022"), budget_flops=1e22, gpus=64, alternatives=False)
    ax = report.frontier_figure(p, get_law("hoffmann2022")).axes[0]
    assert len(ax.collections) == 0
    assert not any("P10" in t.get_text() for t in ax.get_legend().get_texts())


def test_isoflop_curves_minima_are_marked(plan):
    ax = report.isoflop_figure(plan, LAW).axes[0]
    curves = [line for line in ax.lines if line.get_label().startswith("C = ")]
    assert len(curves) == len(report.ISOFLOP_DECADES)
    budgets = sorted(float(c.get_label().split()[2]) for c in curves)
    assert budgets[2] == pytest.approx(plan.compute_flops, rel=0.05)  # labels carry 2 digits
    for c in curves:
        N, L = c.get_data()
        C = float(c.get_label().split()[2])
        assert np.allclose(L, isoflop_loss(LAW, N * 0 + C, N), rtol=1e-2)
        i = int(np.argmin(L))
        assert 0 < i < len(L) - 1  # the minimum is inside the drawn range
        dots = [m for m in ax.lines if m.get_marker() == "o" and m.get_color() == c.get_color()]
        assert len(dots) == 1
        assert dots[0].get_ydata()[0] <= L.min() + 1e-12  # the marked optimum is the curve's lowest point


def test_cost_bars_stack_training_and_inference(plan):
    ax = report.cost_figure(plan).axes[0]
    rows = [a for a in plan.alternatives if a.cost_usd is not None]
    train = [p for p in ax.patches if p.get_facecolor()[:3] == ax.patches[0].get_facecolor()[:3]][:len(rows)]
    assert [b.get_height() for b in train] == pytest.approx([a.cost_usd for a in rows], rel=1e-9)
    top = ax.patches[len(rows):]
    assert [b.get_height() for b in top] == pytest.approx([a.inference_cost_usd for a in rows], rel=1e-9)
    assert [b.get_y() for b in top] == pytest.approx([a.cost_usd for a in rows], rel=1e-9)
    assert "Lifetime cost" in ax.get_title() and "USD" in ax.get_ylabel()


def test_out_is_a_file(tmp_path):
    f = tmp_path / "file.png"
    f.write_text("x")
    for out in (f, f / "sub"):
        code, stdout, err = run("plot", "--target-loss", "2.0", "--out", str(out))
        assert code == 2 and stdout == ""
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "out:" in err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_not_writable(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        code, stdout, err = run("plot", "--target-loss", "2.0", "--out", str(d))
    finally:
        d.chmod(0o700)
    assert code == 2 and stdout == "" and "cannot write" in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_out_where_nothing_can_be_created():
    code, stdout, err = run("plot", "--budget-flops", "1e21", "--gpus", "8", "--out", "/proc/scaling-planner-plots")
    assert code == 2 and stdout == "" and "cannot write" in err and len(err.strip().splitlines()) == 1


def test_missing_matplotlib_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    code, stdout, err = run("plot", "--target-loss", "2.0", "--out", str(tmp_path))
    assert code == 2 and stdout == "" and len(err.strip().splitlines()) == 1
    assert "pip install 'scaling-planner[plot]'" in err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("argv", [
    [], ["--target-loss", "2.0"], ["--out"], ["--target-loss", "1.5", "--out", "X"],
    ["--gpus", "64", "--out", "X"], ["--target-loss", "2", "--calibration-dir", "d", "--out", "X"],
])
def test_plot_usage_errors(argv, tmp_path):
    argv = [str(tmp_path / "o") if a == "X" else a for a in argv]
    code, stdout, err = run("plot", *argv)
    assert code == 2 and stdout == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # a failed plan leaves no empty folder


def test_data_constrained_figures_use_the_cap():
    law = get_law("muennighoff2023-c4")
    p = recommend(law, budget_flops=1e22, unique_tokens=25e9, gpus=64)
    ax = report.frontier_figure(p, law).axes[0]
    capped = next(line for line in ax.lines if "unique tokens" in line.get_label())
    x, y = capped.get_data()
    assert np.all(y >= frontier_loss(law, x) - 1e-12)  # repetition never beats fresh data
    assert np.interp(np.log(1e22), np.log(x), y) == pytest.approx(p.model.loss, abs=2e-3)
    ax = report.isoflop_figure(p, law).axes[0]
    plan_curve = next(line for line in ax.lines if "(the plan's)" in line.get_label())
    assert plan_curve.get_ydata().min() == pytest.approx(p.model.loss, abs=1e-4)  # the star sits at its minimum
    ax = report.cost_figure(p).axes[0]
    assert any("loss 2.22" in t.get_text() for t in ax.get_xticklabels())


def test_cost_bars_use_the_serving_fleets():
    p = recommend(LAW, budget_flops=1e22, gpus=64, tokens_per_day=1e9, serving_days=100,
                  serving_options={"simulate": False})
    ax = report.cost_figure(p).axes[0]
    rows = [a for a in p.alternatives if a.cost_usd is not None]
    top = ax.patches[len(rows):]
    assert [b.get_height() for b in top] == pytest.approx([a.serving_cost_usd for a in rows], rel=1e-9)
    assert any("serving" in t.get_text() for t in ax.get_legend().get_texts())
    assert "serving 1B tokens/day for 100 days" in ax.get_title()


@pytest.fixture(scope="module")
def moe_plan():
    return recommend(LAW, target_loss=2.0, gpus=64, experts=64, top_k=2, alternatives=False)


def test_moe_figure_draws_krajewski_curves_and_the_plan(moe_plan):
    """moe.png: Krajewski 2024's dense row and compute-optimal MoE (the section's E and G) over
    compute, the plan's budget starred at the section's loss, and the dense compute for that loss."""
    from scaling_planner.laws import moe as moe_law

    moe = moe_plan.moe
    ax = report.moe_figure(moe_plan).axes[0]
    dense, mixture = ax.lines[0], ax.lines[1]
    x, y = dense.get_data()
    assert np.allclose(y, frontier_loss(moe_law.dense_law(), x), rtol=1e-12)
    assert x.min() < moe.compute_flops < x.max()
    xm, ym = mixture.get_data()
    i = int(np.argmin(abs(np.log(xm / moe.compute_flops))))
    assert xm[i] == pytest.approx(moe.compute_flops, rel=1e-9)  # the grid is centred on the plan's budget
    assert ym[i] == pytest.approx(moe.loss, rel=1e-6)
    assert np.all(ym < y)  # at E = 32, G = 2 the MoE beats dense at every budget drawn
    star = next(line for line in ax.lines if line.get_label().startswith("plan's budget"))
    assert star.get_xdata()[0] == moe.compute_flops and star.get_ydata()[0] == moe.loss
    same = next(line for line in ax.lines if line.get_label().startswith("dense needs"))
    assert same.get_xdata()[0] == moe.dense_compute_for_same_loss
    assert float(frontier_loss(moe_law.dense_law(), same.get_xdata()[0])) == pytest.approx(moe.loss, rel=1e-6)
    assert f"{moe.compute_multiplier:.2g}x" in same.get_label()
    assert "Krajewski" in ax.get_title() and "not the plan's law" in ax.get_title()


def test_plot_writes_moe_png_only_with_experts(tmp_path):
    code, stdout, err = run("plot", "--target-loss", "2.0", "--experts", "64", "--top-k", "2",
                            "--out", str(tmp_path), "--json")
    assert code == 0 and err == ""
    files = json.loads(stdout)["files"]
    assert [os.path.basename(p) for p in files] == ["frontier.png", "isoflops.png", "costs.png", "moe.png"]
    _check_png(files[-1])
