import pytest

from napari_sam_peft.core.peft.blocks import InvalidBlocksError, format_blocks, parse_blocks


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("all", tuple(range(12))),
        ("late", (6, 7, 8, 9, 10, 11)),
        ("last 6", (6, 7, 8, 9, 10, 11)),
        ("first 2", (0, 1)),
        ("11", (11,)),
        ("-1", (11,)),
        ("6-11", (6, 7, 8, 9, 10, 11)),
        ("0, 3, 5-6", (0, 3, 5, 6)),
        ([11, 10], (10, 11)),
    ],
)
def test_block_selections_parse(spec, expected):
    assert parse_blocks(spec, 12) == expected


@pytest.mark.parametrize("spec", ["12", "last 13", "late blocks", "5-2", "x", "0-40"])
def test_bad_selections_say_what_is_valid(spec):
    with pytest.raises(InvalidBlocksError, match="0-11|between 1 and 12|backwards"):
        parse_blocks(spec, 12)


def test_format_is_compact():
    assert format_blocks(range(12), 12) == "all"
    assert format_blocks([6, 7, 8, 11]) == "6-8,11"
