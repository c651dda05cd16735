// jacc.js: a WebSocket client for the walkers and functions of a `jacc serve` app
// (docs/client.md). An ES module with no dependencies, served at /__jacc/jacc.js.
//
//   import { connect } from "/__jacc/jacc.js";
//   const chat = await connect("ChatRoom", { token, url });
//   chat.on("frame", (frame) => ...);
//   const reply = await chat.send({ message: "hi" });
//   const words = await connect("words");          // a WebSocket function: /ws/function/words
//   for await (const chunk of words.stream({ text: "a b c" })) ...
//   chat.close();
//
// How a reply is told from a broadcast, reconnection and resume, and token refresh
// are described in docs/client.md; the wire protocol is docs/protocol.md.

const DEFAULTS = {
  initialDelay: 250, // ms before the first reconnect attempt
  maxDelay: 10000, // the cap of the exponential backoff
  refreshMargin: [1000, 60000], // refresh this long before `exp`: 20% of the lifetime, within these
};

// Close codes after which reconnecting would only fail again the same way.
const CLOSE_UNAUTHORIZED = 4401;

/** An error frame (or a lost connection) as an Error: `code`, `reason`, `details`, `frame`. */
export class JaccError extends Error {
  constructor(code, message, frame = null) {
    super(message ? `${code}: ${message}` : code);
    this.name = "JaccError";
    this.code = code;
    this.frame = frame;
    const error = (frame && frame.error) || {};
    this.reason = error.reason;
    this.details = error.details;
    this.line = error.line;
  }
}

/**
 * Open a connection to the WebSocket walker or function `walker`; resolves once it is open.
 *
 * options: token, getToken (async () => token, for refresh and reconnects), url (the
 * server's origin; defaults to the page's), broadcast, controls and path (what
 * /asyncapi.json says, when the page cannot read it: `path` is the channel's address,
 * `/ws/function/NAME` for a function), initialDelay, maxDelay.
 */
export async function connect(walker, options = {}) {
  const connection = new WalkerConnection(walker, options);
  await connection._start();
  return connection;
}

class WalkerConnection {
  constructor(walker, options) {
    this.walker = walker;
    this.options = { ...DEFAULTS, ...options };
    this.base = httpBase(options.url);
    this.token = options.token || null;
    this.state = "connecting"; // connecting | open | reconnecting | closed
    this.lastOffset = null; // the newest broadcast `offset` seen, for ?since= (docs/client.md)
    this._listeners = new Map();
    this._outbox = []; // frames written once a socket is open, in order
    this._pending = []; // what was written on this socket and awaits its direct reply, in order
    this._unmatched = []; // broadcast sends that succeeded but whose own broadcast is still to come
    this._attempt = 0;
    this._socket = null;
    this._timers = new Set();
  }

  /** Listen for "frame" (every frame in), "sent" (every frame out), "open", "close"; returns an unsubscribe function. */
  on(event, listener) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(listener);
    return () => this._listeners.get(event).delete(listener);
  }

  /** Send `fields` to run the walker once; resolves with its reply frame, rejects with a JaccError. */
  send(fields) {
    return new Promise((resolve, reject) => {
      this._enqueue({ kind: "request", frame: fields, resolve, reject });
    });
  }

  /** Run a streaming walker or function: yields each chunk's `data` until `done` (docs/protocol.md, "Streams").
   * On a target that does not stream it yields the one answer: a function's result, or a
   * walker's reports one by one. */
  stream(fields) {
    const entry = { kind: "stream", frame: fields, queue: [], wake: null, ended: false, error: null };
    entry.resolve = () => {};
    entry.reject = (error) => endStream(entry, error);
    this._enqueue(entry);
    return streamIterator(entry);
  }

  /** Close for good: no reconnect; whatever awaits a reply is rejected. */
  close() {
    this._setState("closed");
    for (const timer of this._timers) clearTimeout(timer);
    this._timers.clear();
    this._failAll(new JaccError("CONNECTION_CLOSED", "closed by the client"), true);
    if (this._socket) this._socket.close(1000);
  }

  // --- the socket --------------------------------------------------------------------

  async _start() {
    this.info = await describe(this.base, this.walker, this.options);
    try {
      await this._open();
    } catch (error) {
      this.close(); // a connection that never worked does not retry behind the caller's back
      throw error;
    }
  }

  _open() {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(this._url());
      this._socket = socket;
      let opened = false;
      socket.onopen = () => {
        opened = true;
        this._attempt = 0;
        this._setState("open");
        this._emit("open", { url: redact(socket.url) });
        this._scheduleRefresh();
        // With a token, one ping round trip proves it was accepted before connect() returns.
        if (this.token && this.info.controls) this._control("ping").then(resolve, reject);
        else resolve();
        this._flush();
      };
      socket.onmessage = (event) => this._receive(event.data);
      socket.onclose = (event) => {
        if (socket !== this._socket) return;
        this._closed(event.code, event.reason);
        if (!opened) reject(new JaccError("CONNECTION_FAILED", `could not connect to ${redact(socket.url)} (${event.code})`));
      };
    });
  }

  _url() {
    const query = new URLSearchParams();
    if (this.token) query.set("token", this.token);
    if (this.info.broadcast) {
      // Offsets on every broadcast, and a replay of what was missed since the last one (docs/client.md).
      query.set("offsets", "1");
      if (this.lastOffset !== null) query.set("since", this.lastOffset);
    }
    const text = query.toString();
    // The channel's own address: /ws/walker/NAME for a walker, /ws/function/NAME for a function.
    const path = this.info.address || `/ws/walker/${encodeURIComponent(this.walker)}`;
    return `${wsBase(this.base)}${path}${text ? "?" + text : ""}`;
  }

  _closed(code, reason) {
    this._socket = null;
    this._cancelRefresh();
    const again = this.state !== "closed" && (code !== CLOSE_UNAUTHORIZED || this.options.getToken);
    const delay = again ? this._backoff() : null;
    this._failAll(new JaccError("CONNECTION_CLOSED", `connection closed (${code}${reason ? " " + reason : ""})`), !again);
    this._emit("close", { code, reason, reconnectIn: delay });
    if (!again) {
      this._setState("closed");
      return;
    }
    this._setState("reconnecting");
    this._later(delay, () => this._reconnect());
  }

  async _reconnect() {
    if (this.state === "closed") return;
    try {
      if (this.options.getToken) this.token = await this.options.getToken();
      await this._open();
    } catch (error) {
      // _open's close handler has already scheduled the next attempt.
    }
  }

  _backoff() {
    // Exponential with jitter: half the step fixed, half random, so clients spread out.
    const step = Math.min(this.options.maxDelay, this.options.initialDelay * 2 ** this._attempt);
    this._attempt += 1;
    return Math.round(step / 2 + Math.random() * (step / 2));
  }

  _setState(state) {
    if (this.state !== "closed") this.state = state;
  }

  _later(delay, action) {
    const timer = setTimeout(() => {
      this._timers.delete(timer);
      action();
    }, delay);
    this._timers.add(timer);
    return timer;
  }

  _emit(event, value) {
    for (const listener of this._listeners.get(event) || []) {
      try {
        listener(value);
      } catch (error) {
        console.error(error); // a listener's bug must not break the connection
      }
    }
  }

  // --- frames out --------------------------------------------------------------------

  _enqueue(entry) {
    if (this.state === "closed") {
      entry.reject(new JaccError("CONNECTION_CLOSED", "the connection is closed"));
      return;
    }
    this._outbox.push(entry);
    this._flush();
  }

  _flush() {
    while (this._outbox.length && this._socket && this._socket.readyState === WebSocket.OPEN) {
      this._write(this._outbox.shift());
    }
  }

  _write(entry) {
    this._socket.send(JSON.stringify(entry.frame));
    this._emit("sent", entry.frame);
    this._pending.push(entry);
    if (entry.kind === "request" && this.info.broadcast) {
      // The success of a broadcast walker comes back as a broadcast, like everyone's; a
      // ping behind the request marks where its own answers end (docs/client.md).
      entry.fenced = this.info.controls;
      if (entry.fenced) this._write({ kind: "fence", frame: { type: "ping" }, resolve() {}, reject() {} });
    }
  }

  _control(type, extra = {}) {
    return new Promise((resolve, reject) => {
      const entry = { kind: "control", frame: { type, ...extra }, resolve, reject };
      if (this._socket && this._socket.readyState === WebSocket.OPEN) this._write(entry);
      else this._enqueue(entry);
    });
  }

  // --- frames in ---------------------------------------------------------------------

  _receive(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch (error) {
      return; // the server sends JSON only; anything else is not ours to interpret
    }
    if (typeof frame.offset === "string") this.lastOffset = frame.offset;
    this._emit("frame", frame);
    const type = frame.type;
    if (type === "resumed") return;
    if (type === "chunk") return this._chunk(frame);
    if (type === "pong" || type === "refreshed" || type === "done") return this._direct(frame);
    if (frame.ok === false) return this._direct(frame);
    if (frame.ok === true && this.info.broadcast) return this._broadcast(frame);
    if (frame.ok === true) return this._direct(frame);
  }

  // A frame that answers the oldest thing written: frames on one connection are answered in order.
  _direct(frame) {
    const isError = frame.ok === false && frame.type !== "done";
    // A broadcast send with no error before the next direct answer has succeeded.
    while (this._pending.length && this._pending[0].fenced && !isError) {
      this._succeeded(this._pending.shift());
    }
    if (isError && frame.error.code === "RATE_LIMITED" && this._pending.length && this._pending[0].fenced) {
      return this._resync(frame);
    }
    const entry = this._pending.shift();
    if (!entry) return; // unsolicited: an expiry or a timeout, before a close
    if (isError) {
      entry.reject(new JaccError(frame.error.code, frame.error.message, frame));
    } else if (entry.kind === "stream") {
      this._streamEnd(entry, frame);
    } else if (frame.type === "done" && frame.ok === false) {
      // send() on a stream: it ends with the done frame, which may carry why it failed.
      entry.reject(new JaccError(frame.error.code, frame.error.message, frame));
    } else {
      entry.resolve(frame);
    }
  }

  // A refused frame among a send and its fence could be either: rather than guess (and pair
  // every later answer with the wrong send), fail what is in flight and start a new socket.
  _resync(frame) {
    const message = `${frame.error.message} (one of the frames in flight was refused; which one cannot be told)`;
    this._failAll(new JaccError("RATE_LIMITED", message, frame), false);
    if (this._socket) this._socket.close(1000, "resync");
  }

  _succeeded(entry) {
    if (entry.candidate) entry.resolve(entry.candidate);
    else this._unmatched.push(entry); // its own broadcast is still on the way (another worker)
  }

  _broadcast(frame) {
    if (this._unmatched.length) return this._unmatched.shift().resolve(frame);
    const entry = this._pending.find((item) => item.kind === "request");
    if (!entry) return;
    if (entry.fenced) {
      // The newest success seen before the fence: its own, unless another sender's raced in.
      entry.candidate = frame;
    } else if (entry === this._pending[0]) {
      // No fence possible (the walker has a `type` field): the next success is taken.
      this._pending.shift();
      entry.resolve(frame);
    }
  }

  _chunk(frame) {
    const entry = this._pending[0];
    if (entry && entry.kind === "stream") pushChunk(entry, frame.data);
  }

  _streamEnd(entry, frame) {
    if (frame.type === "done") {
      const failed = frame.ok === false && frame.error;
      return endStream(entry, failed ? new JaccError(failed.code, failed.message, frame) : null);
    }
    // A target that does not stream answers once: a function's result is the one chunk,
    // a walker's reports are the chunks.
    const data = frame.data || {};
    if ("result" in data) pushChunk(entry, data.result);
    else for (const report of data.reports || []) pushChunk(entry, report);
    endStream(entry, null);
  }

  _failAll(error, includingOutbox) {
    const entries = [...this._pending, ...this._unmatched, ...(includingOutbox ? this._outbox : [])];
    this._pending = [];
    this._unmatched = [];
    if (includingOutbox) this._outbox = [];
    for (const entry of entries) entry.reject(error);
  }

  // --- token refresh -----------------------------------------------------------------

  _scheduleRefresh() {
    this._cancelRefresh();
    if (!this.options.getToken || !this.token || !this.info.controls) return;
    const claims = jwtClaims(this.token);
    if (!claims || typeof claims.exp !== "number") return;
    const [least, most] = this.options.refreshMargin;
    const lifetime = (claims.exp - (claims.iat || Date.now() / 1000)) * 1000;
    const margin = Math.min(most, Math.max(least, lifetime * 0.2));
    const delay = Math.max(0, claims.exp * 1000 - margin - Date.now());
    this._refreshTimer = this._later(delay, () => this._refresh());
  }

  _cancelRefresh() {
    if (this._refreshTimer) {
      clearTimeout(this._refreshTimer);
      this._timers.delete(this._refreshTimer);
      this._refreshTimer = null;
    }
  }

  async _refresh() {
    this._refreshTimer = null;
    try {
      const token = await this.options.getToken();
      await this._control("refresh", { token });
      this.token = token; // the next reconnect uses it too
    } catch (error) {
      this._emit("error", error);
      return; // the old token runs out and the server closes (4401); a reconnect asks again
    }
    this._scheduleRefresh();
  }
}

// --- streams ---------------------------------------------------------------------------

function pushChunk(entry, data) {
  entry.queue.push(data);
  wake(entry);
}

function endStream(entry, error) {
  entry.ended = true;
  entry.error = error;
  wake(entry);
}

function wake(entry) {
  if (entry.wake) {
    const resume = entry.wake;
    entry.wake = null;
    resume();
  }
}

async function* streamIterator(entry) {
  while (true) {
    if (entry.queue.length) {
      yield entry.queue.shift();
    } else if (entry.ended) {
      if (entry.error) throw entry.error;
      return;
    } else {
      await new Promise((resume) => (entry.wake = resume));
    }
  }
}

// --- what the server says about the walker ---------------------------------------------

const documents = new Map(); // origin → Promise of its /asyncapi.json, fetched once

/** broadcast, public, controls (whether ping/refresh frames exist), stream and address of `walker`. */
async function describe(base, walker, options) {
  const given = {
    broadcast: options.broadcast, public: options.public, controls: options.controls,
    stream: options.stream, address: options.path,
  };
  if (given.broadcast !== undefined && given.controls !== undefined) return given;
  let channel = null;
  try {
    if (!documents.has(base)) documents.set(base, fetch(`${base}/asyncapi.json`).then((r) => r.json()));
    channel = (await documents.get(base)).channels[walker] || null;
    if (!channel) documents.delete(base); // perhaps added by a dev reload since: read it afresh next time
  } catch (error) {
    documents.delete(base); // unreadable (another origin without CORS): ask again next time
  }
  if (!channel) {
    // Nothing known: no fence and no control frames, which a `type` field would take as fields.
    return {
      broadcast: given.broadcast ?? false, public: given.public, controls: given.controls ?? false,
      stream: given.stream ?? false, address: given.address,
    };
  }
  return {
    broadcast: given.broadcast ?? Boolean(channel["x-jacc-broadcast"]),
    public: given.public ?? Boolean(channel["x-jacc-public"]),
    controls: given.controls ?? Boolean(channel.messages && channel.messages.ping),
    stream: given.stream ?? Boolean(channel["x-jacc-stream"]),
    address: given.address ?? channel.address,
  };
}

// --- small helpers ---------------------------------------------------------------------

function httpBase(url) {
  const origin = typeof location !== "undefined" ? location.origin : undefined;
  if (!url && !origin) throw new JaccError("NO_URL", "give `url` outside a web page");
  const parsed = new URL(url || origin, origin);
  const scheme = { "ws:": "http:", "wss:": "https:" }[parsed.protocol] || parsed.protocol;
  return `${scheme}//${parsed.host}`;
}

function wsBase(base) {
  return base.replace(/^http/, "ws");
}

function redact(url) {
  return url.replace(/token=[^&]*/, "token=[redacted]");
}

function jwtClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
  } catch (error) {
    return null;
  }
}
