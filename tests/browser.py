"""Open a page in headless Chromium (Debian's `chromium`) over the DevTools protocol: its screenshot and
every console message and log entry (script errors, resources that failed to load) it produced."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_page(path: Path, width: int = 1200, height: int = 1600, timeout: float = 60) -> dict:
    """{"png": screenshot bytes, "messages": [{"level", "text", "source"}...], "title": str} of a file."""
    import websocket

    port = _free_port()
    profile = tempfile.mkdtemp(prefix="chromium-")
    proc = subprocess.Popen(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
         f"--remote-debugging-port={port}", "--remote-allow-origins=*", f"--user-data-dir={profile}", f"--window-size={width},{height}",
         "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        target = None
        while target is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=2) as r:
                    target = next(t for t in json.load(r) if t["type"] == "page")
            except (OSError, StopIteration, ValueError):
                if time.monotonic() > deadline:
                    raise TimeoutError("chromium's DevTools endpoint did not come up") from None
                time.sleep(0.2)
        ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=timeout)
        counter, messages, loaded = [0], [], [False]

        def call(method, **params):
            counter[0] += 1
            ws.send(json.dumps({"id": counter[0], "method": method, "params": params}))
            while True:
                msg = json.loads(ws.recv())
                if msg.get("id") == counter[0]:
                    return msg.get("result", {})
                note(msg)

        def note(msg):
            method, params = msg.get("method"), msg.get("params", {})
            if method == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                messages.append({"level": params.get("type"), "text": text, "source": "console"})
            elif method == "Runtime.exceptionThrown":
                messages.append({"level": "error", "text": params["exceptionDetails"].get("text", ""),
                                 "source": "exception"})
            elif method == "Log.entryAdded":
                e = params["entry"]
                messages.append({"level": e.get("level"), "text": e.get("text", ""), "source": e.get("source")})
            elif method == "Page.loadEventFired":
                loaded[0] = True

        for domain in ("Page", "Runtime", "Log"):
            call(f"{domain}.enable")
        call("Page.navigate", url=Path(path).resolve().as_uri())
        while not loaded[0]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} did not finish loading")
            note(json.loads(ws.recv()))
        time.sleep(0.3)  # late console messages
        title = call("Runtime.evaluate", expression="document.title")["result"].get("value", "")
        png = base64.b64decode(call("Page.captureScreenshot", format="png")["data"])
        ws.close()
        return {"png": png, "messages": messages, "title": title}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)
