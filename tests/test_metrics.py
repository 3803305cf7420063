"""Metric math against values worked out by hand."""

import math

import pytest

from clip_age.evaluation.metrics import age_bin, bin_metrics, decade, epsilon_error, error_metrics
from clip_age.evaluation.summary import natural_order

TRUE = [10, 20, 30, 40]
PREDICTED = [12, 15, 30, 52]  # errors +2, -5, 0, +12


def test_error_metrics_of_a_small_example():
    m = error_metrics(TRUE, PREDICTED)
    assert m["mae"] == pytest.approx(19 / 4)
    assert m["rmse"] == pytest.approx(math.sqrt((4 + 25 + 0 + 144) / 4))
    assert m["median_ae"] == pytest.approx(3.5)
    assert m["cs5"] == pytest.approx(0.75)  # 2, 5 and 0 are within 5 years
    assert m["cs10"] == pytest.approx(0.75)  # 12 is not within 10
    assert m["bias"] == pytest.approx(9 / 4)
    # deviations: x -15 -5 5 15, y -15.25 -12.25 2.75 24.75
    assert m["pearson_r"] == pytest.approx(675 / math.sqrt(500 * 1002.75))


def test_perfect_predictions():
    m = error_metrics(TRUE, TRUE)
    assert (m["mae"], m["rmse"], m["bias"], m["cs5"], m["pearson_r"]) == (0, 0, 0, 1, pytest.approx(1.0))


def test_pearson_is_undefined_for_constant_predictions():
    assert error_metrics(TRUE, [30, 30, 30, 30])["pearson_r"] is None


def test_lap_epsilon_error():
    assert epsilon_error([30], [30], [5]) == 0
    assert epsilon_error([30, 35], [30, 30], [5, 5]) == pytest.approx((1 - math.exp(-0.5)) / 2)


def test_fairface_bins():
    assert age_bin(2.4) == "0-2"
    assert age_bin(2.6) == "3-9"
    assert age_bin(69) == "60-69"
    assert age_bin(75) == "more than 70"
    m = bin_metrics(["20-29", "20-29", "more than 70"], [25, 33, 60])
    assert m["bin_accuracy"] == pytest.approx(1 / 3)
    assert m["interval_mae"] == pytest.approx((0 + 4 + 10) / 3)


def test_decades():
    assert [decade(a) for a in (0, 9.9, 10, 29.5, 89, 90, 99)] == [
        "0-9",
        "0-9",
        "10-19",
        "20-29",
        "80-89",
        "90+",
        "90+",
    ]


def test_breakdowns_sort_by_their_first_number():
    bins = ["more than 70", "3-9", "20-29", "0-2", "10-19"]
    assert sorted(bins, key=natural_order) == ["0-2", "3-9", "10-19", "20-29", "more than 70"]
    assert sorted(["90+", "10-19", "0-9"], key=natural_order) == ["0-9", "10-19", "90+"]
    assert sorted(["m", "f", "2"], key=natural_order) == ["2", "f", "m"]
