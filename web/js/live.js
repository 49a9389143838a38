// The live connection shared by every screen: /ws with reconnect, backoff, and an honest resume.
//
// Every message carries a `seq`. The connection remembers the last one it handled and the
// server's `epoch` (a string new at every server start), and reconnects with
// `/ws?since=SEQ&epoch=EPOCH`. The server answers first with a hello:
//   {"type":"hello","seq":N,"epoch":"…","gap":bool,…}
// then (when there is no gap) what the screen missed, then live messages. `gap` is true when the
// server could not replay everything after `since` (too old, or the server restarted: seq numbers
// restarted with it). The screen is then told to reload its state: onMessage(hello, {resync:
// true}). A hello on a brand-new connection has nothing to resume: resync is false.
//
//   const live = new LiveConnection({ onMessage, onStatus, onExpired });
//   live.start();          // after login
//   live.stop();           // on logout or an ended session
//   live.forget();         // another user: start from scratch next time
//
// onStatus(state) reports "connecting" | "online" | "reconnecting" | "offline".
// onExpired() runs when a closed socket turns out to be an ended session (GET /api/me is 401).

import { api } from "./api.js";

const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000, 30000];
const PING_MS = 25000;

export class LiveConnection {
  constructor({ path = "/ws", onMessage, onStatus = () => {}, onExpired = () => {} }) {
    this.path = path;
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    this.onExpired = onExpired;
    /** The last seq handled on this server epoch (null: nothing yet, ask for no replay). */
    this.seq = null;
    /** The server's epoch when `seq` was handed out. */
    this.epoch = null;
    this.socket = null;
    this.attempts = 0;
    this.retryTimer = null;
    this.pingTimer = null;
    this.wanted = false;
  }

  start() {
    this.wanted = true;
    if (!this.socket) this.connect();
  }

  stop() {
    this.wanted = false;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    if (this.socket) {
      const s = this.socket;
      this.socket = null;
      s.close(1000, "logout");
    }
    this.onStatus("offline");
  }

  /** Drop the resume position: the next connection starts fresh (another user logged in). */
  forget() {
    this.seq = null;
    this.epoch = null;
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const params = new URLSearchParams();
    if (this.seq != null) params.set("since", String(this.seq));
    if (this.seq != null && this.epoch != null) params.set("epoch", this.epoch);
    const query = params.toString();
    return `${scheme}://${location.host}${this.path}${query ? `?${query}` : ""}`;
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.onStatus(this.attempts === 0 && this.seq == null ? "connecting" : "reconnecting");
    let socket;
    try {
      socket = new WebSocket(this.url());
    } catch {
      this.scheduleRetry();
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", () => {
      if (this.socket !== socket) return;
      this.attempts = 0;
      this.onStatus("online");
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => {
        if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "ping" }));
      }, PING_MS);
    });
    socket.addEventListener("message", (event) => {
      if (this.socket !== socket) return;
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        return;
      }
      if (msg && typeof msg === "object") this.receive(msg);
    });
    socket.addEventListener("close", () => {
      if (this.socket !== socket) return;
      this.socket = null;
      clearInterval(this.pingTimer);
      if (!this.wanted) return;
      this.onStatus("reconnecting");
      this.checkThenRetry();
    });
  }

  /** Keeps the resume position, then hands the message to the screen. */
  receive(msg) {
    if (msg.type === "hello") {
      const epoch = msg.epoch == null ? null : String(msg.epoch);
      const resuming = this.seq != null;
      // The server says it could not replay everything; an epoch other than ours says the
      // server restarted (its seq numbers restarted too), whatever it says about the gap.
      const restarted = resuming && this.epoch != null && epoch != null && epoch !== this.epoch;
      const resync = resuming && (msg.gap === true || restarted);
      // After a gap, or on a fresh start, the hello's seq is where we stand. Without a gap the
      // replay that follows brings us there frame by frame, so a connection lost during the
      // replay resumes from the last frame actually handled.
      if (typeof msg.seq === "number" && (!resuming || resync || msg.seq < this.seq)) this.seq = msg.seq;
      this.epoch = epoch;
      this.onMessage(msg, { resync });
      return;
    }
    if (typeof msg.seq === "number" && (this.seq == null || msg.seq > this.seq)) this.seq = msg.seq;
    this.onMessage(msg, { resync: false });
  }

  /** A closed socket may mean an ended session: ask before hammering the server. */
  async checkThenRetry() {
    try {
      const r = await api("GET", "/api/me");
      if (r.status === 401) {
        this.stop();
        this.onExpired();
        return;
      }
    } catch {
      // server unreachable: keep retrying
    }
    this.scheduleRetry();
  }

  scheduleRetry() {
    if (!this.wanted) return;
    const base = BACKOFF_MS[Math.min(this.attempts, BACKOFF_MS.length - 1)];
    this.attempts += 1;
    const delay = base * (0.8 + Math.random() * 0.4);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
}
