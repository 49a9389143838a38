// The supervisors' reports (集計): per day or hour, calls offered and answered, service level,
// abandon rate, ASA, AHT and inquiries per category, from GET /api/reports; the same as CSV for
// Excel from GET /api/reports.csv.

import { api, onUnauthorized } from "./api.js";

const $ = (sel) => document.querySelector(sel);

const CATEGORY_JA = {
  appointment_change: "日時・会場の変更",
  appointment_cancel: "キャンセル",
  transport: "送迎バス",
  ticket: "接種券",
  side_effects: "副反応",
  eligibility: "接種対象・医療相談",
  general: "その他",
  complaint: "苦情",
};

function pct(x) {
  return x == null ? "–" : `${(x * 100).toFixed(1)}%`;
}

function secs(x) {
  return x == null ? "–" : `${Math.round(x)}秒`;
}

function cell(tag, text) {
  const c = document.createElement(tag);
  c.textContent = text;
  return c;
}

/** Today in Japan, YYYY-MM-DD. */
function todayJst() {
  return new Date(Date.now() + 9 * 3600 * 1000).toISOString().slice(0, 10);
}

function query() {
  const p = new URLSearchParams({ from: $("#rp-from").value, to: $("#rp-to").value, by: $("#rp-by").value });
  return p;
}

function updateCsvLink() {
  const p = query();
  p.set("encoding", $("#rp-encoding").value);
  $("#rp-csv").href = `/api/reports.csv?${p}`;
}

function row(r, cats, tag) {
  const f = r;
  const tr = document.createElement("tr");
  for (const v of [
    r.period,
    f.offered,
    f.answered,
    f.abandoned,
    f.short_abandoned,
    f.timeouts,
    pct(f.service_level),
    pct(f.abandon_rate),
    secs(f.asa_s),
    secs(f.aht_s),
    r.inquiries_total,
    ...cats.map((c) => r.inquiries[c] ?? 0),
  ]) {
    tr.append(cell(tag, String(v)));
  }
  return tr;
}

async function show() {
  updateCsvLink();
  const err = $("#rp-error");
  let r;
  try {
    r = await api("GET", `/api/reports?${query()}`);
  } catch {
    return;
  }
  if (!r.ok) {
    err.textContent = (r.data && r.data.error) || `エラー (${r.status})`;
    err.hidden = false;
    return;
  }
  err.hidden = true;
  const rep = r.data;
  $("#rp-note").textContent =
    `サービスレベル: ${rep.service_level_threshold_s}秒以内に応答 ÷ (応答+放棄+タイムアウト)。` +
    `${rep.short_abandon_threshold_s}秒未満の放棄は「短放棄」として別に数え、放棄率にもサービスレベルにも入れません。`;
  const head = document.createElement("tr");
  for (const h of ["期間", "入電", "応答", "放棄", "短放棄", "タイムアウト", "SL", "放棄率", "ASA", "AHT", "問合せ計",
    ...rep.categories.map((c) => CATEGORY_JA[c] || c)]) {
    head.append(cell("th", h));
  }
  $("#rp-head").replaceChildren(head);
  $("#rp-body").replaceChildren(...rep.rows.map((x) => row(x, rep.categories, "td")));
  $("#rp-total").replaceChildren(row(rep.total, rep.categories, "th"));
}

function start() {
  $("#rp-login").hidden = true;
  $("#rp-main").hidden = false;
  show();
}

function showLogin() {
  $("#rp-main").hidden = true;
  $("#rp-login").hidden = false;
}

onUnauthorized(showLogin);

$("#rp-form").addEventListener("submit", (e) => {
  e.preventDefault();
  show();
});
for (const id of ["#rp-from", "#rp-to", "#rp-by", "#rp-encoding"]) $(id).addEventListener("change", updateCsvLink);

$("#rp-login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const err = $("#rp-login-error");
  const r = await api("POST", "/api/session", {
    username: $("#rp-username").value.trim(),
    password: $("#rp-password").value,
  }).catch(() => null);
  if (r && r.ok) {
    err.hidden = true;
    $("#rp-password").value = "";
    start();
  } else {
    err.textContent = r && (r.status === 401 || r.status === 403) ? "ユーザー名かパスワードが違います" : "ログインできません";
    err.hidden = false;
  }
});

const today = todayJst();
$("#rp-from").value = today;
$("#rp-to").value = today;
updateCsvLink();
(async () => {
  try {
    const me = await api("GET", "/api/me");
    if (me.ok) start();
    else showLogin();
  } catch {
    showLogin();
  }
})();
