"""The layout of the estimator's output rows, named: the probability of every age, then the
statistics of that distribution. Every reader takes its columns from here, so a new statistic
cannot shift another's place unnoticed."""

STATISTICS = ("age", "expected_age", "age_low", "age_high")


def probabilities(rows):
    """The probabilities of rows (a tensor or an array, one row or many)."""
    return rows[..., : -len(STATISTICS)]


def column(rows, name: str):
    """One statistic of rows, by its name in STATISTICS."""
    return rows[..., STATISTICS.index(name) - len(STATISTICS)]
