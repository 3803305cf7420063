"""What a prediction returns, as plain dataclasses (no torch, so every part can import them)."""

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class AgeDistribution:
    """The model's belief about one photo or face: probabilities[i] is P(age == AGES[i])."""

    probabilities: np.ndarray
    age: int  # the argmax, the original model's answer
    expected_age: float
    age_low: int  # the first age whose cumulative probability reaches 10%
    age_high: int  # ... and 90%


@dataclass(frozen=True)
class FaceAge:
    """One detected face: its box [x, y, width, height] in the upright photo, and its ages."""

    box: tuple[int, int, int, int]
    score: float
    ages: AgeDistribution


@dataclass(frozen=True)
class PhotoAge:
    """The answer for one photo: the ages of its largest face, or of the whole photo when faces
    were not asked for or none was found, and every face found (largest first)."""

    ages: AgeDistribution
    faces: list[FaceAge] = field(default_factory=list)

    @property
    def age(self) -> int:
        return self.ages.age

    @property
    def expected_age(self) -> float:
        return self.ages.expected_age

    @property
    def age_low(self) -> int:
        return self.ages.age_low

    @property
    def age_high(self) -> int:
        return self.ages.age_high
