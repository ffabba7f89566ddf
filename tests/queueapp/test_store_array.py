"""`store._array`: the worker's array literals refuse whatever PostgreSQL would read differently."""

from __future__ import annotations

import uuid

import pytest

from queueapp.store import _array


def test_plain_values_become_one_literal():
    ids = [uuid.uuid4(), uuid.uuid4()]
    assert _array(ids) == "{" + f"{ids[0]},{ids[1]}" + "}"
    assert _array([1, 2]) == "{1,2}" and _array([]) == "{}"


@pytest.mark.parametrize(
    "values",
    [["a,b", "c"], ["null"], ["NULL"], ["a b"], ["a\tb"], ["a\nb"], [""], ['x"y'], ["x\\y"], ["{x}"]],
)
def test_a_value_that_would_read_differently_is_refused(values):
    # "a,b" would make two ids for one attempt number, pairing every later id with the wrong one.
    with pytest.raises(ValueError):
        _array(values)
