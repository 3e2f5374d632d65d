"""SSRF fetch guard: refused schemes and addresses, checks at connect time and on every redirect hop."""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from httpserver import NetJail, SiteServer, loopback, serve

from kinject.settings.sources import FetchConfig
from kinject.sources.fetch import fetch_sources
from kinject.sources.fetch_guard import BlockedURLError, blocked_reason, check_url, guarded_client


@pytest.fixture(autouse=True)
def jail(monkeypatch: pytest.MonkeyPatch) -> NetJail:
    return NetJail(monkeypatch)


def fetch(url: str, **config: object) -> httpx.Response:
    with guarded_client(FetchConfig(timeout_s=2, **config)) as client:
        return client.get(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "refused: scheme 'file' is not http or https"),
        ("ftp://example.com/file.txt", "refused: scheme 'ftp' is not http or https"),
        ("gopher://example.com/", "refused: scheme 'gopher' is not http or https"),
        ("http://127.0.0.1/", "127.0.0.1 is a loopback address (use --allow-private-urls to allow)"),
        ("http://10.0.0.1/admin", "10.0.0.1 is a private address"),
        ("http://192.168.1.1/", "192.168.1.1 is a private address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://[::1]:8080/", "::1 is a loopback address"),
        ("http://[fd00::1]/", "fd00::1 is a private address"),
        ("http://[fe80::1]/", "fe80::1 is a link-local address"),
        ("http://[::ffff:127.0.0.1]/", "a loopback address (127.0.0.1 inside IPv6)"),
        ("http://0.0.0.0/", "0.0.0.0 is an unspecified address"),
        ("http://224.0.0.1/", "224.0.0.1 is a multicast address"),
        ("http://100.64.0.1/", "100.64.0.1 is a non-public address"),
    ],
)
def test_refused_before_any_connection(url: str, message: str, jail: NetJail) -> None:
    with pytest.raises(BlockedURLError, match="^refused: ") as info:
        check_url(url)
    assert message in str(info.value)
    with pytest.raises(BlockedURLError) as info:
        fetch(url)
    assert message in str(info.value)
    assert jail.connects == []  # refused up front: no socket was opened


def test_public_addresses_pass_the_check() -> None:
    for url in ("https://93.184.216.34/", "http://[2606:4700:4700::1111]/", "https://example.com/page"):
        check_url(url)  # no exception, and nothing is fetched
    assert blocked_reason(ipaddress.ip_address("8.8.8.8")) is None


def test_refused_url_is_an_error_row_not_an_exception(jail: NetJail) -> None:
    rows = fetch_sources(["http://169.254.169.254/latest/meta-data/", "file:///etc/passwd"], [], FetchConfig())
    assert [r.status for r in rows] == ["error", "error"]
    assert rows[0].error == "refused: 169.254.169.254 is a link-local address (use --allow-private-urls to allow)"
    assert rows[1].error == "refused: scheme 'file' is not http or https"
    assert jail.connects == []


def test_hostname_resolving_to_loopback_is_refused(site_server: SiteServer, jail: NetJail) -> None:
    port = site_server.server_address[1]
    before = len(site_server.requests)
    with pytest.raises(BlockedURLError, match="localhost resolves to 127.0.0.1, which is a loopback address"):
        fetch(f"http://localhost:{port}/ec2-p5.html")
    # Numeric spellings that the resolver turns into 127.0.0.1 are caught the same way.
    with pytest.raises(BlockedURLError, match="resolves to 127.0.0.1"):
        fetch(f"http://2130706433:{port}/ec2-p5.html")
    assert jail.connects == []
    assert len(site_server.requests) == before


def test_opt_in_allows_loopback(site: str, site_server: SiteServer) -> None:
    port = site_server.server_address[1]
    assert fetch(f"{site}/ec2-p5.html", allow_private_urls=True).status_code == 200
    response = fetch(f"http://localhost:{port}/ec2-p5.html", allow_private_urls=True)
    assert response.status_code == 200
    assert site_server.hosts[-1] == f"localhost:{port}"  # the Host header keeps the name, not the address


def test_allowed_networks_open_only_that_range(site: str) -> None:
    assert fetch(f"{site}/ec2-p5.html", allowed_networks=["127.0.0.1/32"]).status_code == 200
    with pytest.raises(BlockedURLError, match="10.0.0.1 is a private address"):
        fetch("http://10.0.0.1/", allowed_networks=["127.0.0.1/32"])


def test_redirect_to_a_refused_address_is_refused(site: str, site2: str, jail: NetJail) -> None:
    # 127.0.0.1 plays a public host (allowed); it redirects to 127.0.0.2, which is not allowed.
    url = f"{site}/redirect-to?url={quote(site2 + '/ec2-p5.html', safe='')}"
    with pytest.raises(BlockedURLError, match="127.0.0.2 is a loopback address"):
        fetch(url, allowed_networks=["127.0.0.1/32"])
    assert "127.0.0.2" not in jail.connects

    # The same for a private address and for a file: URL behind a redirect.
    for target, message in [("http://10.0.0.1/", "10.0.0.1 is a private address"), ("file:///etc/passwd", "'file'")]:
        with pytest.raises(BlockedURLError, match=message):
            fetch(f"{site}/redirect-to?url={quote(target, safe='')}", allowed_networks=["127.0.0.1/32"])
    assert set(jail.connects) == {"127.0.0.1"}

    # With the opt-in the redirect goes through.
    response = fetch(url, allow_private_urls=True)
    assert response.status_code == 200
    assert str(response.url) == site2 + "/ec2-p5.html"
    assert response.history[0].status_code == 302


def test_redirect_to_a_name_resolving_to_a_refused_address(site: str, site2: str, jail: NetJail) -> None:
    port2 = site2.rsplit(":", 1)[1]
    jail.dns["internal.example"] = ["127.0.0.2"]
    url = f"{site}/redirect-to?url={quote(f'http://internal.example:{port2}/ec2-p5.html', safe='')}"
    with pytest.raises(BlockedURLError, match="internal.example resolves to 127.0.0.2"):
        fetch(url, allowed_networks=["127.0.0.1/32"])
    assert "127.0.0.2" not in jail.connects


def test_check_is_on_the_address_connected_to(site_server: SiteServer, jail: NetJail) -> None:
    """DNS rebinding: the name passes any early check, then resolves to a private address at connect time."""
    jail.dns["metadata.example"] = ["169.254.169.254"]
    check_url("http://metadata.example/")  # a host name: nothing to refuse before connecting
    with pytest.raises(BlockedURLError, match="metadata.example resolves to 169.254.169.254, which is a link-local"):
        fetch("http://metadata.example/latest/meta-data/")
    assert jail.connects == []

    # A rebinding server answers an allowed address first and a refused one next time: every new connection is
    # resolved and checked again, and the connection goes to the address that was checked.
    answers = iter([["127.0.0.1"], ["127.0.0.2"]])
    jail.dns["rebind.example"] = lambda: next(answers)
    url = f"http://rebind.example:{site_server.server_address[1]}/ec2-p5.html"
    assert fetch(url, allowed_networks=["127.0.0.1/32"]).status_code == 200
    assert site_server.hosts[-1].startswith("rebind.example:")
    with pytest.raises(BlockedURLError, match="rebind.example resolves to 127.0.0.2"):
        fetch(url, allowed_networks=["127.0.0.1/32"])
    assert jail.connects == ["127.0.0.1"]


def test_any_refused_address_in_an_answer_refuses_the_name(jail: NetJail) -> None:
    jail.dns["mixed.example"] = ["93.184.216.34", "10.1.2.3"]
    with pytest.raises(BlockedURLError, match="mixed.example resolves to 10.1.2.3"):
        fetch("http://mixed.example/")
    assert jail.connects == []  # nothing was tried, not even the public address


def test_environment_proxies_are_ignored(site: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy would resolve and connect on our behalf, out of the fetch guard's sight.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    assert fetch(f"{site}/ec2-p5.html", allow_private_urls=True).status_code == 200


def test_unknown_host_and_refused_connection_messages(jail: NetJail) -> None:
    with pytest.raises(httpx.ConnectError, match="unknown host 'nowhere.invalid'"):
        fetch("http://nowhere.invalid/")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before use: nothing listens there
    with pytest.raises(httpx.ConnectError, match=f"connection refused by 127.0.0.1 \\(127.0.0.1:{port}\\)"):
        fetch(f"http://127.0.0.1:{port}/", allow_private_urls=True)


def test_tls_verifies_and_sends_the_host_name_not_the_address(
    sample_dir: Path, jail: NetJail, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fetch guard connects to a checked IP, but TLS (SNI and certificate check) and Host still use the name.

    The certificate names tls.example only, so a client that verified it against 127.0.0.1 would fail.
    """
    tls = Path(__file__).parent / "data" / "tls"
    monkeypatch.setenv("SSL_CERT_FILE", str(tls / "ca.pem"))  # trust the test CA (as httpx's default does)
    jail.dns["tls.example"] = ["127.0.0.1"]
    with serve("127.0.0.1", root=sample_dir, tls=(tls / "server.pem", tls / "server.key")) as server:
        port = server.server_address[1]
        response = fetch(f"https://tls.example:{port}/ec2-p5.html", allowed_networks=["127.0.0.1/32"])
        assert response.status_code == 200
        assert server.sni == ["tls.example"]
        assert server.hosts == [f"tls.example:{port}"]
        with pytest.raises(BlockedURLError, match="tls.example resolves to 127.0.0.1"):
            fetch(f"https://tls.example:{port}/ec2-p5.html")
    assert jail.connects == ["127.0.0.1"]


def test_a_slow_header_server_is_cut_at_the_deadline(site, jail):
    started = time.monotonic()
    (row,) = fetch_sources([f"{site}/dribble-headers"], [], loopback())
    elapsed = time.monotonic() - started
    assert row.status == "error" and row.error == "timeout: page not received within 1 s"
    assert elapsed < 2.5  # the server dribbles for 30 s; each byte comes well within the 5 s read timeout


def test_the_deadline_covers_every_redirect_hop(site, jail):
    # Five hops of 0.4 s each, every one within the read timeout: together past the 1 s deadline.
    started = time.monotonic()
    (row,) = fetch_sources([f"{site}/slow-redirect?n=4"], [], loopback())
    assert row.error == "timeout: page not received within 1 s"
    assert time.monotonic() - started < 1.8
    (row,) = fetch_sources([f"{site}/slow-redirect?n=1"], [], loopback(total_timeout_s=5))
    assert row.status == "ok", row.error
