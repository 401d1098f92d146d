from __future__ import annotations

import pytest

from arlon.errors import ConfigError
from arlon.injection.placement import parse_layers


@pytest.mark.parametrize(
    ("spec", "depth", "expected"),
    [
        ("first:3", 28, (0, 1, 2)),
        ("first:14", 28, tuple(range(14))),
        ("first:28", 28, tuple(range(28))),
        ("last:14", 28, tuple(range(14, 28))),
        ("last:1", 28, (27,)),
        ("last:4", 4, (0, 1, 2, 3)),
        ("0", 28, (0,)),
        ("27", 28, (27,)),
        ("7,0,3", 28, (0, 3, 7)),
        (" 1, 2 ,5 ", 8, (1, 2, 5)),
        ("none", 28, ()),
        (" none ", 4, ()),
    ],
)
def test_parse_layers_accepts_each_form(spec, depth, expected):
    assert parse_layers(spec, depth) == expected


def test_first_and_last_are_disjoint_halves():
    first, last = parse_layers("first:14", 28), parse_layers("last:14", 28)
    assert set(first).isdisjoint(last)
    assert set(first) | set(last) == set(range(28))


@pytest.mark.parametrize(
    ("spec", "depth", "message"),
    [
        ("first:0", 28, "N must be between 1 and the backbone depth 28, got 0"),
        ("first:29", 28, "N must be between 1 and the backbone depth 28, got 29"),
        ("last:5", 4, "N must be between 1 and the backbone depth 4, got 5"),
        ("first:", 28, "cannot read 'first:'"),
        ("first:x", 28, "cannot read 'first:x'"),
        ("first:-1", 28, "cannot read 'first:-1'"),
        ("middle:3", 28, "cannot read 'middle:3'"),
        ("1,,2", 28, "cannot read '1,,2'"),
        ("1,2,", 28, "cannot read '1,2,'"),
        ("-1", 28, "cannot read '-1'"),
        ("+3", 28, "cannot read '+3'"),
        ("", 28, "cannot read ''"),
        ("None", 28, "cannot read 'None'"),
        ("1,2,1", 28, "pair index 1 is listed more than once"),
        ("3,28", 28, "pair index 28 is outside 0..27 (the backbone has 28 block pairs)"),
    ],
)
def test_parse_layers_rejects_bad_specs_with_a_clear_message(spec, depth, message):
    with pytest.raises(ConfigError) as info:
        parse_layers(spec, depth)
    assert message in str(info.value)
    assert "injection.layers" in str(info.value)


def test_syntax_errors_list_the_accepted_forms():
    with pytest.raises(ConfigError, match='"first:N", "last:N"'):
        parse_layers("top:3", 28)


def test_non_string_spec_is_a_config_error():
    with pytest.raises(ConfigError, match="expected a string"):
        parse_layers(14, 28)  # type: ignore[arg-type]

