"""Every teamsift figure reads at a glance: one colour per level in every figure, labelled
error bars, ids on the axis when few enough, legends clear of the data (issue 22, item 10).

Each figure is drawn on tiny data with matplotlib's Agg canvas and its artists inspected."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from teamsift import data, plotting
from teamsift.bench import demo, imitation, poly
from teamsift.data.summary import summary_figure
from teamsift.data.testing import make_arrays, tiny_spec
from teamsift.value import plots
from teamsift.value.report import plot_values, values_figure

LEVELS = ("random", "medium", "expert")


def same(a, b) -> bool:
    return np.allclose(to_rgba(a)[:3], to_rgba(b)[:3])


def data_lines(ax) -> list:
    """The axes' drawn lines (not error-bar caps, which are markers only)."""
    return [line for line in ax.lines if line.get_linestyle() not in ("None", "none", "")]


def legend_entries(fig) -> dict[str, object]:
    """Legend text → its handle, over every legend of the figure."""
    out = {}
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    for legend in legends:
        for text, handle in zip(legend.get_texts(), legend.legend_handles):
            out[text.get_text()] = handle
    return out


def handle_colour(handle):
    return handle.get_facecolor() if hasattr(handle, "get_facecolor") and not hasattr(handle, "get_color") \
        else handle.get_color()


def assert_legends_clear_of_axes(fig):
    fig.canvas.draw()
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert legends, "the figure has no legend"
    for legend in legends:
        box = legend.get_window_extent()
        for ax in fig.axes:
            if ax.get_label() == "<colorbar>" or not ax.axison:
                continue
            overlap_x = min(box.x1, ax.bbox.x1) - max(box.x0, ax.bbox.x0)
            overlap_y = min(box.y1, ax.bbox.y1) - max(box.y0, ax.bbox.y0)
            assert overlap_x <= 1 or overlap_y <= 1, f"legend overlaps the axes {ax.get_title()!r}"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """12 two-step episodes of 3 agents whose levels vary (so every panel is drawn)."""
    spec = tiny_spec()
    kw = make_arrays(spec, [2] * 12)
    rng = np.random.default_rng(1)
    kw["behaviour"] = np.asarray(LEVELS)[rng.integers(0, 3, size=(12, 3))]
    kw["reward"] = rng.normal(size=24).astype(np.float32)
    return data.load_dataset(data.write_dataset(tmp_path_factory.mktemp("plots") / "ds", **kw))


def fake_dataset(behaviour):
    behaviour = np.asarray(behaviour)
    return SimpleNamespace(episodes={"behaviour": behaviour},
                           spec=SimpleNamespace(agents=tuple(f"agent_{i}" for i in range(behaviour.shape[1]))))


def values_report(levels, stderr=0.1):
    rows = [{"id": f"ind{i:02d}", "value": float(10 - i), "stderr": stderr, "true_level": level}
            for i, level in enumerate(levels)]
    return {"dataset": "/data/pop", "method": "ev", "score": "return", "table": rows}


def decomposition_result():
    probe = SimpleNamespace(updates=np.array([100, 200, 300]), slot_mean=np.arange(9.0).reshape(3, 3),
                            level_mean={"expert": np.ones(3), "random": np.zeros(3), "medium": np.full(3, 0.5)})
    return SimpleNamespace(logs={"probe": probe}, config=SimpleNamespace(mixer="monotonic", ensemble_size=5))


def dper_state(episodes: int):
    k = episodes * 3
    buffer = SimpleNamespace(episode=np.repeat(np.arange(episodes), 3), slot=np.tile(np.arange(3), episodes),
                             scaled=np.linspace(0.0, 20.0, k))
    return SimpleNamespace(buffers={"seeker": buffer})


def demo_parts():
    def part(env_id, types, good, score):
        ranking = [{"id": f"ind{i}", "value": 1.0 - i, "stderr": 0.2, "type": t} for i, t in enumerate(types)]
        return {"env_id": env_id, "population": {"types": list(types), "good_types": list(good)},
                "valuation": {"ranking": ranking, "score": score, "auc_good_vs_bad": 1.0}}

    return [part("commons", ("sustainable", "adaptive", "greedy", "erratic"), ("sustainable", "adaptive"), "v_final"),
            part("CN_3ls3l", ("nearest", "random"), ("nearest",), "return")]


# --- the palette ---------------------------------------------------------------------------------


def test_palette_gives_each_level_one_fixed_colour():
    assert [plotting.level_colour(lv) for lv in LEVELS] == [plotting.LEVEL_COLOURS[lv] for lv in LEVELS]
    assert len({plotting.level_colour(lv) for lv in LEVELS + ("unknown",)}) == 4
    assert plotting.level_colour(None) == plotting.level_colour("") == plotting.UNKNOWN_COLOUR
    # scripted behaviours: the rule's colour with or without the prefix; other rules share "scripted"
    assert plotting.level_colour("scripted:greedy") == plotting.level_colour("greedy") == \
        plotting.BEHAVIOUR_COLOURS["greedy"]
    assert plotting.level_colour("scripted:nearest") == plotting.BEHAVIOUR_COLOURS["scripted"]
    behaviours = ("sustainable", "adaptive", "greedy", "erratic", "scripted")
    every = {plotting.level_colour(lv) for lv in LEVELS + behaviours + ("unknown",)}
    assert len(every) == len(LEVELS) + len(behaviours) + 1
    # a label the palette does not know keeps its colour whatever else is in the figure
    alone = plotting.level_palette(["ckpt7"])["ckpt7"]
    assert plotting.level_palette(["expert", "ckpt7", "random"])["ckpt7"] == alone
    assert alone not in every
    many = plotting.level_palette([f"kind{i}" for i in range(len(plotting.SPARE_COLOURS))])
    assert len(set(many.values())) == len(plotting.SPARE_COLOURS)  # no two share a colour
    assert plotting.level_order(["unknown", "b", "expert", "scripted:greedy", "random", "a"]) == \
        ["random", "expert", "scripted:greedy", "a", "b", "unknown"]


def test_series_colours_never_look_like_a_quality_level():
    colours = plotting.series_colours([f"method {i}" for i in range(20)])
    levels = {to_rgba(c) for c in list(plotting.LEVEL_COLOURS.values()) + [plotting.UNKNOWN_COLOUR]}
    assert not {to_rgba(c) for c in colours.values()} & levels


# --- one colour per level in every figure --------------------------------------------------------


def test_every_figure_draws_a_level_in_the_palette_colour(dataset):
    expected = {lv: plotting.level_colour(lv) for lv in LEVELS}

    summary = summary_figure(dataset)
    levels_ax = next(ax for ax in summary.axes if ax.get_title().startswith("team return by how many"))
    assert [line.get_color() for line in data_lines(levels_ax)] == [expected[lv] for lv in LEVELS]

    level_of_row = ["expert", "medium", "random", "expert", "random"]
    values = values_figure(values_report(level_of_row))
    bars = values.axes[0].patches
    assert all(same(bar.get_facecolor(), expected[lv]) for bar, lv in zip(bars, level_of_row))

    decomposition = plots.decomposition_figure(decomposition_result(), fake_dataset([["random", "medium", "expert"]]))
    slot_ax, level_ax = decomposition.axes
    assert [line.get_color() for line in data_lines(level_ax)] == [expected[lv] for lv in LEVELS]
    # slots that always hold one level each take that level's colour
    assert [line.get_color() for line in data_lines(slot_ax)] == [expected[lv] for lv in LEVELS]

    episodes = 4
    behaviour = np.asarray([["random", "medium", "expert"], ["expert", "expert", "random"]] * (episodes // 2))
    priorities = plots.priorities_figure(dper_state(episodes), fake_dataset(behaviour))
    drawn = [patch.get_edgecolor() for patch in priorities.axes[0].patches]
    assert len(drawn) == 3 and all(same(c, expected[lv]) for c, lv in zip(drawn, LEVELS))

    # the demo's hidden types: scripted behaviours and the random level, bad ones hatched
    demo_fig = demo.values_figure(demo_parts())
    commons, cn = demo_fig.axes
    types = {"sustainable": "sustainable", "adaptive": "adaptive", "greedy": "greedy", "erratic": "erratic"}
    for bar, name in zip(commons.patches, types):
        assert same(bar.get_facecolor(), plotting.BEHAVIOUR_COLOURS[name])
        assert bool(bar.get_hatch()) == (name in ("greedy", "erratic"))
    assert same(cn.patches[0].get_facecolor(), plotting.BEHAVIOUR_COLOURS["scripted"])  # scripted:nearest
    assert same(cn.patches[1].get_facecolor(), expected["random"])
    assert any(c.get_label() == plotting.CI95 for c in cn.containers)

    # and every legend names the level with the same colour
    for fig, levels in [(summary, LEVELS), (values, LEVELS), (decomposition, LEVELS), (priorities, LEVELS),
                        (demo_fig, ("random",))]:
        entries = legend_entries(fig)
        for level in levels:
            key = next(text for text in entries if text.split(" ")[0] == level)
            assert same(handle_colour(entries[key]), expected[level]), (fig, level)


def test_slots_with_mixed_levels_do_not_borrow_a_level_colour():
    mixed = fake_dataset([["random", "medium", "expert"], ["expert", "random", "medium"]])
    fig = plots.decomposition_figure(decomposition_result(), mixed)
    level_colours = {to_rgba(c) for c in plotting.LEVEL_COLOURS.values()}
    assert not {to_rgba(line.get_color()) for line in fig.axes[0].lines} & level_colours


def test_values_without_truth_use_one_neutral_colour():
    fig = values_figure(values_report([None] * 4))
    assert all(same(bar.get_facecolor(), plotting.NEUTRAL) for bar in fig.axes[0].patches)
    assert "value (no true levels)" in legend_entries(fig)


def test_a_large_population_is_drawn_as_points_and_a_band_with_every_level_colour():
    from teamsift.value.report import MAX_BARS

    levels = (["expert", "random", None] * MAX_BARS)[:MAX_BARS + 1]
    report = values_report(levels)
    report["table"][-1]["value"] = None  # undefined values are counted, not drawn
    ax = values_figure(report).axes[0]
    assert not ax.patches  # no bar per individual
    [points] = ax.collections[1:]
    assert len(points.get_offsets()) == MAX_BARS
    colours = {to_rgba(tuple(c)) for c in points.get_facecolors()}
    assert colours == {to_rgba(plotting.level_colour(lv)) for lv in ("expert", "random", plotting.UNKNOWN)}
    assert plotting.CI95 in legend_entries(ax.figure)
    assert [t.get_text() for t in ax.get_xticklabels()][:3] == ["1", "250", "500"]


def test_a_method_keeps_its_colour_whatever_else_ran():
    def row(methods):
        diag = {"disc_loss": [1.0, 0.5], "generator_reward_var": [0.1, 0.2], "env_steps": [10, 20],
                "final_reward_histogram": [1, 2], "histogram_edges": [0.0, 1.0, 2.0]}
        return {"env": "mpe_spread", "cells": {m: {"diagnostics": diag} for m in methods}}

    both = legend_entries(imitation.diagnostics_figure(row(["MAGAIL", "MILD²"])))
    alone = legend_entries(imitation.diagnostics_figure(row(["MAGAIL"])))
    assert same(both["MAGAIL"].get_color(), alone["MAGAIL"].get_color())
    assert not same(both["MAGAIL"].get_color(), both["MILD²"].get_color())
    assert imitation.diagnostics_figure({"env": "x", "cells": {"BC": {}}}) is None


# --- error bars, ids, legends --------------------------------------------------------------------


def test_intervals_are_drawn_and_labelled(dataset):
    summary = summary_figure(dataset)
    for title in ("team return by how many", "team return per composition"):
        ax = next(ax for ax in summary.axes if ax.get_title().startswith(title))
        assert any(c.get_label() == plotting.CI95 for c in ax.containers), title
    assert plotting.CI95 in legend_entries(summary)

    report = values_report(["expert", "random", "medium"])
    report["table"][1]["stderr"] = float("inf")  # one sample: no interval
    fig = values_figure(report)
    (bars,) = [c for c in fig.axes[0].containers if c.get_label() == plotting.CI95]
    segments = bars.lines[2][0].get_segments()
    assert len(segments) == 2
    np.testing.assert_allclose(sorted(abs(s[1, 1] - s[0, 1]) for s in segments), [2 * 1.96 * 0.1] * 2)
    entries = legend_entries(fig)
    assert plotting.CI95 in entries and any("without" in text for text in entries)


def test_ids_are_written_when_few_enough():
    few = values_figure(values_report(["expert"] * 5)).axes[0]
    assert [t.get_text() for t in few.get_xticklabels()] == [f"ind{i:02d}" for i in range(5)]
    count = plotting.MAX_ID_LABELS + 1
    many = values_figure(values_report(["expert"] * count)).axes[0]
    ranks = {int(tick): label.get_text() for tick, label in zip(many.get_xticks(), many.get_xticklabels())}
    assert ranks == {0: "1", 4: "5", 9: "10", 14: "15", 19: "20", 24: "25", 29: "30", 34: "35", 39: "40"}
    assert many.get_xlabel().startswith(f"rank of {count} individuals (best first)")


def test_legends_are_outside_the_axes(dataset):
    behaviour = np.asarray([["random", "medium", "expert"], ["expert", "expert", "random"]] * 2)
    diag = {"disc_loss": [1.0, 0.5], "generator_reward_var": [0.1, 0.2], "env_steps": [10, 20],
            "final_reward_histogram": [1, 2], "histogram_edges": [0.0, 1.0, 2.0]}
    trajectory = np.stack([np.linspace([-0.5, 0.5], [0.6, 0.6], 5)] * 2)
    figures = [
        summary_figure(dataset),
        values_figure(values_report(["expert", "random", "medium", None])),
        plots.decomposition_figure(decomposition_result(), fake_dataset([["random", "medium", "expert"]])),
        plots.priorities_figure(dper_state(4), fake_dataset(behaviour)),
        demo.values_figure(demo_parts()),
        imitation.diagnostics_figure({"env": "mpe_spread", "cells": {"MILD²": {"diagnostics": diag}}}),
        poly.trajectories_figure([{"env_id": "poly_twin_peaks", "centre": (0.5, 0.5), "spread": 0.1,
                                   "method": m, "trajectory": trajectory, "final_reward": [0.5, 0.55]}
                                  for m in ("MADDPG", "MADDPG+PJAP")]),
    ]
    for fig in figures:
        assert_legends_clear_of_axes(fig)
        assert all(ax.get_xlabel() for ax in fig.axes if ax.axison and ax.get_label() != "<colorbar>"
                   and ax.get_subplotspec().is_last_row()), "an axis without a label"


def test_plots_are_written_whole(dataset, tmp_path):
    """plot_* functions save a PNG and leave no temporary file behind."""
    paths = [data.plot_summary(dataset, tmp_path / "summary.png"), *plot_values(values_report(LEVELS), tmp_path)]
    assert [p.name for p in paths] == ["summary.png", "values.png"]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.png", "values.png"]
    assert plot_values({"table": []}, tmp_path / "none") == []


def test_compositions_abbreviate_as_the_figures_do():
    from teamsift.data.summary import behaviour_abbreviations

    # "scripted:" is dropped first, so four scripted types keep their own letters
    assert behaviour_abbreviations(["scripted:adaptive", "scripted:greedy", "scripted:sustainable", "random"]) == {
        "scripted:adaptive": "a", "scripted:greedy": "g", "scripted:sustainable": "s", "random": "r"}
    # an ambiguous first letter keeps the name
    assert behaviour_abbreviations(["scripted:nearest", "scripted:noisy", "expert"]) == {
        "scripted:nearest": "nearest", "scripted:noisy": "noisy", "expert": "e"}
