"""What `prepare` reads and how it fetches it (stage: sources), declared as the other stages are
(``kinject.settings.stages``)."""

from __future__ import annotations

from dataclasses import dataclass

from .declare import check_networks, require, setting

DEFAULT_USER_AGENT = "kinject/0.1 (knowledge-injection corpus builder; +https://github.com/kinject/kinject)"


@dataclass
class InputsConfig:
    """What `prepare` reads (stage: sources)."""

    _argument_group_name = "inputs"

    urls: list[str] = setting([], "Web pages to fetch (http or https).", aliases=["--url"], metavar="URL")
    files: list[str] = setting([], "Local files: .html, .htm, .txt, .md, .pdf.", aliases=["--file"], metavar="PATH")

    def __post_init__(self) -> None:
        self.urls = [u.strip() for u in self.urls if u and u.strip()]
        self.files = [f.strip() for f in self.files if f and f.strip()]


@dataclass
class FetchConfig:
    """How sources are fetched (stage: sources)."""

    _argument_group_name = "fetch"

    timeout_s: float = setting(20.0, "Seconds to wait for connect and for each read before giving up on a URL.")
    total_timeout_s: float = setting(
        60.0, "Most seconds for one page's whole download (a server trickling bytes is cut)."
    )
    max_bytes: int = setting(5_000_000, "Largest page body read, in bytes; a longer page is refused, not truncated.")
    max_file_bytes: int = setting(
        5_000_000, "Largest local or uploaded file read, in bytes; a bigger file is refused before it is read."
    )
    max_concurrency: int = setting(4, "Requests in flight at once.")
    max_redirects: int = setting(5, "Redirects followed per URL.")
    user_agent: str = setting(DEFAULT_USER_AGENT, "User-Agent header sent with every request.")
    allow_private_urls: bool = setting(
        False,
        "Allow URLs that resolve to loopback, private, link-local, multicast or reserved addresses "
        "(off by default: the server fetches what users paste, so internal addresses are refused). In the app "
        "this is the operator's launch setting, never a form field.",
    )
    allowed_networks: list[str] = setting(
        [],
        "Address ranges (CIDR) allowed even when private, e.g. an intranet wiki at 10.1.2.0/24 (in the app: the "
        "operator's launch setting).",
        metavar="CIDR",
    )

    def __post_init__(self) -> None:
        require(self.timeout_s > 0, "timeout_s", f"must be > 0, got {self.timeout_s}")
        require(self.total_timeout_s > 0, "total_timeout_s", f"must be > 0, got {self.total_timeout_s}")
        require(self.max_bytes > 0, "max_bytes", f"must be > 0, got {self.max_bytes}")
        require(self.max_file_bytes > 0, "max_file_bytes", f"must be > 0, got {self.max_file_bytes}")
        require(self.max_concurrency >= 1, "max_concurrency", f"must be >= 1, got {self.max_concurrency}")
        require(0 <= self.max_redirects <= 20, "max_redirects", f"must be within 0..20, got {self.max_redirects}")
        check_networks("allowed_networks", self.allowed_networks)
