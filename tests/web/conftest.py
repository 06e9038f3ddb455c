"""The web console's test stack and a real browser, shared by the web tests (one per module).

    def test_x(web_stack, browser):
        browser.sign_in("alice")                 # through the provider's own login page
        browser.open("/request"); browser.shot("request")

`web_stack`: the OpenID provider (oidc-provider, npm) with the CLI's client and the console's
(`jitgate-web`, a web application whose redirect URI is the console's /auth/callback), a control
plane with sign-ins on (`console_client_id: jitgate-web`) and `jitgate web` as a subprocess on
HTTPS with a certificate from the control plane's CA. People: alice, bob, sam, admin (password
NAME-pw, groups as policies.yaml gives them).

`browser`: Debian's Chromium driven by Selenium through Debian's chromedriver (the same
package version, so no driver download and no version skew), headless. It accepts the
console's certificate (from the test control plane's CA, which the browser does not know:
`--ignore-certificate-errors`; cookies still see a secure origin). Screenshots go to
tests/output/web/.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from broker.demo_target import free_port
from cli.demo_model import ensure_demo_model
from tests.cluster import REPO, ControlPlane
from tests.oidc.provider import OidcProvider, missing, test_client, wait_for
from tests.support import require

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
OUTPUT = REPO / "tests" / "output" / "web"
WEB_CLIENT_ID = "jitgate-web"
PEOPLE = {"alice": ["sre", "oncall"], "bob": ["managers"], "sam": ["security"], "admin": ["admins"]}
DEMO_ROWS = 1200  # synthetic grants the demo model is trained on here
ACCOUNTS = {name: {"password": f"{name}-pw", "email": f"{name}@example.com", "email_verified": True,
                   "groups": groups} for name, groups in PEOPLE.items()}


def web_client(redirect_uri: str) -> dict[str, Any]:
    """The console at the provider: a web application, public (PKCE), its own https redirect URI."""
    return {"client_id": WEB_CLIENT_ID, "token_endpoint_auth_method": "none", "application_type": "web",
            "redirect_uris": [redirect_uri], "response_types": ["code"], "grant_types": ["authorization_code"],
            "id_token_signed_response_alg": "ES256"}


@dataclass
class WebStack:
    idp: OidcProvider
    cp: ControlPlane
    url: str  # https://127.0.0.1:PORT
    proc: subprocess.Popen[bytes]
    log: Path
    tmp: Path

    def http(self, cookies: dict[str, str] | None = None) -> httpx.Client:
        """An HTTP client for the console that trusts the control plane's CA (no browser)."""
        import ssl

        ctx = ssl.create_default_context(cadata=self.cp.ca_pem.decode())
        return httpx.Client(base_url=self.url, verify=ctx, follow_redirects=False, timeout=15, cookies=cookies)


def start_web(cp: ControlPlane, login_addr: str, port: int, tmp: Path,
              *extra: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp / "web.log"
    cmd = [sys.executable, "-m", "cli.main", "web", "--listen", f"127.0.0.1:{port}", "--server", cp.address,
           "--login-server", login_addr, "--issue-tls-from", str(cp.data.root), "--data-dir", str(tmp / "web"),
           "--client-id", WEB_CLIENT_ID, *extra]
    proc = subprocess.Popen(cmd, cwd=REPO, env=cp.env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    import socket

    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"jitgate web exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, log
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"jitgate web did not listen:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.1)


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def web_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebStack]:
    why = missing()
    require(why is None, why or "")
    tmp = tmp_path_factory.mktemp("web")
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    with OidcProvider(tmp / "idp", ACCOUNTS, clients=[test_client(), web_client(url + "/auth/callback")]) as idp:
        config = {"oidc": {"issuer": idp.issuer, "client_id": "jitgate", "console_client_id": WEB_CLIENT_ID,
                           "keep_unmapped_groups": True}}
        cp = ControlPlane(tmp / "cp", REPO / "policies.yaml", config=config, start=False)
        # Recommendations, as `jitgate demo` has them (from fewer synthetic grants than its 3000:
        # training time grows with them, and the console's pages need only a model's answers).
        ensure_demo_model(cp.data.root, REPO / "policies.yaml", rows=DEMO_ROWS)
        with cp.start():
            login_addr = wait_for(cp.data.root / "login.addr")
            proc, log = start_web(cp, login_addr, port, tmp)
            try:
                yield WebStack(idp, cp, url, proc, log, tmp)
            finally:
                stop(proc)


class Browser:
    """One headless Chromium (Selenium) with the few moves the console's tests make."""

    def __init__(self, driver: Any, base: str) -> None:
        self.driver = driver
        self.base = base

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    @property
    def path(self) -> str:
        from urllib.parse import urlsplit

        return urlsplit(self.driver.current_url).path

    def find(self, css: str) -> Any:
        """The element, or an AssertionError saying where the browser is and what it shows."""
        from selenium.common.exceptions import NoSuchElementException
        from selenium.webdriver.common.by import By

        try:
            return self.driver.find_element(By.CSS_SELECTOR, css)
        except NoSuchElementException:
            body = self.driver.find_element(By.TAG_NAME, "body").text
            raise AssertionError(f"no `{css}` on {self.driver.current_url}:\n{body[:2000]}") from None

    def find_all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def text(self, css: str = "main") -> str:
        return str(self.find(css).text)

    def fill(self, fields: dict[str, str], within: str = "") -> None:
        for name, value in fields.items():
            box = self.find(f"{within} [name='{name}']".strip())
            box.clear()
            box.send_keys(value)

    def click(self, css: str, navigates: bool = True) -> None:
        """Click; when it navigates (a link, a form), wait until the next page has replaced this one
        (Selenium's click does not always wait for a form post's answer)."""
        from selenium.webdriver.common.by import By

        page = self.driver.find_element(By.TAG_NAME, "html")
        self.find(css).click()
        if navigates:
            self.wait_for(lambda: _gone(page))
            self.wait_for(lambda: self.driver.execute_script("return document.readyState") == "complete")

    def sign_in(self, name: str, password: str | None = None) -> None:
        """Through the console's sign-in page and the provider's real login form."""
        self.driver.delete_all_cookies()
        self.open("/auth/signin")
        self.click("#signin")
        self.fill({"login": name, "password": password or f"{name}-pw"})
        self.click("button[type=submit]")
        self.wait_for(lambda: self.path not in ("", "/auth/signin") and "interaction" not in self.driver.current_url)

    def sign_out(self) -> None:
        self.click("header form[action='/auth/signout'] button")

    def wait_for(self, ok: Any, timeout: float = 15.0) -> None:
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(self.driver, timeout).until(lambda _d: ok())

    def shot(self, name: str) -> Path:
        """The whole page (not only the window) as tests/output/web/NAME.png (Chromium's DevTools)."""
        import base64

        OUTPUT.mkdir(parents=True, exist_ok=True)
        path = OUTPUT / f"{name}.png"
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 3000), "scale": 1}
        png = self.driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "clip": clip,
                                                                      "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(png["data"]))
        return path


@pytest.fixture(scope="module")
def browser(web_stack: WebStack) -> Iterator[Browser]:
    require(os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER),
            f"Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}; scripts/setup.sh installs them)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        require(False, "selenium (pip install -e '.[test]')")
        raise
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--ignore-certificate-errors",
                "--window-size=1280,900", "--disable-gpu", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    profile = web_stack.tmp / "chromium-profile"
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER, log_output=str(web_stack.tmp / "chromedriver.log")),
                              options=options)
    try:
        yield Browser(driver, web_stack.url)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _gone(element: Any) -> bool:
    """The element's page has been replaced. Chromium sometimes answers a query on an element of a
    page being torn down with "Node with given id does not belong to the document" (a plain
    WebDriverException) rather than a stale element: both mean the old page is gone."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        if "does not belong to the document" in str(exc):
            return True
        raise
    return False
