"""`teamsift demo`: print what `teamsift.bench.demo.run_demo` found (see that module)."""

from __future__ import annotations


def render(report: dict) -> None:
    """One table per part: the valuation's score, then every learner's seeds."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for part in report["parts"]:
        valuation, sizes = part["valuation"], part["sizes"]
        above = valuation["above_zero"]
        console.print(f"\n[bold]{part['env_id']}[/]: {part['episodes']} episodes, {sizes['population']} individuals "
                      f"({', '.join(part['population']['types'])}; good: "
                      f"{', '.join(part['population']['good_types'])}), team score {part['score']} "
                      f"(dataset mean {part['dataset_score_mean']:.1f})", highlight=False)
        console.print(f"Exchange Values from the team score alone: AUC good vs bad {valuation['auc_good_vs_bad']:.2f}; "
                      f"{valuation['good_in_top']} of the top {valuation['good']} are good; EV > 0 for "
                      f"{above['good']}/{valuation['good']} good and {above['bad']}/{valuation['bad']} bad",
                      highlight=False)
        console.print("ranking: " + " ".join(f"{r['id']}:{r['type']}" for r in valuation["ranking"]), highlight=False)
        table = Table(title=f"{part['env_id']}: mean ± std over {sizes['seeds']} seeds, {sizes['eval_episodes']} "
                            f"episodes each", caption="kept: decisions trained on; good: their share from good types")
        table.add_column("learner", no_wrap=True)
        table.add_column("imitates", no_wrap=True)
        table.add_column("kept", justify="right", no_wrap=True)
        table.add_column("good", justify="right", no_wrap=True)
        table.add_column(part["score"], justify="right", no_wrap=True)
        if part["score"] != "return":
            table.add_column("return", justify="right", no_wrap=True)
        for row in part["rows"]:
            cells = [row["name"], row["selects"], f"{row['kept_fraction']:.0%}", f"{row['good_share']:.0%}",
                     f"{row['score']['mean']:.1f} ± {row['score']['std']:.1f}"]
            if part["score"] != "return":
                cells.append(f"{row['return']['mean']:.1f} ± {row['return']['std']:.1f}")
            table.add_row(*cells)
        console.print(table)
    console.print(f"\nvalues plot {report['plot']}, results {report['results']} ({report['seconds']:.0f} s)",
                  highlight=False)
