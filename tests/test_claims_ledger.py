"""The claims ledger (docs/claims.md) is consistent with itself: its summary table counts
the verdicts of the rows below it, each paper's rows are numbered without gaps, and every
results file a row links to is committed. An audit of committed docs, so it runs in
`make bench`, not in CI."""

import re
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench

ROOT = Path(__file__).resolve().parents[1]
LEDGER = ROOT / "docs" / "claims.md"
PAPERS = {"S": "SIT", "E": "Select to Perfect (EV, EV-Clustering, EV2BC)", "M": "MILD² (Big Picture Thinking)",
          "P": "PJAP (Coordination Failure)"}
VERDICTS = ("holds", "partly", "does not hold", "not tested")
ROW = re.compile(r"^\| ([SEMP])(\d+) \|")


def verdict(row: str) -> str:
    """The verdict cell's leading bold word(s): the last cell of the row."""
    cell = row.rstrip().rstrip("|").rsplit("|", 1)[-1].strip()
    match = re.match(r"\*\*(holds|partly|does not hold|not tested)\b", cell)
    assert match, f"{LEDGER.name}: a row's verdict cell must start with one of {VERDICTS} in bold, got {cell[:80]!r}"
    return match.group(1)


def rows() -> dict[str, list[tuple[int, str]]]:
    found: dict[str, list[tuple[int, str]]] = {key: [] for key in PAPERS}
    for line in LEDGER.read_text().splitlines():
        match = ROW.match(line)
        if match:
            found[match.group(1)].append((int(match.group(2)), verdict(line)))
    return found


def summary() -> dict[str, list[int]]:
    """The counts table at the top: paper → [claims, holds, partly, does not hold, not tested]."""
    table = {}
    for line in LEDGER.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[1].strip("*").isdigit():
            name = re.sub(r"\[(.*?)\]\(.*?\)", r"\1", cells[0]).strip("*")
            table[name] = [int(cell.strip("*")) for cell in cells[1:]]
    return table


def test_each_papers_rows_are_numbered_without_gaps():
    for key, found in rows().items():
        numbers = [number for number, _ in found]
        assert numbers == list(range(1, len(numbers) + 1)), (key, numbers)


def test_the_summary_table_counts_the_rows_verdicts():
    table, found = summary(), rows()
    totals = Counter()
    for key, name in PAPERS.items():
        counts = Counter(v for _, v in found[key])
        expected = [len(found[key])] + [counts[v] for v in VERDICTS]
        assert table[name] == expected, (name, table[name], expected)
        totals.update(dict(zip(("claims",) + VERDICTS, expected)))
    assert table["all"] == [totals["claims"]] + [totals[v] for v in VERDICTS]
    prose = re.search(r"Of the \*\*(\d+) claims\*\* listed below, \*\*(\d+) hold\*\* here, \*\*(\d+) hold\s+partly\*\*, "
                      r"\*\*(\d+) do not hold\*\* and \*\*(\d+) are not tested\*\*", LEDGER.read_text())
    assert prose, "the sentence above the counts table"
    assert [int(g) for g in prose.groups()] == table["all"]


def test_every_linked_results_file_is_committed():
    links = set(re.findall(r"\]\(\.\./(benchmarks/results/[^)#]+)", LEDGER.read_text()))
    assert links
    missing = sorted(link for link in links if not (ROOT / link).is_file())
    assert not missing, missing


@pytest.mark.parametrize("page", ["README.md", "docs/index.md"])
def test_the_front_pages_quote_the_ledgers_counts(page):
    text = " ".join((ROOT / page).read_text().split())
    quoted = re.search(r"of (\d+), (\d+) hold, (\d+) hold partly, (\d+) do not hold and (\d+) are not tested", text)
    assert quoted, f"{page}: the status paragraph's counts of the claims ledger"
    assert [int(g) for g in quoted.groups()] == summary()["all"], page
