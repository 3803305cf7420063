"""Text from outside (file names, label cells) made safe to show: on a terminal and in a spreadsheet.

JSON output needs neither: json escapes control characters, and a JSON value is never run as a
formula.
"""

import unicodedata

# Characters that make a spreadsheet read a cell as a formula (OWASP's CSV injection guidance),
# tab and carriage return included: some spreadsheets drop them and read what follows.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Bidirectional overrides and isolates: they reorder what a terminal shows ("Trojan Source").
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str) -> str:
    """text with control characters (ESC, newlines, the C1 range, bidi overrides) written as
    escapes such as \\x1b, so that a name cannot move the cursor, recolour or rewrite a terminal,
    or start a new row."""
    return "".join(_escaped(char) if _control(char) else char for char in text)


def spreadsheet_cell(text: str) -> str:
    """A text cell for CSV: printable, and prefixed with a single quote when a spreadsheet would
    run it as a formula. Only for text columns: a number column keeps its numbers."""
    shown = printable(text)
    return "'" + shown if text.startswith(FORMULA_STARTS) else shown


def _control(char: str) -> bool:
    return unicodedata.category(char) == "Cc" or char in _BIDI


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
