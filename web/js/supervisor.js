// The supervisors' wall screen: /ws/supervisor pushes the whole board (at most twice a second);
// waits and times in state tick here between pushes, from the server's clock. Reconnects by
// itself (live.js), and every message is the whole board, so nothing needs replaying.

import { api } from "./api.js";
import { LiveConnection } from "./live.js";
import { drawSlices } from "./chart.js";
import { startVenues, stopVenues } from "./sv-venues.js";

const $ = (sel) => document.querySelector(sel);

const STATE_JA = {
  idle: "待機",
  ringing: "呼出中",
  talking: "通話中",
  wrap_up: "後処理",
  paused: "休止",
  logged_out: "ログアウト",
};

let board = null;
/** Server clock − this browser's clock, ms (the board's `at` against receipt). */
let skew = 0;

function serverNow() {
  return Date.now() + skew;
}

function secondsSince(iso) {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? 0 : Math.max(0, Math.floor((serverNow() - t) / 1000));
}

function mmss(s) {
  if (s == null) return "–";
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, "0")}`;
}

function pct(x) {
  return x == null ? "–" : `${Math.round(x * 100)}%`;
}

function secs(x) {
  return x == null ? "–" : `${Math.round(x)}秒`;
}

function td(text, cls) {
  const c = document.createElement("td");
  c.textContent = text;
  if (cls) c.className = cls;
  return c;
}

function kpis(target, f, longest) {
  const items = [
    ["offered", "着信", f.offered],
    ["answered", "応答", f.answered],
    ["abandoned", "放棄", f.abandoned],
    ["short_abandoned", "短放棄", f.short_abandoned],
    ["timeouts", "タイムアウト", f.timeouts],
    ["service_level", "サービスレベル", pct(f.service_level)],
    ["asa", "ASA", secs(f.asa_s)],
    ["aht", "AHT", secs(f.aht_s)],
    ["abandon_rate", "放棄率", pct(f.abandon_rate)],
    ["waiting", "待ち呼", f.waiting],
    ["longest", "最長待ち", mmss(longest)],
  ];
  target.replaceChildren(
    ...items.map(([key, label, value]) => {
      const d = document.createElement("div");
      const dt = document.createElement("dt");
      dt.textContent = label;
      const dd = document.createElement("dd");
      dd.textContent = String(value ?? "–");
      dd.dataset.kpi = key;
      d.append(dt, dd);
      return d;
    }),
  );
}

function longestNow() {
  let max = null;
  for (const q of board.queues || []) {
    for (const w of q.waiting || []) {
      const s = secondsSince(w.since);
      if (max == null || s > max) max = s;
    }
  }
  return max;
}

function render() {
  if (!board) return;
  const longest = longestNow();
  kpis($("#sv-today"), board.overall.today, longest);
  kpis($("#sv-hour"), board.overall.last_hour, longest);

  const waiting = [];
  for (const q of board.queues || []) for (const w of q.waiting || []) waiting.push([q.name, w]);
  waiting.sort((a, b) => Date.parse(a[1].since) - Date.parse(b[1].since));
  $("#sv-waiting-count").textContent = String(waiting.length);
  $("#sv-waiting").replaceChildren(
    ...waiting.map(([queue, w]) => {
      const tr = document.createElement("tr");
      tr.dataset.call = w.call_id;
      const r = w.resident;
      const who = r ? (r.name ? r.name + (r.candidates > 1 ? ` 他${r.candidates - 1}名` : "") : `${r.candidates}名`) : "";
      const wait = secondsSince(w.since);
      tr.append(td(queue), td(w.caller_number || "非通知"), td(who), td(mmss(wait), `num wait${wait >= board.service_level_threshold_s ? " sv-wait-long" : ""}`));
      return tr;
    }),
  );

  $("#sv-agents").replaceChildren(
    ...(board.agents || []).map((a) => {
      const tr = document.createElement("tr");
      const live = a.live || { state: a.state };
      tr.dataset.state = live.state;
      tr.dataset.ext = a.extension;
      const label = STATE_JA[live.state] || live.state;
      tr.append(
        td(a.extension),
        td(a.display_name || a.username || ""),
        td(live.reason ? `${label}（${live.reason}）` : label, "state"),
        td(mmss(live.since ? secondsSince(live.since) : null), "num"),
      );
      return tr;
    }),
  );

  $("#sv-queues").replaceChildren(
    ...(board.queues || []).map((q) => {
      const tr = document.createElement("tr");
      tr.dataset.queue = q.name;
      const longestQ = (q.waiting || []).reduce((m, w) => Math.max(m, secondsSince(w.since)), -1);
      tr.append(
        td(q.name),
        td(String(q.offered), "num"),
        td(String(q.answered), "num"),
        td(String(q.abandoned), "num"),
        td(String(q.short_abandoned), "num"),
        td(String(q.timeouts), "num"),
        td(pct(q.service_level), "num"),
        td(secs(q.asa_s), "num"),
        td(secs(q.aht_s), "num"),
        td(longestQ < 0 ? "–" : mmss(longestQ), "num"),
      );
      return tr;
    }),
  );

  // The venues panel is sv-venues.js, fed by /ws/venues.
  $("#sv-clock").textContent = new Date(serverNow()).toLocaleTimeString("ja-JP", { timeZone: "Asia/Tokyo" });
}

let chartDrawn = "";

function onMessage(msg) {
  if (msg.type !== "hello" && msg.type !== "board") return;
  board = msg;
  const at = Date.parse(msg.at);
  if (!Number.isNaN(at)) skew = at - Date.now();
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  render();
  const key = JSON.stringify(msg.slices || []);
  if (key !== chartDrawn) {
    chartDrawn = key;
    drawSlices($("#sv-chart"), msg.slices || []);
  }
}

function setStatus(state) {
  const s = $("#sv-status");
  s.dataset.state = state;
  s.textContent = { connecting: "接続中…", online: "オンライン", reconnecting: "再接続中…", offline: "オフライン" }[state] || state;
}

const live = new LiveConnection({
  path: "/ws/supervisor",
  onMessage,
  onStatus: setStatus,
  onExpired: showLogin,
});

function showLogin() {
  stopVenues();
  $("#sv-board").hidden = true;
  $("#sv-login").hidden = false;
  $("#sv-username").focus();
}

function startBoard() {
  $("#sv-login").hidden = true;
  $("#sv-board").hidden = false;
  live.start();
  startVenues();
}

$("#sv-login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const err = $("#sv-login-error");
  const r = await api("POST", "/api/session", {
    username: $("#sv-username").value.trim(),
    password: $("#sv-password").value,
  }).catch(() => null);
  if (r && r.ok) {
    err.hidden = true;
    $("#sv-password").value = "";
    startBoard();
  } else {
    err.textContent = r && (r.status === 401 || r.status === 403) ? "ユーザー名かパスワードが違います" : "ログインできません";
    err.hidden = false;
  }
});

setInterval(render, 1000);

(async () => {
  try {
    const me = await api("GET", "/api/me");
    if (me.ok) startBoard();
    else showLogin();
  } catch {
    showLogin();
  }
})();
