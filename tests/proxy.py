"""A small real HTTP proxy in front of `kefu serve` that fails the way proxies and restarts do, on request.

Each browser connection carries one request: the proxy reads it, then either forwards it to the server (with
`Connection: close`) and pipes the answer back as it comes (event streams too), or fails it as told:

- "drop": forward the request, let the server store it, then cut the browser's connection before any of the answer
  (the request reached the server; the browser sees a network error);
- "cut": forward the head and half the body, then cut both connections (the connection dropped mid-request: the
  server never gets the whole request);
- "bad-gateway": answer 502 with nginx's English page without forwarding (an upstream that was stopping).

Rules match a method and a path pattern; each fails `times` requests (None: until `heal` is called).
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field

NGINX_502 = (b"HTTP/1.1 502 Bad Gateway\r\nServer: nginx/1.22.1\r\nContent-Type: text/html\r\nContent-Length: 157\r\n"
             b"Connection: close\r\n\r\n<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center>"
             b"<h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n")
NGINX_502 = NGINX_502.replace(b"Content-Length: 157", b"Content-Length: %d" % len(NGINX_502.split(b"\r\n\r\n", 1)[1]))


@dataclass
class Rule:
    method: str
    path: re.Pattern[str]
    action: str  # "drop", "cut" or "bad-gateway"
    times: int | None  # None: every matching request until healed


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    failed: str | None  # the action taken, or None when forwarded


@dataclass
class FlakyProxy:
    upstream_port: int
    rules: list[Rule] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FlakyProxy:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(self, method: str, path: str, action: str, times: int | None = 1) -> None:
        """Fail the next `times` requests whose path matches the regular expression `path` (None: until healed)."""
        with self._lock:
            self.rules.append(Rule(method, re.compile(path), action, times))

    def heal(self) -> None:
        with self._lock:
            self.rules.clear()

    def stop(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _action(self, method: str, path: str) -> str | None:
        with self._lock:
            for rule in self.rules:
                if rule.method == method and rule.path.search(path):
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times == 0:
                            self.rules.remove(rule)
                    return rule.action
        return None

    def _serve(self, client: socket.socket) -> None:
        with client:
            request = _read_request(client)
            if request is None:
                return
            head, body = request
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            action = self._action(method, path)
            self.seen.append(Seen(method, path, headers, action))
            if action == "bad-gateway":
                client.sendall(NGINX_502)
                return
            kept = [line for line in lines[1:] if line and not line.lower().startswith(("connection:", "keep-alive:"))]
            forwarded = "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("latin-1") + body
            with socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
                if action == "cut":
                    upstream.sendall(forwarded[: len(forwarded) - len(body) // 2])
                    client.shutdown(socket.SHUT_RDWR)
                    return
                upstream.sendall(forwarded)
                if action == "drop":  # the server gets it all and answers; the browser gets nothing
                    while upstream.recv(65536):
                        pass
                    client.shutdown(socket.SHUT_RDWR)
                    return
                while chunk := upstream.recv(65536):
                    try:
                        client.sendall(chunk)
                    except OSError:
                        return


def _read_request(client: socket.socket) -> tuple[bytes, bytes] | None:
    """The head (without its blank line) and the body (by Content-Length) of one request; None if the browser
    closed the connection first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = client.recv(65536)
        if not chunk:
            return None
        body += chunk
    return head, body
