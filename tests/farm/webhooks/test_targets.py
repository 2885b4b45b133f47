"""The allowlist: schemes, private addresses, host patterns, and the check after DNS."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from farm.settings import WebhookSettings
from farm.webhooks.targets import TargetRefused, check_url, resolve

DEFAULT = WebhookSettings()
PRIVATE_OK = WebhookSettings(allow_private=True)


def refusal(url: str, settings: WebhookSettings = DEFAULT) -> str | None:
    try:
        check_url(url, settings)
    except TargetRefused as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8000/hook", "http://localhost/hook", "http://api.localhost/", "http://[::1]/",
    "http://10.0.0.7/", "http://192.168.1.2/", "http://172.16.0.1/", "http://169.254.169.254/latest/meta-data",
    "http://[fe80::1]/", "http://[::ffff:127.0.0.1]/", "http://100.64.0.1/",
    # spellings of 127.0.0.1 that resolvers accept
    "http://127.1/", "http://2130706433/", "http://0x7f.0.0.1/",
])
def test_loopback_and_private_are_refused_by_default_and_allowed_when_configured(url: str) -> None:
    assert refusal(url) == "loopback/private addresses are not allowed"
    assert refusal(url, PRIVATE_OK) is None


@pytest.mark.parametrize(("url", "reason"), [
    ("ftp://example.com/x", "only http and https URLs are allowed"),
    ("file:///etc/passwd", "only http and https URLs are allowed"),
    ("example.com/hook", "only http and https URLs are allowed"),
    ("http://user:pw@example.com/", "credentials in the URL are not allowed"),
    ("http:///hook", "the URL has no host"),
    ("http://example.com:99999/", "the port must be between 1 and 65535"),
    ("http://exa mple.com/", "not a valid host name"),
    ("http://0.0.0.0/", "multicast and unspecified addresses are not allowed"),
    ("http://224.0.0.1/", "multicast and unspecified addresses are not allowed"),
])
def test_malformed_or_dangerous_urls_are_refused_even_with_allow_private(url: str, reason: str) -> None:
    assert (refusal(url, PRIVATE_OK) or "").startswith(reason)


def test_public_hosts_pass_when_no_allowlist_is_set() -> None:
    for url in ("https://hooks.example.com/farm", "http://8.8.8.8/", "https://bücher.de/x", "https://example.com./"):
        assert refusal(url) is None, url


def test_allowed_hosts_patterns() -> None:
    settings = WebhookSettings(allowed_hosts=["hooks.example.com", "*.studio.test"])
    assert refusal("https://hooks.example.com/x", settings) is None
    assert refusal("https://HOOKS.example.com./x", settings) is None
    assert refusal("https://a.studio.test/x", settings) is None
    assert refusal("https://deep.a.studio.test/x", settings) is None
    assert refusal("https://studio.test/x", settings) == "host studio.test is not in the allowed hosts"
    assert refusal("https://evilstudio.test/x", settings) == "host evilstudio.test is not in the allowed hosts"
    assert refusal("https://other.example.com/x", settings) == "host other.example.com is not in the allowed hosts"
    # allowed by name is not allowed by address: both rules apply
    assert refusal("http://127.0.0.1/", WebhookSettings(allowed_hosts=["127.0.0.1"])) == "loopback/private addresses are not allowed"


def test_allowed_hosts_read_from_the_environment_forms() -> None:
    for raw in ('["a.example.com", "*.b.test"]', "a.example.com, *.b.test", "['a.example.com', '*.b.test']"):
        assert WebhookSettings(allowed_hosts=raw).allowed_hosts == ["a.example.com", "*.b.test"]
    with pytest.raises(ValueError, match="not a host name"):
        WebhookSettings(allowed_hosts=["http://x.com/"])


def _name_resolving_to_a_private_address() -> str:
    """A host name that passes the written check but resolves to a non-public address."""
    for name in (socket.gethostname(), "ip6-localhost", "ip6-loopback"):
        try:
            infos = socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
        except OSError:
            continue
        if refusal(f"http://{name}/") is None and any(not ipaddress.ip_address(i[4][0].split("%")[0]).is_global for i in infos):
            return name
    pytest.skip("no host name here resolves to a private address")


def test_after_resolution_every_address_is_checked_and_the_request_is_pinned_to_it() -> None:
    name = _name_resolving_to_a_private_address()
    with pytest.raises(TargetRefused, match=f"^{name} resolves to .*: loopback/private addresses are not allowed$"):
        resolve(f"http://{name}:8080/hook", DEFAULT)
    target = resolve(f"http://{name}:8080/hook?x=1", PRIVATE_OK)
    assert ipaddress.ip_address(target.url.host)  # connects to the checked address, not the name
    assert target.url.port == 8080 and target.url.path == "/hook" and target.url.query == b"x=1"
    assert target.host_header == f"{name}:8080" and target.extensions == {}


def test_https_keeps_the_name_for_tls() -> None:
    target = resolve("https://127.0.0.1:8443/hook", PRIVATE_OK)
    assert target.extensions == {"sni_hostname": "127.0.0.1"} and target.host_header == "127.0.0.1:8443"
