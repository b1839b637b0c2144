"""Which URLs may be webhook endpoints: no request forgery into the ledger's own network.

A tenant names the URL and the worker POSTs to it, from inside the operator's
network. So, unless the operator allows it:

- the scheme is ``https``; plain ``http`` only to a loopback host
  (``INVARIO_WEBHOOK_ALLOW_HTTP`` accepts it for any host);
- every address the host resolves to is a public one: loopback, private,
  shared (100.64/10) and other non-global ranges are refused
  (``INVARIO_WEBHOOK_ALLOW_PRIVATE_TARGETS`` accepts them, for on-premises
  receivers and tests); link-local (cloud metadata services, 169.254.169.254),
  multicast, unspecified and reserved addresses are refused always;
- no credentials in the URL (they would be stored and listed), no fragment.

The host is checked when the endpoint is registered and again before every
attempt, so a name re-pointed at a private address afterwards is refused too
(what is left is the moment between that check and the connection; a proxy
that pins the address closes it, see docs/events-out.md). Redirects are never
followed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

URL_LENGTH_MAX = 2048
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})

Resolver = Callable[[str, int], list[str]]  # host, port -> the addresses it resolves to


class WebhookTargetRefused(Exception):
    """A URL that may not be an endpoint; ``code`` is the problem document's."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class TargetPolicy:
    allow_private: bool = False
    allow_http: bool = False


@dataclass(frozen=True)
class Target:
    url: str
    host: str
    port: int


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system resolver)."""
    try:
        infos: list[Any] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise WebhookTargetRefused("webhook_target_unresolvable", f"the host {host} does not resolve: {exc}") from None
    return sorted({str(info[4][0]) for info in infos})


def parse_target(url: str, policy: TargetPolicy) -> Target:
    """The URL's parts once its form is acceptable (no resolution yet)."""
    if len(url) > URL_LENGTH_MAX:
        raise WebhookTargetRefused("webhook_url_invalid", f"the URL is longer than {URL_LENGTH_MAX} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookTargetRefused("webhook_url_invalid", f"not a URL: {exc}") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host or any(c.isspace() for c in url):
        raise WebhookTargetRefused("webhook_url_invalid", "expected an absolute https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise WebhookTargetRefused("webhook_url_invalid", "no credentials in the URL: the signature authenticates "
                                   "the ledger to the endpoint")
    if parts.fragment:
        raise WebhookTargetRefused("webhook_url_invalid", "no fragment (#...) in the URL")
    if parts.scheme == "http" and not (policy.allow_http or _is_loopback_host(host)):
        raise WebhookTargetRefused("webhook_url_insecure", "the URL must be https:// (plain http:// only to a "
                                   "loopback host, unless INVARIO_WEBHOOK_ALLOW_HTTP is set)")
    return Target(url, host, port or (443 if parts.scheme == "https" else 80))


def check_target(url: str, policy: TargetPolicy, resolver: Resolver = resolve) -> Target:
    """The target, once its form and every address its host resolves to are acceptable; raise otherwise."""
    target = parse_target(url, policy)
    addresses = [target.host.strip("[]")] if _is_literal(target.host) else resolver(target.host, target.port)
    if not addresses:
        raise WebhookTargetRefused("webhook_target_unresolvable", f"the host {target.host} resolves to nothing")
    for address in addresses:
        reason = refusal(ipaddress.ip_address(address.split("%")[0]), policy)
        if reason is not None:
            raise WebhookTargetRefused("webhook_target_forbidden", f"{target.host} is {reason} ({address}); "
                                       "webhooks go to public addresses only")
    return target


def refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address, policy: TargetPolicy) -> str | None:
    """Why ``address`` may not be delivered to, or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_link_local or address.is_multicast or address.is_unspecified or address.is_reserved:
        return "a link-local, multicast, unspecified or reserved address"
    if address.is_global or policy.allow_private:
        return None
    return "a loopback address" if address.is_loopback else "a private address"


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _is_loopback_host(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    return _is_literal(host) and ipaddress.ip_address(host.strip("[]")).is_loopback
