"""Where webhooks may be sent: an http(s) address on the public internet. Loopback, private, link-local (such as the
cloud metadata address 169.254.169.254), multicast and reserved addresses are refused unless
KEFU_WEBHOOK_PRIVATE_TARGETS allows them (a marketplace's backend on the same private network). The address is
checked when the webhook is added and again before every delivery, against what its name resolves to then, and the
delivery goes to that checked address (a name that changes to a private address in between gets nothing).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

import httpx

from app.chat.errors import InvalidInput
from app.i18n import gettext as _

MAX_URL_LENGTH = 1000


def parse_target(url: str) -> SplitResult:
    """The parts of a webhook URL, or InvalidInput ("url: …"): http or https, a host, a valid port, no user name or
    password (they would show in `kefu webhook list`), no spaces or control characters."""
    if len(url) > MAX_URL_LENGTH or any(c.isspace() or not c.isprintable() for c in url):
        text = _("url: 地址不能含空白或控制字符，且最多 {n} 个字符。").format(n=MAX_URL_LENGTH)
        raise InvalidInput(text, field="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise InvalidInput(_("url: 不是有效的地址（{error}）。").format(error=error), field="url") from error
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(_("url: 须是 http:// 或 https:// 开头的地址。"), field="url")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(_("url: 地址里不能有用户名或密码。"), field="url")
    if port == 0:
        raise InvalidInput(_("url: 端口不能是 0。"), field="url")
    return parts


def is_public(address: str) -> bool:
    """Whether an IP address is a public, unicast one (not loopback, private, link-local, reserved or multicast)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return ip.is_global and not ip.is_multicast


def check_addresses(host: str, addresses: list[str], private_allowed: bool) -> None:
    """InvalidInput when `host` resolved to nothing, or to an address that is not public while that is not allowed."""
    if not addresses:
        raise InvalidInput(_("url: 无法解析主机名 {host}。").format(host=host), field="url")
    if private_allowed:
        return
    for address in addresses:
        if not is_public(address):
            raise InvalidInput(_(
                "url: {host} 指向内网或本机地址 {address}，不能作为 webhook 地址"
                "（如确需发往内网，请设置 KEFU_WEBHOOK_PRIVATE_TARGETS=1）。").format(host=host, address=address))


def resolve(host: str, port: int) -> list[str]:
    """The IP addresses `host` resolves to now (an IP address: itself); [] when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_target(url: str, private_allowed: bool) -> None:
    """A webhook URL that may be added: parse_target's rules, and (unless private addresses are allowed) a host
    that resolves now, to public addresses only. Raises InvalidInput naming what is wrong."""
    parts = parse_target(url)
    if private_allowed:  # any address will do: nothing to resolve now (it is resolved for every delivery)
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    check_addresses(host, resolve(host, port), private_allowed)


async def pinned(url: str, private_allowed: bool) -> tuple[httpx.URL, str, dict[str, str]]:
    """The URL with its host replaced by the address it resolves to now, checked (`check_addresses`), the Host
    header, and the TLS server name (httpx's `sni_hostname` extension): the connection goes to the address that was
    checked, whatever the name resolves to a moment later. InvalidInput when the URL is not accepted (`parse_target`)
    or its address may not be contacted."""
    parts = parse_target(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        infos = []
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    check_addresses(host, addresses, private_allowed)
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return httpx.URL(url).copy_with(host=addresses[0]), parts.netloc.rpartition("@")[2], extensions
