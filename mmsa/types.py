"""Small shared types: the one failure contract used from the reader to the app."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Failure:
    """A row (or molecule) that could not be processed, and why.

    ``row`` is the 0-based position in the input (data rows for CSV, records for SDF,
    lines for SMILES files); ``input`` is the text the user gave (SMILES, or an SDF title);
    ``reason`` is a human-readable explanation.
    """

    row: int
    input: str
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:  # what the CLI prints
        return f"row {self.row}: {self.reason} (input: {self.input!r})"


class MMSAError(Exception):
    """Base class of the errors this package raises on purpose (clear message, no traceback in UI)."""


class InputError(MMSAError, ValueError):
    """Bad user input: unreadable file, missing column, empty or all-invalid library, bad SMILES."""


class LibraryError(MMSAError):
    """A library on disk is missing, corrupted, locked or does not match the model."""
