"""Downloading CIFAR-10 against a real HTTP server on 127.0.0.1 serving small archives built here."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import socket
import tarfile
import threading
from pathlib import Path

import pytest
from conftest import fake_cifar_archive, make_archive

from autocolor import data, download
from autocolor.errors import AutocolorError


class _Server:
    """Serves ``routes[path] = (body, content_length)`` on an ephemeral localhost port."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[bytes, int]] = {}
        routes = self.routes

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path not in routes:
                    self.send_error(404)
                    return
                body, length = routes[self.path]
                self.send_response(200)
                self.send_header("Content-Type", "application/gzip")
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def serve(self, path: str, body: bytes, length: int | None = None) -> str:
        self.routes[path] = (body, len(body) if length is None else length)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


@pytest.fixture
def archive(tmp_path) -> bytes:
    return fake_cifar_archive(tmp_path / "build", n=10)


def _md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def test_good_download_unpacks_and_loads(tmp_path, server, archive):
    url = server.serve("/cifar.tar.gz", archive)
    root = tmp_path / "root"
    folder = download.download_cifar10(root, url, _md5(archive), progress=False)
    assert folder == root / download.FOLDER
    assert sorted(p.name for p in root.iterdir()) == [download.FOLDER]  # no temp folders left
    test = data.load_split("test", root, download=False)
    assert test.images.shape == (10, 3, 32, 32)
    assert data.load_split("trainval", folder, download=False).labels.tolist() == list(range(10)) * 5


def test_md5sum_matches_hashlib(tmp_path):
    p = tmp_path / "blob"
    p.write_bytes(b"x" * (3 << 20) + b"tail")
    assert download.md5sum(p) == _md5(p.read_bytes())


def test_bad_checksum_leaves_nothing(tmp_path, server, archive):
    url = server.serve("/cifar.tar.gz", archive)
    root = tmp_path / "root"
    with pytest.raises(AutocolorError, match=f"checksum mismatch for {url}: md5 {_md5(archive)}"):
        download.download_cifar10(root, url, "0" * 32, progress=False)
    assert list(root.iterdir()) == []


def test_truncated_download_leaves_nothing(tmp_path, server, archive):
    url = server.serve("/cifar.tar.gz", archive[:1000], length=len(archive))
    root = tmp_path / "root"
    with pytest.raises(AutocolorError, match=rf"cut short \(1000 of {len(archive)} bytes\)"):
        download.download_cifar10(root, url, _md5(archive), progress=False)
    assert list(root.iterdir()) == []


def test_http_error_is_a_user_error(tmp_path, server):
    url = server.url("/missing.tar.gz")
    with pytest.raises(AutocolorError, match="could not download .*404"):
        download.download_cifar10(tmp_path / "root", url, "0" * 32, progress=False)
    assert list((tmp_path / "root").iterdir()) == []


def test_connection_refused_is_a_user_error(tmp_path, closed_port):
    with pytest.raises(AutocolorError, match="could not download"):
        download.download_cifar10(tmp_path / "root", f"http://127.0.0.1:{closed_port}/x", "0" * 32, progress=False)
    assert list((tmp_path / "root").iterdir()) == []


@pytest.mark.parametrize("reply", [b"GARBAGE\r\n\r\n",  # not HTTP at all
                                   b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfff\r\nabc"])  # cut chunk
def test_broken_http_is_a_user_error(tmp_path, reply):
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()

        def answer() -> None:
            conn, _ = srv.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(reply)

        t = threading.Thread(target=answer, daemon=True)
        t.start()
        with pytest.raises(AutocolorError, match="could not download"):
            download.download_cifar10(tmp_path / "root", f"http://127.0.0.1:{srv.getsockname()[1]}/x", "0" * 32,
                                      progress=False)
        t.join(5)
    assert list((tmp_path / "root").iterdir()) == []


@pytest.mark.parametrize("evil", ["../evil", "/tmp/autocolor-abs-evil", "cifar-10-batches-py/../../evil"])
def test_path_traversal_member_is_refused(tmp_path, server, archive, evil):
    members = {f"{download.FOLDER}/test_batch": b"x", evil: b"owned"}
    bad = make_archive(members)
    url = server.serve("/cifar.tar.gz", bad)
    root = tmp_path / "root"
    with pytest.raises(AutocolorError, match="refusing unsafe archive member"):
        download.download_cifar10(root, url, _md5(bad), progress=False)
    assert list(root.iterdir()) == []
    assert not (tmp_path / "evil").exists()
    assert not Path("/tmp/autocolor-abs-evil").exists()


def test_symlink_member_is_refused(tmp_path, server):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        link = tarfile.TarInfo(f"{download.FOLDER}/test_batch")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    bad = buf.getvalue()
    url = server.serve("/cifar.tar.gz", bad)
    with pytest.raises(AutocolorError, match="refusing unsafe archive member"):
        download.download_cifar10(tmp_path / "root", url, _md5(bad), progress=False)
    assert list((tmp_path / "root").iterdir()) == []


def test_archive_without_folder_is_refused(tmp_path, server):
    bad = make_archive({"something/else": b"x"})
    url = server.serve("/cifar.tar.gz", bad)
    with pytest.raises(AutocolorError, match=f"has no {download.FOLDER}/ folder"):
        download.download_cifar10(tmp_path / "root", url, _md5(bad), progress=False)
    assert list((tmp_path / "root").iterdir()) == []


def test_corrupt_archive_is_a_user_error(tmp_path, server):
    bad = b"not a gzip file at all" * 10
    url = server.serve("/cifar.tar.gz", bad)
    with pytest.raises(AutocolorError, match="corrupt archive"):
        download.download_cifar10(tmp_path / "root", url, _md5(bad), progress=False)
    assert list((tmp_path / "root").iterdir()) == []


def test_locate_downloads_into_home_cache(no_data_anywhere, server, archive, monkeypatch):
    url = server.serve("/cifar.tar.gz", archive)
    monkeypatch.setattr(data, "download_cifar10", functools.partial(
        download.download_cifar10, url=url, md5=_md5(archive), progress=False))
    folder = data.locate()
    assert folder == no_data_anywhere / ".cache" / "autocolor" / download.FOLDER
    assert len(data.load_split("test")) == 10  # now found without downloading again
    server.routes.clear()
    assert data.locate() == folder


def test_existing_folder_complete_or_not(tmp_path, server, archive, monkeypatch):
    """A second download into the same place (another torchrun rank) returns the finished copy; an incomplete
    folder is named with what it lacks, before anything is fetched; a rank that loses the final rename to another
    one returns the other's copy."""
    url = server.serve("/cifar.tar.gz", archive)
    root = tmp_path / "root"
    folder = download.download_cifar10(root, url, _md5(archive), progress=False)
    assert download.download_cifar10(root, "http://127.0.0.1:9/never", "0" * 32, progress=False) == folder
    (folder / "data_batch_3").unlink()
    with pytest.raises(AutocolorError, match=r"is incomplete \(no data_batch_3\); delete it and run again"):
        download.download_cifar10(root, "http://127.0.0.1:9/never", "0" * 32, progress=False)
    (folder / "data_batch_3").write_bytes((tmp_path / "root" / download.FOLDER / "data_batch_1").read_bytes())
    other = tmp_path / "other"
    real_replace = download.os.replace

    def lose_the_race(src, dst):  # another process finishes first, then our rename meets a full folder
        real_replace(str(folder), str(dst))
        raise OSError(39, "Directory not empty")

    monkeypatch.setattr(download.os, "replace", lose_the_race)
    assert download.download_cifar10(other, url, _md5(archive), progress=False) == other / download.FOLDER
    assert sorted(p.name for p in other.iterdir()) == [download.FOLDER]  # our work folder is gone


def test_stale_work_folders_are_removed(tmp_path):
    import os
    import time

    old, new = tmp_path / ".autocolor-dl-old", tmp_path / ".autocolor-dl-new"
    old.mkdir()
    new.mkdir()
    stale = time.time() - 3 * 86400
    os.utime(old, (stale, stale))
    download._remove_stale(tmp_path)
    assert not old.exists() and new.exists()
