// The jacc console (docs/client.md): lists the walkers and functions of /asyncapi.json,
// builds a form for each, and talks to them with jacc.js, logging every frame (a stream's
// chunks as they arrive). No build step, no dependency,
// nothing fetched from any origin but this one.

import { connect } from "./jacc.js";

const $ = (id) => document.getElementById(id);
const MAX_LOG = 500; // older entries are dropped so a busy broadcast cannot grow the page forever

const state = {
  doc: null,
  selected: null, // channel name
  connections: new Map(), // walker → jacc.js connection
  token: null,
  user: null,
};

// --- start ---------------------------------------------------------------------------

async function start() {
  try {
    const response = await fetch("/asyncapi.json");
    state.doc = await response.json();
  } catch (error) {
    $("walker-name").textContent = "Could not read /asyncapi.json";
    logEvent(null, String(error));
    return;
  }
  $("app-title").textContent = `· ${state.doc.info.title}`;
  document.title = `${state.doc.info.title} · jacc console`;
  renderWalkerList();
  const names = Object.keys(state.doc.channels);
  const wanted = decodeURIComponent(location.hash.slice(1));
  if (names.length) select(names.includes(wanted) ? wanted : names[0]);
  else $("walker-name").textContent = "No walkers or functions";
  wireControls();
}

function wireControls() {
  $("walker-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sendForm();
  });
  $("walker-form").addEventListener("input", renderSnippet);
  $("connect").addEventListener("click", () => ensureConnection(state.selected).catch(() => {}));
  $("disconnect").addEventListener("click", () => disconnect(state.selected));
  $("sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn(event.submitter ? event.submitter.value : "login");
  });
  $("sign-out").addEventListener("click", () => setAccount(null, null));
  $("clear").addEventListener("click", () => $("log").replaceChildren());
  $("language").addEventListener("change", renderSnippet);
  $("copy").addEventListener("click", copySnippet);
  window.addEventListener("hashchange", () => {
    const name = decodeURIComponent(location.hash.slice(1));
    if (state.doc && state.doc.channels[name] && name !== state.selected) select(name);
  });
}

// --- walkers -------------------------------------------------------------------------

function renderWalkerList() {
  const list = $("walkers");
  const names = Object.keys(state.doc.channels);
  $("walkers-empty").hidden = names.length > 0;
  list.replaceChildren(
    ...names.map((name) => {
      const channel = state.doc.channels[name];
      const button = element("button", { type: "button", "data-walker": name }, name);
      button.append(" ", badges(channel));
      button.addEventListener("click", () => {
        location.hash = encodeURIComponent(name);
        select(name);
      });
      return element("li", {}, button);
    }),
  );
}

function badges(channel) {
  const span = element("span", { class: "badges" });
  span.append(badge(channel["x-jacc-public"] ? "public" : "private"));
  if (channel["x-jacc-kind"] === "function") span.append(" ", badge("function"));
  if (channel["x-jacc-broadcast"]) span.append(" ", badge("broadcast"));
  if (channel["x-jacc-stream"]) span.append(" ", badge("stream"));
  return span;
}

function badge(text) {
  return element("span", { class: `badge badge-${text}` }, text);
}

function select(name) {
  state.selected = name;
  const channel = state.doc.channels[name];
  for (const button of document.querySelectorAll("[data-walker]")) {
    button.setAttribute("aria-current", button.dataset.walker === name ? "true" : "false");
  }
  $("walker-name").textContent = name;
  $("walker-flags").replaceChildren(badges(channel));
  const aliases = channel["x-jacc-aliases"] || [];
  $("walker-route").textContent = `ws ${channel.address}` + (aliases.length ? ` (also ${aliases.join(", ")})` : "");
  $("walker-doc").textContent = channel.description || "";
  renderFields(requestSchema(name));
  $("walker-form").hidden = false;
  $("code").hidden = false;
  $("form-error").textContent = "";
  renderStatus();
  renderSnippet();
}

function requestSchema(name) {
  return state.doc.channels[name].messages.request.payload;
}

// --- the form ------------------------------------------------------------------------

// The input that fits a field's JSON Schema; anything but a plain scalar is edited as JSON.
function inputKind(schema) {
  if (schema.type === "string") return "text";
  if (schema.type === "integer" || schema.type === "number") return "number";
  if (schema.type === "boolean") return "checkbox";
  return "json";
}

function fieldNames(schema) {
  // `token` is the authentication key of every frame, not a field: the sign-in box supplies it.
  return Object.keys(schema.properties || {}).filter((name) => name !== "token");
}

function renderFields(schema) {
  const required = new Set(schema.required || []);
  $("fields").replaceChildren(...fieldNames(schema).map((name) => fieldRow(name, schema.properties[name], required.has(name))));
}

function fieldRow(name, schema, required) {
  const kind = inputKind(schema);
  const id = `field-${name}`;
  const errorId = `error-${name}`;
  const hintId = `hint-${name}`;
  const label = element("label", { for: id }, name, " ", element("span", { class: "type" }, schema["x-jacc-type"] || "any"));
  if (required) label.append(" ", element("abbr", { class: "required", title: "required" }, "*"));
  const input = makeInput(kind, id, schema, required);
  input.dataset.field = name;
  input.dataset.kind = kind;
  input.setAttribute("aria-describedby", `${hintId} ${errorId}`);
  const hint = element("p", { class: "hint muted", id: hintId }, fieldHint(kind, schema, required));
  const error = element("p", { class: "field-error error", id: errorId });
  const row = element("div", { class: `field field-${kind}` });
  if (kind === "checkbox") row.append(input, " ", label, hint, error);
  else row.append(label, input, hint, error);
  return row;
}

function makeInput(kind, id, schema, required) {
  const has = Object.prototype.hasOwnProperty.call(schema, "default");
  if (kind === "json") {
    const area = element("textarea", { id, rows: "3", spellcheck: "false" });
    if (has) area.value = JSON.stringify(schema.default);
    return area;
  }
  const input = element("input", { id, type: kind });
  if (kind === "number") input.step = schema.type === "integer" ? "1" : "any";
  if (kind === "checkbox") input.checked = has ? Boolean(schema.default) : false;
  else if (has && schema.default !== null) input.value = String(schema.default);
  if (required) input.setAttribute("aria-required", "true");
  return input;
}

function fieldHint(kind, schema, required) {
  const parts = [];
  if (kind === "json") parts.push("JSON");
  if (schema.description) parts.push(schema.description);
  if (!required && kind !== "checkbox") parts.push("leave empty for the default");
  return parts.join("; ");
}

// The frame the form describes, or an error per field that cannot even be read (bad JSON).
function readForm() {
  const payload = {};
  const problems = {};
  for (const input of $("fields").querySelectorAll("[data-field]")) {
    const name = input.dataset.field;
    const kind = input.dataset.kind;
    if (kind === "checkbox") {
      payload[name] = input.checked;
    } else if (input.value.trim() === "") {
      // Left out: the walker's default applies, or the server says the field is missing.
    } else if (kind === "number") {
      payload[name] = Number(input.value);
    } else if (kind === "json") {
      try {
        payload[name] = JSON.parse(input.value);
      } catch (error) {
        problems[name] = `not valid JSON: ${error.message}`;
      }
    } else {
      payload[name] = input.value;
    }
  }
  return { payload, problems };
}

function clearFieldErrors() {
  $("form-error").textContent = "";
  for (const node of $("fields").querySelectorAll(".field-error")) node.textContent = "";
  for (const node of $("fields").querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
}

function showFieldError(name, text) {
  const input = $(`field-${name}`);
  if (!input) return false;
  input.setAttribute("aria-invalid", "true");
  $(`error-${name}`).textContent = text;
  return true;
}

async function sendForm() {
  const name = state.selected;
  clearFieldErrors();
  const { payload, problems } = readForm();
  if (Object.keys(problems).length) {
    for (const [field, text] of Object.entries(problems)) showFieldError(field, text);
    return;
  }
  try {
    const walker = await ensureConnection(name);
    if (state.doc.channels[name]["x-jacc-stream"]) {
      // Each chunk is logged as it arrives (the "frame" listener); the loop ends at `done`.
      for await (const _chunk of walker.stream(payload));
    } else {
      await walker.send(payload);
    }
  } catch (error) {
    showSendError(error);
  }
}

function showSendError(error) {
  const details = error.details || [];
  const elsewhere = details.filter((item) => !showFieldError(item.field, describeDetail(item)));
  const extra = elsewhere.map((item) => `${item.field}: ${describeDetail(item)}`);
  $("form-error").textContent = [error.message, ...extra].join("\n");
}

function describeDetail(item) {
  return item.expected && !item.message.includes(item.expected) ? `${item.message} (expected ${item.expected})` : item.message;
}

// --- connections ---------------------------------------------------------------------

async function ensureConnection(name) {
  const existing = state.connections.get(name);
  if (existing && existing.pending) return existing.pending; // a connect already under way
  if (existing && existing.state !== "closed") return existing;
  const channel = state.doc.channels[name];
  const token = channel["x-jacc-public"] ? null : state.token;
  logEvent(name, `connecting to ${channel.address}${token ? " with the token of " + state.user : ""}`);
  const pending = connect(name, {
    token,
    broadcast: Boolean(channel["x-jacc-broadcast"]),
    controls: Boolean(channel.messages.ping),
    stream: Boolean(channel["x-jacc-stream"]),
    path: channel.address,
  });
  state.connections.set(name, { state: "connecting", pending });
  renderStatus();
  try {
    const walker = await pending;
    watch(name, walker);
    state.connections.set(name, walker);
    renderStatus();
    return walker;
  } catch (error) {
    state.connections.delete(name);
    logEvent(name, `could not connect: ${error.message}`);
    renderStatus();
    throw error;
  }
}

function watch(name, walker) {
  walker.on("frame", (frame) => logFrame("in", name, frame));
  walker.on("sent", (frame) => logFrame("out", name, frame));
  walker.on("open", () => {
    logEvent(name, "connected");
    renderStatus();
  });
  walker.on("close", ({ code, reason, reconnectIn }) => {
    const then = reconnectIn === null ? "" : `; reconnecting in ${(reconnectIn / 1000).toFixed(1)} s`;
    logEvent(name, `closed ${code}${reason ? " “" + reason + "”" : ""}: ${closeMeaning(code)}${then}`, "close");
    renderStatus();
  });
  walker.on("error", (error) => logEvent(name, `token refresh failed: ${error.message}`));
  logEvent(name, "connected");
}

function disconnect(name) {
  const walker = state.connections.get(name);
  if (walker && walker.close) walker.close();
  state.connections.delete(name);
  renderStatus();
}

function closeMeaning(code) {
  const known = state.doc["x-jacc-close-codes"] || {};
  return known[String(code)] || "no meaning defined by jacc";
}

function renderStatus() {
  const name = state.selected;
  if (!name) return;
  const walker = state.connections.get(name);
  const status = walker ? walker.state : "closed";
  const words = { connecting: "Connecting…", open: "Connected.", reconnecting: "Reconnecting…", closed: "Not connected." };
  $("status").textContent = words[status];
  $("connect").disabled = status === "open" || status === "connecting";
  $("disconnect").disabled = status === "closed";
}

// --- sign in -------------------------------------------------------------------------

async function signIn(action) {
  const username = $("username").value.trim();
  const password = $("password").value;
  if (!username || !password) {
    $("account-status").textContent = "Enter a user name and a password.";
    return;
  }
  try {
    if (action === "register") {
      await postJson("/user/register", {
        identities: [{ type: "username", value: username }],
        credential: { type: "password", password },
      });
    }
    const data = await postJson("/user/login", {
      identity: { type: "username", value: username },
      credential: { type: "password", password },
    });
    setAccount(username, data.token);
  } catch (error) {
    $("account-status").textContent = `${action === "register" ? "Registering" : "Logging in"} failed: ${error.message}`;
  }
}

async function postJson(path, body) {
  const response = await fetch(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok || !answer.ok) {
    const error = answer.error || {};
    throw new Error(`${error.code || response.status}: ${error.message || response.statusText}`);
  }
  return answer.data;
}

function setAccount(user, token) {
  state.user = user;
  state.token = token;
  $("account-status").textContent = user ? `Signed in as ${user}.` : "Not signed in.";
  $("sign-out").hidden = !user;
  $("password").value = "";
  // Private connections were admitted (or refused) under the old token: start them afresh.
  for (const name of [...state.connections.keys()]) {
    if (!state.doc.channels[name]["x-jacc-public"]) disconnect(name);
  }
  renderSnippet();
}

// --- the log -------------------------------------------------------------------------

function logFrame(direction, walker, frame) {
  const arrow = direction === "in" ? "←" : "→";
  const label = direction === "in" ? "received" : "sent";
  const kind = frame.ok === false ? "error" : direction;
  addLog(kind, walker, element("span", { class: "dir", title: label, "aria-label": label }, arrow), element("code", {}, JSON.stringify(frame)));
}

function logEvent(walker, text, kind = "event") {
  addLog(kind, walker, element("span", { class: "dir", "aria-hidden": "true" }, "•"), element("span", {}, text));
}

function addLog(kind, walker, ...parts) {
  const log = $("log");
  const time = new Date();
  const stamp = time.toTimeString().slice(0, 8) + "." + String(time.getMilliseconds()).padStart(3, "0");
  const item = element("li", { class: `entry entry-${kind}` }, element("time", { datetime: time.toISOString() }, stamp), " ");
  if (walker) item.append(element("span", { class: "walker-tag" }, walker), " ");
  item.append(...parts);
  log.append(item);
  while (log.children.length > MAX_LOG) log.firstElementChild.remove();
  item.scrollIntoView({ block: "nearest" });
}

// --- copy as code --------------------------------------------------------------------

function renderSnippet() {
  if (!state.selected) return;
  const name = state.selected;
  const channel = state.doc.channels[name];
  const { payload } = readForm();
  const token = channel["x-jacc-public"] ? null : state.token || "YOUR_TOKEN";
  const make = { js: jsSnippet, python: pythonSnippet, websocat: websocatSnippet }[$("language").value];
  $("snippet").textContent = make(name, channel, payload, token);
}

function jsSnippet(name, channel, payload, token) {
  const options = { url: location.origin };
  if (token) options.token = token;
  const call = channel["x-jacc-stream"]
    ? [`for await (const chunk of walker.stream(${JSON.stringify(payload)})) console.log(chunk);`]
    : [`const reply = await walker.send(${JSON.stringify(payload)});`, "console.log(reply);"];
  return [
    `import { connect } from "${location.origin}/__jacc/jacc.js";`,
    "",
    `const walker = await connect(${JSON.stringify(name)}, ${JSON.stringify(options)});`,
    `walker.on("frame", (frame) => console.log(frame));`,
    ...call,
    "walker.close();",
  ].join("\n");
}

function wsUrl(channel, token) {
  const base = location.origin.replace(/^http/, "ws") + channel.address;
  return token ? `${base}?token=${encodeURIComponent(token)}` : base;
}

function pythonSnippet(name, channel, payload, token) {
  return [
    "import asyncio",
    "import json",
    "",
    "import websockets",
    "",
    "",
    "async def main() -> None:",
    `    async with websockets.connect(${JSON.stringify(wsUrl(channel, token))}) as ws:`,
    `        await ws.send(json.dumps(${pythonLiteral(payload)}))`,
    ...(channel["x-jacc-stream"]
      ? ["        while (frame := json.loads(await ws.recv())).get(\"type\") != \"done\":",
         "            print(frame[\"data\"])",
         "        print(frame)"]
      : ["        print(json.loads(await ws.recv()))"]),
    "",
    "",
    "asyncio.run(main())",
  ].join("\n");
}

function websocatSnippet(name, channel, payload, token) {
  return `echo ${shellQuote(JSON.stringify(payload))} | websocat -n1 ${shellQuote(wsUrl(channel, token))}`;
}

function pythonLiteral(value) {
  if (value === null) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (Array.isArray(value)) return `[${value.map(pythonLiteral).join(", ")}]`;
  if (typeof value === "object") {
    return `{${Object.entries(value).map(([key, item]) => `${JSON.stringify(key)}: ${pythonLiteral(item)}`).join(", ")}}`;
  }
  return JSON.stringify(value); // numbers, and strings: JSON's escapes are Python's
}

function shellQuote(text) {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

async function copySnippet() {
  const text = $("snippet").textContent;
  try {
    await navigator.clipboard.writeText(text);
    $("copied").textContent = "Copied.";
  } catch (error) {
    // No clipboard permission (plain http on another host): select it for Ctrl-C instead.
    const range = document.createRange();
    range.selectNodeContents($("snippet"));
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    $("copied").textContent = "Selected: press Ctrl-C to copy.";
  }
}

// --- DOM -----------------------------------------------------------------------------

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  node.append(...children);
  return node;
}

start();
