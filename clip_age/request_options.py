"""What a caller may ask for, checked the same way for the HTTP API and the clip-age command.

Each check names the option the way the caller spelled it ("max_faces" over HTTP, "--max-faces"
on the command line), says what is accepted, and is a plain sentence: no exception names.
"""

from dataclasses import dataclass

DEFAULT_MIN_FACE_SIZE = 32
DEFAULT_MAX_FACES = 10
MIN_FACE_SIZE_RANGE = (8, 4096)
MAX_FACES_RANGE = (1, 50)


class OptionError(ValueError):
    """An option's value is not accepted; the message says which option and what is."""


@dataclass(frozen=True)
class FaceRequest:
    """Which faces count: at least min_face_size pixels wide and high, the max_faces largest."""

    min_face_size: int = DEFAULT_MIN_FACE_SIZE
    max_faces: int = DEFAULT_MAX_FACES


def whole_number(name: str, value: object, low: int, high: int) -> int:
    """value as an int in low..high. JSON has one number type, so 3.0 counts as 3 (as Cog's
    schema validation also accepts it); true/false, 3.5 and "3" do not."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise OptionError(f"{name} must be a whole number from {low} to {high}; got {_shown(value)}.")
    return value


def yes_or_no(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise OptionError(f"{name} must be true or false; got {_shown(value)}.")
    return value


def face_request(min_face_size: object, max_faces: object, *, cli: bool = False) -> FaceRequest:
    """Both face options checked, named as the caller named them."""
    return FaceRequest(
        whole_number("--min-face-size" if cli else "min_face_size", min_face_size, *MIN_FACE_SIZE_RANGE),
        whole_number("--max-faces" if cli else "max_faces", max_faces, *MAX_FACES_RANGE),
    )


def _shown(value: object) -> str:
    """The value as the caller wrote it, shortened: a message must not echo a whole upload."""
    text = (
        repr(value)
        if isinstance(value, str)
        else "null"
        if value is None
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
    )
    return text if len(text) <= 40 else text[:37] + "..."
