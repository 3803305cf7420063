"""The answer: its dataclasses, and how the command writes it (JSON lines, CSV, drawings)."""
