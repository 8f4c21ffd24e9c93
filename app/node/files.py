"""Selenium's file extensions, served by the node itself (drivers lack them).

    POST   /session/<id>/se/file    upload: a base64 zip of one file; answers
                                    the path the file now has on the node
    GET    /session/<id>/se/files   names of the files the browser downloaded
    POST   /session/<id>/se/files   one of them, as a base64 zip
    DELETE /session/<id>/se/files   delete them all

Downloads need the capability `se:downloadsEnabled: true`; the node then
points the browser's download folder at a folder of its own.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import pathlib
import shutil
import tempfile
import zipfile
from typing import Any

from app.errors import InvalidArgument, UnknownCommand, UnknownMethod

DOWNLOADS_CAP = "se:downloadsEnabled"
# Files a browser writes while a download is still running.
PARTIAL_SUFFIXES = (".crdownload", ".part", ".tmp")


class Files:
    """Uploads and downloads of one session, under the node's temp folder."""

    def __init__(self, root: pathlib.Path, downloads_enabled: bool) -> None:
        self.root = root
        self.downloads = root / "downloads" if downloads_enabled else None
        if self.downloads is not None:
            self.downloads.mkdir(parents=True, exist_ok=True)

    def handle(self, method: str, rest: str, body: bytes) -> Any:
        """The `value` of the answer to a file command."""
        if rest == "/se/file":
            if method != "POST":
                raise UnknownMethod(f"{method} {rest}: uploads take POST")
            return self.upload(_json(body))
        if method == "GET":
            return {"names": self.names()}
        if method == "POST":
            return self.download(_json(body))
        if method == "DELETE":
            self.delete_all()
            return None
        raise UnknownMethod(f"{method} {rest}: use GET, POST or DELETE")

    def upload(self, request: dict[str, Any]) -> str:
        archive = _zip_of(request.get("file"))
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) != 1:
            raise InvalidArgument(
                f"an upload is a zip of exactly one file; this one has {len(members)}"
            )
        folder = pathlib.Path(tempfile.mkdtemp(prefix="upload-", dir=self.root))
        target = folder / pathlib.PurePath(members[0].filename).name
        with archive.open(members[0]) as source, open(target, "wb") as out:
            shutil.copyfileobj(source, out)
        return str(target)

    def names(self) -> list[str]:
        folder = self._downloads()
        return sorted(
            entry.name
            for entry in folder.iterdir()
            if entry.is_file() and not entry.name.endswith(PARTIAL_SUFFIXES)
        )

    def download(self, request: dict[str, Any]) -> dict[str, str]:
        name = request.get("name")
        if not isinstance(name, str) or name not in self.names():
            raise InvalidArgument(
                f"no downloaded file named {name!r}; downloaded: {self.names()}"
            )
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.write(self._downloads() / name, name)
        contents = base64.b64encode(buffer.getvalue()).decode()
        return {"filename": name, "contents": contents}

    def delete_all(self) -> None:
        for entry in self._downloads().iterdir():
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    def _downloads(self) -> pathlib.Path:
        if self.downloads is None:
            raise UnknownCommand(
                "downloads are off for this session; ask for them with the "
                f"capability {DOWNLOADS_CAP}: true"
            )
        return self.downloads


def browser_download_options(
    browser: str, caps: dict[str, Any], folder: pathlib.Path
) -> None:
    """Point the browser's downloads at `folder`, without asking."""
    if browser == "firefox":
        options = caps.setdefault("moz:firefoxOptions", {})
        prefs = options.setdefault("prefs", {})
        prefs.update(
            {
                "browser.download.dir": str(folder),
                "browser.download.folderList": 2,
                "browser.download.useDownloadDir": True,
                "browser.helperApps.neverAsk.saveToDisk": "application/octet-stream",
            }
        )
        return
    options = caps.setdefault("goog:chromeOptions", {})
    prefs = options.setdefault("prefs", {})
    prefs.update(
        {
            "download.default_directory": str(folder),
            "download.prompt_for_download": False,
            "download.directory_upgrade": True,
        }
    )


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError as exc:
        raise InvalidArgument(f"the request body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidArgument("the request body must be a JSON object")
    return value


def _zip_of(encoded: Any) -> zipfile.ZipFile:
    if not isinstance(encoded, str):
        raise InvalidArgument("an upload needs 'file': a base64 zip of the file")
    try:
        data = base64.b64decode(encoded)
        return zipfile.ZipFile(io.BytesIO(data))
    except (binascii.Error, ValueError, zipfile.BadZipFile) as exc:
        raise InvalidArgument(f"'file' is not a base64 zip: {exc}") from None


def is_file_command(rest: str) -> bool:
    return rest in ("/se/file", "/se/files")
