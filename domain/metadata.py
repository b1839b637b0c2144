"""Client metadata: a small flat map of strings attached to accounts and transactions."""

from __future__ import annotations

from typing import Any

from domain.errors import InvalidMetadata
from domain.text import check_line, check_text, quoted

METADATA_KEYS_MAX = 50
METADATA_KEY_LENGTH_MAX = 64
METADATA_VALUE_LENGTH_MAX = 512


def check_metadata(metadata: Any) -> dict[str, str]:
    """Return a copy of valid metadata; reject anything but a bounded map of strings.

    Keys are one-line text, values free text (``domain.text``), checked before their
    lengths so that no error quotes a character the problem document cannot carry.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or len(metadata) > METADATA_KEYS_MAX:
        raise InvalidMetadata(f"metadata must be an object of at most {METADATA_KEYS_MAX} string values")
    for key, value in metadata.items():
        if isinstance(key, str):
            check_line(key, "metadata")
        if not isinstance(key, str) or not 0 < len(key) <= METADATA_KEY_LENGTH_MAX:
            raise InvalidMetadata(f"metadata keys are 1-{METADATA_KEY_LENGTH_MAX} characters", key=quoted(key))
        if isinstance(value, str):
            check_text(value, f"metadata.{key}")
        if not isinstance(value, str) or len(value) > METADATA_VALUE_LENGTH_MAX:
            raise InvalidMetadata(
                f"metadata values are strings of at most {METADATA_VALUE_LENGTH_MAX} characters", key=key
            )
    return dict(metadata)
