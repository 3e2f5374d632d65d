"""The model card's helpers that need no trained run: its metadata header told from its body, and the sources a card
would publish that are no public web pages (no network: IP literals and host names are judged as written)."""

from __future__ import annotations

import pytest

from kinject.sharing.card import front_matter, non_public_sources, non_public_warning


def _url(url: str, status: str = "ok") -> dict:
    return {"input": url, "kind": "url", "status": status}


@pytest.mark.parametrize(
    "url, why",
    [
        ("http://127.0.0.1:8000/p5.html", "a loopback address"),
        ("http://[::1]/page", "a loopback address"),
        ("http://127.1/", "a loopback address"),  # the short forms fetchers take for 127.0.0.1
        ("http://2130706433/", "a loopback address"),
        ("http://[::ffff:127.0.0.1]/", "a loopback address"),
        ("http://localhost:7860/x", "a loopback host name"),
        ("http://LocalHost./x", "a loopback host name"),
        ("http://10.1.2.3/wiki", "a private-network address"),
        ("http://172.16.0.9/", "a private-network address"),
        ("http://172.31.255.1/", "a private-network address"),
        ("https://192.168.1.5/docs", "a private-network address"),
        ("http://[fc00::5]/", "a private-network address"),
        ("http://169.254.169.254/latest/meta-data", "a link-local address"),
        ("http://[fe80::1%25eth0]/", "a link-local address"),
        ("http://0.0.0.0:8080/", "an unspecified address (this machine)"),
        ("http://100.64.0.1/", "a non-public address"),
        ("http://printer.local/status", "a local host name"),
        ("http://db.internal/", "a local host name"),
        ("http://wiki.lan/page", "a local host name"),
        ("file:///home/me/notes.html", "a file path"),
        ("/home/me/notes.html", "a file path"),
    ],
)
def test_sources_on_this_machine_or_a_private_network_are_found(url, why):
    assert non_public_sources([_url(url)]) == [(url, why)]


@pytest.mark.parametrize(
    "url",
    [
        "https://en.wikipedia.org/wiki/P5",
        "https://8.8.8.8/",
        "http://172.32.0.1/",  # just past 172.16/12
        "http://[2606:4700::1111]/",
        "https://localhost.example.com/",  # names a public host: only the name's end counts
        "https://my.lan.example.org/",
        "http://[bad/",  # no address at all (its fetch failed): nothing to warn of
    ],
)
def test_public_sources_are_not(url):
    assert non_public_sources([_url(url)]) == []


def test_a_file_source_is_shown_by_its_name_and_never_warned_of():
    rows = [{"input": "/home/me/secret/notes.txt", "kind": "file", "status": "ok"}]
    assert non_public_sources(rows) == [] and non_public_warning([]) == ""


def test_the_warning_lists_every_source_the_card_shows_used_or_not():
    found = non_public_sources(
        [_url("https://example.com/a"), _url("http://127.0.0.1:8000/a"), _url("http://10.0.0.2/b", "error")]
    )
    warning = non_public_warning(found)
    assert "2 sources" in warning and "example.com" not in warning
    assert "`http://127.0.0.1:8000/a` (a loopback address)" in warning
    assert "`http://10.0.0.2/b` (a private-network address)" in warning


def test_front_matter_is_told_from_the_body():
    head, body = front_matter("---\nlibrary_name: peft\ntags:\n- lora\n---\n\n# p5\n\ntext\n")
    assert head == "library_name: peft\ntags:\n- lora" and body == "# p5\n\ntext\n"
    assert front_matter("# no header\n") == ("", "# no header\n")
