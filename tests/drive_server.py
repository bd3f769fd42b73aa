"""A local stand-in for Google Drive's download protocol, reached by the real gdown through a real HTTPS proxy.

gdown hard-codes https://drive.google.com/uc?id=ID; requests (under gdown) honours the documented HTTPS_PROXY and
REQUESTS_CA_BUNDLE settings. So `stand_in_drive()` starts, on 127.0.0.1:
- an HTTPS server holding a certificate for drive.google.com / drive.usercontent.google.com (from a CA made here,
  trusted only through REQUESTS_CA_BUNDLE), answering as Drive does: a small file is sent at once
  (Content-Disposition), a large one first gets the "can't scan for viruses" page whose `download-form` points to
  drive.usercontent.google.com/download with a confirm token and a uuid (checked), a file over quota gets the
  "Too many users have viewed or downloaded this file recently" page, an unknown id a 404; Range requests resume;
- an HTTP CONNECT proxy that tunnels those two host names (only) to it.
`env()` gives the settings pointing gdown at it. Requests are recorded (`requests`) for the tests to assert on.
"""

from __future__ import annotations

import contextlib
import datetime
import html
import selectors
import socket
import socketserver
import ssl
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOSTS = ("drive.google.com", "drive.usercontent.google.com")
LARGE = 100_000  # bytes from which Drive asks to confirm (it cannot virus-scan the file)
QUOTA_TEXT = (
    "Too many users have viewed or downloaded this file recently. Please try accessing the file again later. "
    "If the file you are trying to access is particularly large or is shared with many people, it may take up to "
    "24 hours to be able to view or download the file. If you still can't access a file after 24 hours, contact "
    "your domain administrator."
)


@dataclass
class Drive:
    """The stand-in's files (id -> (name, bytes)), ids over quota, and what it was asked."""

    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    over_quota: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)  # "host path?query"
    tokens: dict[str, str] = field(default_factory=dict)  # uuid -> id (issued by confirm pages)
    proxy_url: str = ""
    ca_bundle: str = ""

    def env(self) -> dict[str, str]:
        """The settings that send requests' (gdown's) HTTPS through the stand-in."""
        return {"HTTPS_PROXY": self.proxy_url, "https_proxy": self.proxy_url, "REQUESTS_CA_BUNDLE": self.ca_bundle,
                "NO_PROXY": "", "no_proxy": ""}  # fmt: skip


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) for HOSTS, written into `folder`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stand-in Drive test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    leaf = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTS[0])]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in HOSTS]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    pem = serialization.Encoding.PEM
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(leaf.public_bytes(pem))
    paths[2].write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


def _handler(drive: Drive):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            host = (self.headers.get("Host") or "").split(":")[0]
            url = urllib.parse.urlsplit(self.path)
            query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
            drive.requests.append(f"{host} {self.path}")
            if host not in HOSTS:
                return self._page(421, "Misdirected Request")
            file_id = query.get("id", "")
            if file_id in drive.over_quota:
                return self._page(200, "Google Drive - Quota exceeded",
                                  '<p class="uc-error-caption">Sorry, you can&#39;t view or download this file at this '
                                  f'time.</p><p class="uc-error-subcaption">{html.escape(QUOTA_TEXT)}</p>')  # fmt: skip
            if file_id not in drive.files:
                return self._page(404, "Not Found", "<p>The requested URL was not found on this server.</p>")
            name, data = drive.files[file_id]
            if host == HOSTS[0] and url.path == "/uc" and len(data) >= LARGE:
                token = uuid.uuid4().hex
                drive.tokens[token] = file_id
                inputs = "".join(f'<input type="hidden" name="{k}" value="{v}">'
                                 for k, v in (("id", file_id), ("export", "download"), ("confirm", "t"),
                                              ("uuid", token)))  # fmt: skip
                return self._page(200, "Google Drive - Virus scan warning",
                                  f"<p>Google Drive can't scan this file for viruses.</p><p>{html.escape(name)} "
                                  f"({len(data) >> 20} MB) is too large for Google to scan for viruses.</p>"
                                  f'<form id="download-form" action="https://{HOSTS[1]}/download" method="get">'
                                  f'<input type="submit" value="Download anyway">{inputs}</form>')  # fmt: skip
            direct = host == HOSTS[0] and url.path == "/uc"
            confirmed = host == HOSTS[1] and url.path == "/download" and drive.tokens.get(query.get("uuid")) == file_id
            if not (direct or (confirmed and query.get("confirm") == "t")):
                return self._page(403, "Forbidden", "<p>Missing or wrong download confirmation.</p>")
            self._file(name, data)

        def _file(self, name: str, data: bytes) -> None:
            start = 0
            rng = self.headers.get("Range", "")
            if rng.startswith("bytes=") and rng[6:].split("-")[0].isdigit():
                start = min(int(rng[6:].split("-")[0]), len(data))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Disposition", f'attachment; filename="{name}"')
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            self.wfile.write(data[start:])

        def _page(self, status: int, title: str, body: str = "") -> None:
            page = (f"<!DOCTYPE html><html><head><title>{title}</title></head><body>{body}</body></html>\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args) -> None:
            pass

    return Handler


def _proxy(target: tuple[str, int]):
    class Tunnel(socketserver.StreamRequestHandler):
        """HTTP CONNECT to one of HOSTS on port 443 -> a byte tunnel to the stand-in; anything else 403."""

        def handle(self) -> None:
            line = self.rfile.readline(4096).decode("latin-1").split()
            while self.rfile.readline(4096) not in (b"\r\n", b"\n", b""):
                pass
            if len(line) < 2 or line[0] != "CONNECT" or line[1] not in {f"{h}:443" for h in HOSTS}:
                self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            with socket.create_connection(target) as upstream:
                self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self.wfile.flush()
                sel = selectors.DefaultSelector()
                sel.register(self.connection, selectors.EVENT_READ, upstream)
                sel.register(upstream, selectors.EVENT_READ, self.connection)
                while True:
                    for key, _ in sel.select(timeout=30):
                        chunk = key.fileobj.recv(1 << 16)
                        if not chunk:
                            return
                        key.data.sendall(chunk)

    return Tunnel


class _ThreadingTCP(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextlib.contextmanager
def stand_in_drive(folder: Path) -> Iterator[Drive]:
    """Start the stand-in Drive (HTTPS) and its CONNECT proxy on 127.0.0.1; stop both on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, cert, key = _certificates(folder)
    drive = Drive(ca_bundle=str(ca))
    https = ThreadingHTTPServer(("127.0.0.1", 0), _handler(drive))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    https.socket = context.wrap_socket(https.socket, server_side=True)
    proxy = _ThreadingTCP(("127.0.0.1", 0), _proxy(https.server_address[:2]))
    drive.proxy_url = f"http://127.0.0.1:{proxy.server_address[1]}"
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (https, proxy)]
    for t in threads:
        t.start()
    try:
        yield drive
    finally:
        for s in (https, proxy):
            s.shutdown()
            s.server_close()
