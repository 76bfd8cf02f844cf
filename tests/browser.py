"""A headless Chromium driven over the DevTools protocol on a pipe (no extra package).

``Browser().open(path, width=390)`` loads a local page at a viewport width and returns a
:class:`PageCheck`: the page's scroll width, the requests it made and, on request, a
PNG screenshot. Network access is what we test, so every request is recorded and any
that is not ``file:`` or ``data:`` is a finding."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium() -> str | None:
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


@dataclass
class PageCheck:
    width: int
    scroll_width: int
    height: int
    requests: list[str] = field(default_factory=list)
    png: bytes | None = None

    @property
    def remote_requests(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(("file:", "data:", "about:"))]


class Browser:
    def __init__(self) -> None:
        exe = chromium()
        if exe is None:
            raise RuntimeError("no Chromium on PATH (Debian: apt-get install chromium)")
        self._profile = tempfile.TemporaryDirectory(prefix="clinval-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # the pipe must be fds 3 (commands) and 4 (replies) in the child
        self._proc = self._spawn(exe, to_browser_r, from_browser_w)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._id = 0
        self._events: list[dict] = []

    def _spawn(self, exe: str, r: int, w: int) -> subprocess.Popen:
        def child() -> None:
            os.dup2(r, 3)
            os.dup2(w, 4)

        return subprocess.Popen(
            [exe, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
             "--no-first-run", "--no-default-browser-check", "--hide-scrollbars", "--mute-audio",
             f"--user-data-dir={self._profile.name}", "about:blank"],
            pass_fds=(3, 4), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=child)

    # ------------------------------------------------------------------ protocol

    def _read_message(self) -> dict:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read_message()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)

    def _wait_for(self, method: str, session: str) -> None:
        for i, event in enumerate(self._events):
            if event.get("method") == method and event.get("sessionId") == session:
                del self._events[i]
                return
        while True:
            event = self._read_message()
            if event.get("method") == method and event.get("sessionId") == session:
                return
            self._events.append(event)

    # ------------------------------------------------------------------ pages

    def open(self, path: Path, *, width: int, height: int = 900, screenshot: bool = False,
             full_height: int | None = None) -> PageCheck:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        try:
            for domain in ("Page", "Network", "Runtime"):
                self.send(f"{domain}.enable", session=session)
            self.send("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}, session=session)
            self._events.clear()
            self.send("Page.navigate", {"url": Path(path).resolve().as_uri()}, session=session)
            self._wait_for("Page.loadEventFired", session)
            metrics = self.send("Runtime.evaluate", {"expression": (
                "JSON.stringify([document.documentElement.scrollWidth, document.documentElement.clientWidth,"
                " document.documentElement.scrollHeight])"), "returnByValue": True}, session=session)
            scroll_width, client_width, page_height = json.loads(metrics["result"]["value"])
            requests = [e["params"]["request"]["url"] for e in self._events
                        if e.get("method") == "Network.requestWillBeSent" and e.get("sessionId") == session]
            png = None
            if screenshot:
                clip_height = min(page_height, full_height or height)
                shot = self.send("Page.captureScreenshot", {
                    "format": "png", "captureBeyondViewport": True,
                    "clip": {"x": 0, "y": 0, "width": width, "height": clip_height, "scale": 1}}, session=session)
                png = base64.b64decode(shot["data"])
            return PageCheck(width=client_width, scroll_width=scroll_width, height=page_height,
                             requests=requests, png=png)
        finally:
            self.send("Target.closeTarget", {"targetId": target})

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except RuntimeError:
            pass
        self._proc.wait(timeout=20)
        os.close(self._to_browser)
        os.close(self._from_browser)
        self._profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
