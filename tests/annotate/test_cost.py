"""What a round costs annotators: the docs' table is the code's, and ``rounds`` is used."""

from pathlib import Path

from ripu.annotate.cost import round_cost, table

REPO = Path(__file__).resolve().parents[2]


def test_the_docs_show_the_table_the_code_prints():
    assert table() in (REPO / "docs" / "annotating.md").read_text()


def test_the_rounds_set_the_regions_and_the_share():
    ten = table(rounds=10)
    c = round_cost(0.022, (1024, 2048), rounds=10)
    assert c == (513, 4617, 2097152)  # ceil(2097152 x 0.0022 / 9): half of 5 rounds' 1026
    assert "all 10 rounds" in ten
    assert f"| 513 | 4,617 | 2,097,152 | {100 * 10 * 4617 / 2097152:.2f}% |" in ten
