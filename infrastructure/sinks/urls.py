"""What of a broker's URL may be shown: its host and port, never a user, password or token.

Shared by the sinks: their log lines, errors and the relay's ``last_error``
(stored in the database, shown by operators' tools) say where the broker is and
nothing more.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def host_and_port(url: str, default_port: int) -> str:
    """The part of the URL safe to show: no user, password or token."""
    try:
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port or default_port}"
    except ValueError:
        return "<unparseable url>"


def safe_error(exc: BaseException, url: str) -> str:
    """The error's text with the URL, and any credentials in it, left out."""
    text = " ".join(str(exc).split())[:300] or type(exc).__name__
    for secret in credentials(url):
        text = text.replace(secret, "***")
    return text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"


def credentials(url: str) -> list[str]:
    """The URL and what in it is secret: a password, or a user that is a token (no password)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found = [url]
    if "@" in parts.netloc:
        found.append(parts.netloc)
    found.extend(secret for secret in (parts.password, parts.username if not parts.password else None) if secret)
    return found
