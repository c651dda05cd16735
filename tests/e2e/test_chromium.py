"""The console and jacc.js in a real browser (docs/client.md): Debian's Chromium, headless,
driven by Playwright, against `jacc serve samples/chat.jac` as a process.

Without Chromium or Playwright these tests skip, saying how to get them; with
`CI=true` they fail instead, so that CI cannot pass without running them.
`JACC_SCREENSHOTS=1` saves the README's screenshots into docs/.
"""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from e2e_support import JaccServer, server_env, start_server

REPO = Path(__file__).resolve().parents[2]
SAMPLE = (REPO / "samples" / "chat.jac").read_text(encoding="utf-8")
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = os.environ.get("JACC_SCREENSHOTS") == "1"



def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed: pip install -e '.[test]'"
    if not CHROMIUM.exists():
        return "no /usr/bin/chromium: `apt-get install -y chromium` runs the browser tests"
    return None


@pytest.fixture(scope="module")
def browser():
    reason = _missing()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run in CI: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Debian's Chromium, never a browser download of Playwright's own.
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def chat(tmp_path_factory) -> JaccServer:
    running = start_server(tmp_path_factory.mktemp("chat"), SAMPLE)
    yield running
    running.stop()


class Pages:
    """New pages of one browser context; each records every request and page error."""

    def __init__(self, browser, origin: str, viewport: dict | None = None) -> None:
        self.context = browser.new_context(viewport=viewport or {"width": 1280, "height": 800})
        self.origin = origin
        self.requests: list[str] = []
        self.errors: list[str] = []

    def new(self):
        page = self.context.new_page()
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("websocket", lambda socket: self.requests.append(socket.url))
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        # A Content-Security-Policy violation (a fetch elsewhere) is logged as a console error.
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        return page

    def foreign_requests(self) -> list[str]:
        own = urlsplit(self.origin).netloc
        return [url for url in self.requests if urlsplit(url).netloc != own]


@pytest.fixture
def pages(browser, chat):
    opened = Pages(browser, chat.http)
    yield opened
    opened.context.close()
    # Every console test also proves the page asked nothing of any other origin.
    assert opened.requests, "the page made no request at all"
    assert opened.foreign_requests() == []


def _console(pages: Pages, walker: str):
    page = pages.new()
    page.goto(f"{pages.origin}/#{walker}")
    page.wait_for_selector(f"#walker-name:text-is('{walker}')")
    return page


def _log_text(page) -> str:
    return page.inner_text("#log")


# --- the console -----------------------------------------------------------------------


def test_console_lists_the_sample_walkers(pages: Pages) -> None:
    page = pages.new()
    page.goto(pages.origin + "/")  # redirected to the console
    assert page.url == f"{pages.origin}/__jacc/console"
    page.wait_for_selector("[data-walker]")
    names = page.eval_on_selector_all("[data-walker]", "nodes => nodes.map(n => n.dataset.walker)")
    # The WebSocket walkers of samples/chat.jac; `Stats` is an HTTP walker.
    assert names == ["ChatRoom", "History", "EchoMessage", "TeamChat"]
    assert "broadcast" in page.inner_text("[data-walker=ChatRoom]")
    assert "private" in page.inner_text("[data-walker=TeamChat]")
    # Forms come from the declared fields: types, defaults, required marks.
    page.click("[data-walker=History]")
    assert page.input_value("#field-limit") == "10"
    assert page.get_attribute("#field-limit", "type") == "number"
    page.click("[data-walker=ChatRoom]")
    assert page.is_visible("label[for=field-message] abbr.required")
    assert page.input_value("#field-sender") == "anonymous"
    assert "The last messages" not in page.inner_text("#walker-doc")
    assert "Everyone connected" in page.inner_text("#walker-doc")
    assert pages.errors == []


def test_a_message_from_one_page_appears_in_both(pages: Pages) -> None:
    first, second = _console(pages, "ChatRoom"), _console(pages, "ChatRoom")
    for page in (first, second):
        page.click("#connect")
        page.wait_for_selector("#status:text-is('Connected.')")
    first.fill("#field-message", "hello from the first page")
    first.fill("#field-sender", "ann")
    first.click("#send")
    for page in (first, second):
        page.wait_for_selector("#log code:has-text('hello from the first page')")
    # The second page got it as a broadcast: it sent nothing of the kind.
    sent = second.eval_on_selector_all("#log .entry-out", "nodes => nodes.map(n => n.textContent)")
    assert not any("hello from the first page" in text for text in sent)
    if SCREENSHOTS:
        second.fill("#field-message", "hi ann!")
        second.fill("#field-sender", "bob")
        second.click("#send")
        first.wait_for_selector("#log code:has-text('hi ann!')")
        first.fill("#field-message", "")
        first.click("summary")
        first.screenshot(path=str(REPO / "docs" / "console.png"), full_page=True)
    assert pages.errors == []


def test_a_private_walker_fails_then_works_after_sign_in(pages: Pages) -> None:
    page = _console(pages, "TeamChat")
    page.fill("#field-message", "only for members")
    page.click("#send")
    page.wait_for_selector("#log .entry-close")
    log = _log_text(page)
    assert "UNAUTHORIZED" in log
    assert "closed 4401" in log and "unauthorized: the token is missing" in log
    assert "UNAUTHORIZED" in page.inner_text("#form-error")

    page.fill("#username", f"ann-{uuid.uuid4().hex[:8]}")
    page.fill("#password", "correct horse battery")
    page.click("#sign-in button[value=register]")
    page.wait_for_selector("#account-status:has-text('Signed in as')")
    page.click("#send")
    page.wait_for_selector("#log code:has-text('\"authenticated\":true')")
    assert page.inner_text("#form-error") == ""
    assert pages.errors == []


def test_invalid_payload_is_shown_next_to_the_field(pages: Pages) -> None:
    page = _console(pages, "History")
    page.fill("#field-limit", "1.5")
    page.click("#send")
    page.wait_for_selector("#error-limit:not(:empty)")
    assert "expected int, got float" in page.inner_text("#error-limit")
    assert page.get_attribute("#field-limit", "aria-invalid") == "true"
    assert "INVALID_PAYLOAD" in _log_text(page)


def test_console_on_a_phone_by_keyboard(browser, chat) -> None:
    pages = Pages(browser, chat.http, viewport={"width": 360, "height": 740})
    try:
        page = _console(pages, "EchoMessage")
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        unlabelled = page.eval_on_selector_all(
            "input, textarea, select", "nodes => nodes.filter(n => !n.labels.length).map(n => n.id)")
        assert unlabelled == []
        # Tab from the top of the page to the message field, type, and press Enter to send.
        for _ in range(20):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "field-message":
                break
        else:
            pytest.fail("the message field cannot be reached with Tab")
        page.keyboard.type("typed, not clicked")
        page.keyboard.press("Enter")
        page.wait_for_selector("#log code:has-text('\"echo\":\"typed, not clicked\"')")
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        if SCREENSHOTS:
            page.screenshot(path=str(REPO / "docs" / "console-phone.png"), full_page=True)
        assert pages.errors == []
        assert pages.foreign_requests() == []
    finally:
        pages.context.close()


def test_console_can_be_turned_off(browser, tmp_path) -> None:
    server = start_server(tmp_path, SAMPLE, env=server_env(JACC_SERVER_CONSOLE="false"))
    try:
        page = browser.new_page()
        assert page.goto(f"{server.http}/__jacc/console").status == 404
        assert page.goto(f"{server.http}/").status == 404
        assert page.goto(f"{server.http}/asyncapi.json").status == 200
        page.close()
    finally:
        server.stop()


# --- jacc.js ---------------------------------------------------------------------------


def _test_page(pages: Pages):
    # A page the server serves (Chromium refuses loopback sockets to pages that come from
    # nowhere, such as one a test fulfils itself), here the console, importing jacc.js.
    page = pages.new()
    page.goto(f"{pages.origin}/__jacc/console")
    page.evaluate('async () => { window.jacc = await import("/__jacc/jacc.js"); }')
    return page


def test_jaccjs_send_resolves_with_the_reply(pages: Pages) -> None:
    page = _test_page(pages)
    result = page.evaluate("""async () => {
        const echo = await jacc.connect("EchoMessage");
        const frames = [];
        echo.on("frame", (frame) => frames.push(frame));
        const reply = await echo.send({ message: "hi", client_id: "page" });
        let error = null;
        try { await echo.send({ message: 5 }); } catch (e) { error = { code: e.code, details: e.details }; }
        const after = await echo.send({ message: "still open" });
        echo.close();
        return { reply, error, after, frames: frames.length };
    }""")
    assert result["reply"] == {"ok": True, "data": {"reports": [{"echo": "hi", "client_id": "page"}]}}
    assert result["error"]["code"] == "INVALID_PAYLOAD"
    assert result["error"]["details"][0]["field"] == "message"
    assert result["after"]["data"]["reports"][0]["echo"] == "still open"
    assert result["frames"] == 3


def test_jaccjs_send_on_a_broadcast_walker_resolves_with_its_own_message(pages: Pages) -> None:
    listener, sender = _test_page(pages), _test_page(pages)
    listener.evaluate("""async () => {
        window.seen = [];
        window.room = await jacc.connect("ChatRoom");
        room.on("frame", (frame) => seen.push(frame));
    }""")
    result = sender.evaluate("""async () => {
        const room = await jacc.connect("ChatRoom");
        const replies = await Promise.all(["one", "two", "three"].map((m) => room.send({ message: m })));
        let error = null;
        try { await room.send({ message: "   " }); } catch (e) { error = e.code; }
        room.close();
        return { contents: replies.map((r) => r.data.reports[0].content), error };
    }""")
    assert result == {"contents": ["one", "two", "three"], "error": "EXECUTION_ERROR"}
    listener.wait_for_function("seen.filter((f) => f.ok).length === 3")


def test_jaccjs_survives_a_server_restart(browser, tmp_path) -> None:
    server = start_server(tmp_path, SAMPLE)
    pages = Pages(browser, server.http)
    try:
        page = _test_page(pages)
        page.evaluate("""async () => {
            window.events = [];
            window.echo = await jacc.connect("EchoMessage", { maxDelay: 1000 });
            echo.on("close", ({ code }) => events.push("close " + code));
            echo.on("open", () => events.push("open"));
            await echo.send({ message: "before" });
        }""")
        port = server.port
        server.stop()
        page.wait_for_function("events.includes('close 1001')")
        server = start_server(tmp_path, SAMPLE, port=port)
        reply = page.evaluate("echo.send({ message: 'after' })")
        assert reply["data"]["reports"][0]["echo"] == "after"
        assert page.evaluate("events[0]") == "close 1001"
        assert "open" in page.evaluate("events")
        assert page.evaluate("echo.state") == "open"
    finally:
        pages.context.close()
        server.stop()


def test_jaccjs_refreshes_the_token_before_it_expires(browser, tmp_path) -> None:
    server = start_server(tmp_path, SAMPLE, env=server_env(JACC_AUTH_TOKEN_TTL_SECONDS="5"))
    pages = Pages(browser, server.http)
    try:
        page = _test_page(pages)
        result = page.evaluate("""async () => {
            const post = async (path, body) => (await (await fetch(path, {
                method: "POST", headers: { "content-type": "application/json" },
                body: JSON.stringify(body) })).json()).data;
            const user = "refresh-" + Math.random().toString(16).slice(2);
            const credential = { type: "password", password: "a long enough password" };
            await post("/user/register", { identities: [{ type: "username", value: user }], credential });
            let token = (await post("/user/login", { identity: { type: "username", value: user }, credential })).token;
            const getToken = async () => (token = (await post("/user/refresh-token", { token })).token);
            const events = [];
            const team = await jacc.connect("TeamChat", { token, getToken });
            team.on("frame", (frame) => events.push(frame.type || (frame.ok ? "ok" : frame.error.code)));
            team.on("close", ({ code }) => events.push("close " + code));
            await new Promise((done) => setTimeout(done, 7500));  // past the first token's exp
            const reply = await team.send({ message: "still here" });
            team.close();
            return { events, reply };
        }""")
        events = result["events"]
        assert "refreshed" in events
        assert not any(event.startswith("close") for event in events[:-1]), events
        assert "UNAUTHORIZED" not in events
        assert result["reply"]["data"]["reports"][0]["content"] == "still here"
    finally:
        pages.context.close()
        server.stop(signal.SIGTERM)


# --- functions and streams (samples/typewriter.jac) ------------------------------------------

TYPEWRITER = (REPO / "samples" / "typewriter.jac").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def typewriter_app(tmp_path_factory) -> JaccServer:
    running = start_server(tmp_path_factory.mktemp("typewriter"), TYPEWRITER)
    yield running
    running.stop()


@pytest.fixture
def typewriter_pages(browser, typewriter_app):
    opened = Pages(browser, typewriter_app.http)
    yield opened
    opened.context.close()
    assert opened.foreign_requests() == []


def test_console_lists_functions_and_shows_a_stream_chunk_by_chunk(typewriter_pages: Pages) -> None:
    page = _console(typewriter_pages, "type_out")
    names = page.eval_on_selector_all("[data-walker]", "nodes => nodes.map(n => n.dataset.walker)")
    assert names == ["type_out", "countdown", "Assistant"]  # word_count is served over HTTP
    badges = page.inner_text("[data-walker=type_out]")
    assert "function" in badges and "stream" in badges
    assert "/ws/function/type_out" in page.inner_text("#walker-route")
    page.fill("#field-text", "one two three")
    page.fill("#field-delay", "0.05")
    page.click("#send")
    page.wait_for_selector("#log code:has-text('\"type\":\"done\"')")
    chunks = page.eval_on_selector_all(
        "#log .entry-in code", "nodes => nodes.map(n => JSON.parse(n.textContent))")
    assert [c["data"]["word"] for c in chunks if c.get("type") == "chunk"] == ["one", "two",
                                                                                "three"]
    assert chunks[-1] == {"ok": True, "type": "done"}
    assert "for await" in page.text_content("#snippet")  # the snippet streams too
    assert page.inner_text("#form-error") == ""
    assert typewriter_pages.errors == []


def test_jaccjs_streams_a_function_and_a_walker(typewriter_pages: Pages) -> None:
    page = _test_page(typewriter_pages)
    result = page.evaluate("""async () => {
        const words = [];
        const typer = await jacc.connect("type_out");
        for await (const chunk of typer.stream({ text: "a b c", delay: 0.01 })) words.push(chunk.word);
        const numbers = [];
        const countdown = await jacc.connect("countdown");
        for await (const n of countdown.stream({ start: 3 })) numbers.push(n);
        const done = await countdown.send({ start: 1 });  // send() on a stream: its done frame
        const statuses = [];
        const assistant = await jacc.connect("Assistant");
        for await (const r of assistant.stream({ question: "streams?", delay: 0.01 })) statuses.push(r.status);
        for (const c of [typer, countdown, assistant]) c.close();
        return { words, numbers, done, statuses };
    }""")
    assert result["words"] == ["a", "b", "c"]
    assert result["numbers"] == [3, 2, 1, "liftoff"]
    assert result["done"] == {"ok": True, "type": "done"}
    statuses = result["statuses"]
    assert statuses[0] == "thinking" and statuses[-1] == "done" and "typing" in statuses
    assert typewriter_pages.errors == []
