// madoguchi 窓口: the venue's reception screen (venue.html), for the `venue` role.
//
// Built for a barcode scanner that types digits and Enter: the scan field always has the
// focus when nothing else is going on. A 10-digit 券番号 or the 18-digit OCR/QR content looks
// the resident up (GET /api/venue/reception); anything else is read as a kana name, with the
// birth date field beside it (GET /api/residents?kana=&birth_date=). After a scan the check-in
// button has the focus, so one Enter checks the resident in; then the dose form.
//
// Stable hooks for browser tests (ids unless marked [data-testid=…]):
//   login:      #login-form #login-username #login-password #login-submit #login-error
//   top bar:    #venue-select #conn-state (data-state=online|reconnecting|connecting|offline) #logout
//   progress:   #progress (data-venue-id) [data-testid=progress-booked|progress-checked-in|
//               progress-waiting|progress-vaccinated|progress-expected|progress-doses-left]
//               #forecast (data-warning=true|false)
//   reception:  #scan #scan-birth #scan-error #candidates (li[data-resident-id]) #reception
//               (data-resident-id) #warning (data-warning="" | walk_in | wrong_venue | wrong_day)
//               [data-testid=resident-name|resident-wareki|resident-ticket|resident-booking|
//               resident-doses] #checkin #checked-in #questionnaire
//   dose:       #dose-form #dose-number #dose-product #dose-lot #dose-vaccinator #dose-site
//               #dose-submit #dose-result (data-state=ok|refused|error)
//   standby:    #standby-spare (data-spare) #standby (li[data-standby-id], button
//               [data-action=take]) #standby-error
//   vials:      #receive-form #vial-product #vial-lot #vial-count #vial-receive #vials
//               (li[data-vial-id][data-state], buttons [data-action=open|discard])
//
// Server calls: GET /api/me, POST|DELETE /api/session, GET /api/venue/progress,
// GET /ws/venues, GET /api/venue/standby, POST /api/venue/standby/{id}/take,
// GET /api/venue/reception, GET /api/residents, POST /api/venue/checkins,
// POST /api/vaccinations, GET|POST /api/venue/vials, POST /api/venue/vials/{id}/open|discard.
// The 予診票 opens questionnaire.html in a new window.

import { api, errorText, onUnauthorized } from "./api.js";
import { $, h } from "./dom.js";
import { age, formatAppointment, formatSeireki, formatWareki, toAsciiDigits } from "./format.js";
import { LiveConnection } from "./live.js";

const state = {
  user: null,
  venueId: null,
  /** What the reception card shows (the answer of GET /api/venue/reception). */
  reception: null,
  /** The venue's vials today. */
  vials: [],
};

const WARNINGS = {
  "": "本日この会場の予約があります",
  walk_in: "予約がありません（予約なしの来場）",
  wrong_venue: "本日の予約は別の会場です",
  wrong_day: "予約日が本日ではありません",
};

const PRODUCTS = { pfizer: "ファイザー", moderna: "武田/モデルナ", astrazeneca: "アストラゼネカ" };

const live = new LiveConnection({
  path: "/ws/venues",
  onMessage: (msg) => {
    // Every (re)connection reads the numbers afresh; then each change arrives by itself.
    if (msg.type === "hello") {
      loadProgress();
      return;
    }
    if (msg.type === "venue_progress" && msg.progress && msg.progress.venue_id === state.venueId) {
      showProgress(msg.progress);
    }
  },
  onStatus: (s) => {
    $("#conn-state").dataset.state = s;
    $("#conn-state").textContent = { online: "接続中", reconnecting: "再接続中", connecting: "接続中…", offline: "オフライン" }[s] || s;
  },
  onExpired: () => showLogin("ログインの有効期限が切れました"),
});

// ---------------------------------------------------------------------------------------------
// Login

async function boot() {
  onUnauthorized(() => showLogin("ログインの有効期限が切れました"));
  $("#login-form").addEventListener("submit", submitLogin);
  $("#logout").addEventListener("click", logout);
  $("#scan-form").addEventListener("submit", (e) => {
    e.preventDefault();
    scan();
  });
  $("#scan").addEventListener("input", () => {
    const v = $("#scan").value.trim();
    $("#kana-row").hidden = v === "" || /^[\d０-９\s-]+$/.test(v);
  });
  // Enter in either field looks up (a form with two text fields has no implicit submission).
  for (const field of ["#scan", "#scan-birth"]) {
    $(field).addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        scan();
      }
    });
  }
  $("#checkin").addEventListener("click", checkIn);
  $("#questionnaire").addEventListener("click", openQuestionnaire);
  $("#dose-form").addEventListener("submit", (e) => {
    e.preventDefault();
    recordDose();
  });
  $("#receive-form").addEventListener("submit", (e) => {
    e.preventDefault();
    receiveVials();
  });
  $("#venue-select").addEventListener("change", () => {
    state.venueId = Number($("#venue-select").value);
    try {
      localStorage.setItem("madoguchi.venue", String(state.venueId));
    } catch {
      // private mode: the choice lasts this page only
    }
    clearReception();
    loadProgress();
    loadVials();
    loadStandby();
  });
  try {
    const vaccinator = localStorage.getItem("madoguchi.vaccinator");
    if (vaccinator) $("#dose-vaccinator").value = vaccinator;
  } catch {
    // no storage: typed each time
  }
  try {
    const r = await api("GET", "/api/me");
    if (r.ok && r.data && r.data.user) start(r.data.user);
    else showLogin();
  } catch {
    showLogin("サーバーに接続できません");
  }
}

function showLogin(message = "") {
  live.stop();
  $("#login-view").hidden = false;
  $("#app-view").hidden = true;
  $("#venue-picker").hidden = true;
  $("#logout").hidden = true;
  $("#login-error").textContent = message;
  $("#login-error").hidden = !message;
  $("#login-username").focus();
}

async function submitLogin(e) {
  e.preventDefault();
  const username = $("#login-username").value.trim();
  const password = $("#login-password").value;
  const r = await api("POST", "/api/session", { username, password });
  if (r.ok && r.data && r.data.user) {
    $("#login-password").value = "";
    start(r.data.user);
  } else {
    showLogin(r.status === 401 ? "ユーザー名またはパスワードが違います" : errorText(r));
  }
}

async function logout() {
  await api("DELETE", "/api/session");
  live.stop();
  live.forget();
  showLogin();
}

async function start(user) {
  state.user = user;
  $("#login-view").hidden = true;
  $("#app-view").hidden = false;
  $("#logout").hidden = false;
  $("#v-user").textContent = user.display_name || user.username;
  const r = await api("GET", "/api/venue/progress");
  const venues = r.ok && Array.isArray(r.data) ? r.data : [];
  const select = $("#venue-select");
  select.replaceChildren(...venues.map((v) => h("option", { value: v.venue_id, text: v.venue_name })));
  let saved = null;
  try {
    saved = Number(localStorage.getItem("madoguchi.venue"));
  } catch {
    saved = null;
  }
  const chosen = venues.find((v) => v.venue_id === saved) || venues[0];
  state.venueId = chosen ? chosen.venue_id : null;
  if (chosen) select.value = String(chosen.venue_id);
  $("#venue-picker").hidden = venues.length === 0;
  if (chosen) showProgress(chosen);
  loadVials();
  loadStandby();
  live.start();
  $("#scan").focus();
}

// ---------------------------------------------------------------------------------------------
// Progress

async function loadProgress() {
  if (state.venueId == null) return;
  const r = await api("GET", `/api/venue/progress?venue=${state.venueId}`);
  if (r.ok && Array.isArray(r.data) && r.data[0]) showProgress(r.data[0]);
}

function showProgress(p) {
  $("#progress").dataset.venueId = String(p.venue_id);
  // The standby list and its spare doses follow every change of the venue's day (a standby
  // entry added or taken pushes the progress too).
  loadStandby();
  const set = (id, n) => {
    $(`[data-testid=${id}]`).textContent = String(n);
  };
  set("progress-booked", p.booked);
  set("progress-checked-in", p.checked_in);
  set("progress-waiting", p.waiting);
  set("progress-vaccinated", p.vaccinated);
  set("progress-expected", p.expected);
  set("progress-doses-left", p.doses_left);
  showForecast(p.forecast);
}

/** Reception's throughput and the forecast wait, with a warning when it is too long. */
function showForecast(f) {
  const el = $("#forecast");
  if (!f) return;
  el.dataset.warning = String(!!f.warning);
  if (f.throughput_per_min == null) {
    el.textContent = "受付処理数: 本日の受付開始後に表示します";
    return;
  }
  const wait = Math.round(f.forecast_wait_min || 0);
  let text = `受付処理 ${f.throughput_per_min}人/分・予測待ち 最大${wait}分`;
  if (f.warning) {
    const from = new Date(f.warn_from).toLocaleTimeString("ja-JP", { timeZone: "Asia/Tokyo", hour: "2-digit", minute: "2-digit" });
    text = `⚠ ${from}から受付待ちが${f.max_wait_min}分を超える見込みです（最大${wait}分）。受付の増員を検討してください。 ${text}`;
  }
  el.textContent = text;
}

// ---------------------------------------------------------------------------------------------
// Reception

function scanError(message) {
  $("#scan-error").textContent = message;
  $("#scan-error").hidden = !message;
}

function clearReception() {
  state.reception = null;
  $("#reception").hidden = true;
  $("#candidates").hidden = true;
  scanError("");
}

async function scan() {
  const raw = $("#scan").value.trim();
  if (!raw || state.venueId == null) return;
  clearReception();
  const digits = toAsciiDigits(raw).replace(/[\s-]/g, "");
  if (/^\d+$/.test(digits)) {
    if (digits.length !== 10 && digits.length !== 18) {
      scanError(`券番号は10桁、OCR行は18桁です（${digits.length}桁を読み取りました）`);
      $("#scan").select();
      return;
    }
    await openReception(`scan=${digits}`);
    return;
  }
  // A kana name, with the birth date beside it.
  const birth = $("#scan-birth").value.trim();
  if (!birth) {
    $("#kana-row").hidden = false;
    $("#scan-birth").focus();
    return;
  }
  const q = new URLSearchParams({ kana: raw, birth_date: birth });
  const r = await api("GET", `/api/residents?${q}`);
  if (!r.ok) {
    scanError(errorText(r));
    return;
  }
  pickFrom(r.data || []);
}

function pickFrom(found) {
  if (found.length === 0) {
    scanError("該当する方がいません");
    $("#scan").select();
    return;
  }
  if (found.length === 1) {
    openReception(`resident_id=${found[0].id}`);
    return;
  }
  const list = $("#candidates");
  list.replaceChildren(
    ...found.map((p) =>
      h(
        "li",
        { "data-resident-id": p.id },
        h(
          "button",
          { type: "button", class: "btn", onclick: () => openReception(`resident_id=${p.id}`) },
          `${p.name}（${p.name_kana}） ${formatWareki(p.birth_date)} 券番号 ${p.ticket_no}`,
        ),
      ),
    ),
  );
  list.hidden = false;
  list.querySelector("button").focus();
}

async function openReception(query) {
  const r = await api("GET", `/api/venue/reception?venue=${state.venueId}&${query}`);
  if (r.status === 404) {
    scanError("この券番号の方は登録されていません");
    $("#scan").select();
    return;
  }
  if (!r.ok) {
    scanError(errorText(r));
    $("#scan").select();
    return;
  }
  if (r.data.candidates) {
    pickFrom(r.data.candidates);
    return;
  }
  $("#candidates").hidden = true;
  $("#scan").value = "";
  $("#scan-birth").value = "";
  $("#kana-row").hidden = true;
  showReception(r.data);
  if (!r.data.checkin) $("#checkin").focus();
  else focusDose();
}

function describeBooking(b) {
  if (!b) return "なし";
  return `${b.dose}回目 ${formatAppointment(b.starts_at)} ${b.venue_name}（${PRODUCTS[b.product] || b.product}）`;
}

function showReception(r) {
  state.reception = r;
  const p = r.resident;
  $("#reception").hidden = false;
  $("#reception").dataset.residentId = String(p.id);
  const w = $("#warning");
  w.dataset.warning = r.warning;
  w.textContent = WARNINGS[r.warning] || r.warning;
  if (r.ticket_dose && r.ticket_dose !== r.proposed_dose) {
    w.textContent += `（接種券は${r.ticket_dose}回目用、記録上は${r.proposed_dose}回目）`;
  }
  $("#r-name").textContent = p.name;
  $("#r-kana").textContent = p.name_kana;
  $("#r-wareki").textContent = formatWareki(p.birth_date);
  $("#r-seireki").textContent = formatSeireki(p.birth_date);
  $("#r-age").textContent = `${age(p.birth_date)}歳`;
  $("#r-ticket").textContent = `${p.municipality_code}-${p.ticket_no}`;
  $("#r-address").textContent = p.address;
  $("#r-booking").textContent = describeBooking(r.booking);
  const current = r.vaccinations.filter((v) => !v.superseded_at);
  $("#r-doses").textContent = current.length
    ? current.map((v) => `${v.dose}回目 ${v.given_on} ${PRODUCTS[v.product] || v.product} ${v.lot}`).join(" / ")
    : "なし";
  const checked = $("#checked-in");
  checked.hidden = !r.checkin;
  checked.textContent = r.checkin ? `受付済 ${formatAppointment(r.checkin.checked_in_at)}` : "";
  $("#checkin").hidden = !!r.checkin;
  $("#dose-number").value = String(r.proposed_dose);
  const product = (r.booking && r.booking.product) || (state.vials.find((v) => v.state === "open") || {}).product;
  if (product) $("#dose-product").value = product;
  const result = $("#dose-result");
  result.textContent = "";
  result.dataset.state = "";
}

async function checkIn() {
  const r = state.reception;
  if (!r) return;
  const res = await api("POST", "/api/venue/checkins", { resident_id: r.resident.id, venue_id: state.venueId });
  if (!res.ok) {
    scanError(errorText(res));
    return;
  }
  r.checkin = res.data.checkin;
  showReception(r);
  focusDose();
}

function focusDose() {
  const lot = $("#dose-lot");
  if (!lot.value) lot.value = defaultLot();
  if (!lot.value) lot.focus();
  else if (!$("#dose-vaccinator").value) $("#dose-vaccinator").focus();
  else $("#dose-submit").focus();
}

function defaultLot() {
  const product = $("#dose-product").value;
  const open = state.vials.find((v) => v.state === "open" && v.product === product);
  return open ? open.lot : "";
}

function openQuestionnaire() {
  const r = state.reception;
  if (!r) return;
  window.open(`/assets/questionnaire.html?resident=${r.resident.id}&venue=${state.venueId}`, "_blank");
}

// ---------------------------------------------------------------------------------------------
// Recording a dose

async function recordDose() {
  const r = state.reception;
  if (!r) return;
  const result = $("#dose-result");
  const vaccinator = $("#dose-vaccinator").value.trim();
  try {
    localStorage.setItem("madoguchi.vaccinator", vaccinator);
  } catch {
    // no storage
  }
  const body = {
    resident_id: r.resident.id,
    dose: Number($("#dose-number").value),
    product: $("#dose-product").value,
    lot: $("#dose-lot").value.trim(),
    vaccinator,
    injection_site: $("#dose-site").value,
    given_at: new Date().toISOString(),
    venue_id: state.venueId,
  };
  $("#dose-submit").disabled = true;
  try {
    const res = await api("POST", "/api/vaccinations", body);
    if (res.status === 201) {
      result.dataset.state = "ok";
      result.textContent = `${res.data.dose}回目を記録しました（ロット ${res.data.lot}）`;
      loadVials();
      const again = await api("GET", `/api/venue/reception?venue=${state.venueId}&resident_id=${r.resident.id}`);
      if (again.ok && !again.data.candidates) {
        showReception(again.data);
        result.dataset.state = "ok";
        result.textContent = `${res.data.dose}回目を記録しました（ロット ${res.data.lot}）`;
      }
      $("#scan").focus();
    } else {
      result.dataset.state = res.status === 409 ? "refused" : "error";
      result.textContent = errorText(res);
    }
  } finally {
    $("#dose-submit").disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Vials

const VIAL_STATES = { unopened: "未開封", open: "使用中", expired: "6時間経過", empty: "使用済", discarded: "廃棄" };

async function loadVials() {
  if (state.venueId == null) return;
  const r = await api("GET", `/api/venue/vials?venue=${state.venueId}`);
  state.vials = r.ok && Array.isArray(r.data) ? r.data : [];
  const lots = [...new Set(state.vials.filter((v) => v.state === "open").map((v) => v.lot))];
  $("#open-lots").replaceChildren(...lots.map((l) => h("option", { value: l })));
  $("#vials").replaceChildren(
    ...state.vials.map((v) =>
      h(
        "li",
        { "data-vial-id": v.id, "data-state": v.state },
        h("span", { class: "mono" }, `${PRODUCTS[v.product] || v.product} ${v.lot}`),
        h("span", {}, ` ${VIAL_STATES[v.state] || v.state} ${v.drawn}/${v.doses_per_vial}`),
        v.expires_at && v.state === "open" ? h("span", { class: "v-until" }, ` 期限 ${formatAppointment(v.expires_at)}`) : null,
        v.state === "unopened"
          ? h("button", { type: "button", class: "btn", "data-action": "open", onclick: () => vialAction(v.id, "open") }, "開封")
          : null,
        v.state !== "discarded"
          ? h("button", { type: "button", class: "btn btn-quiet", "data-action": "discard", onclick: () => discard(v.id) }, "廃棄")
          : null,
      ),
    ),
  );
}

async function receiveVials() {
  const body = {
    venue_id: state.venueId,
    product: $("#vial-product").value,
    lot: $("#vial-lot").value.trim(),
    count: Number($("#vial-count").value || 1),
  };
  const r = await api("POST", "/api/venue/vials", body);
  $("#vial-error").hidden = r.ok;
  $("#vial-error").textContent = r.ok ? "" : errorText(r);
  if (r.ok) $("#vial-lot").value = "";
  loadVials();
}

async function vialAction(id, action, body = {}) {
  const r = await api("POST", `/api/venue/vials/${id}/${action}`, body);
  $("#vial-error").hidden = r.ok;
  $("#vial-error").textContent = r.ok ? "" : errorText(r);
  loadVials();
}

function discard(id) {
  const reason = window.prompt("廃棄の理由");
  if (reason && reason.trim()) vialAction(id, "discard", { reason: reason.trim() });
}

// ---------------------------------------------------------------------------------------------
// Standby (待機リスト)

async function loadStandby() {
  if (state.venueId == null) return;
  const r = await api("GET", `/api/venue/standby?venue=${state.venueId}`);
  if (!r.ok || !r.data) return;
  const d = r.data;
  const spare = $("#standby-spare");
  spare.dataset.spare = String(d.spare);
  spare.textContent =
    d.spare > 0
      ? `開封済バイアルの残り ${d.doses_left}回に対し未来場 ${d.expected}名: ${d.spare}回分が余ります。待機の方に連絡してください。`
      : `開封済バイアルの残り ${d.doses_left}回 / 未来場 ${d.expected}名`;
  spare.classList.toggle("v-spare-warn", d.spare > 0);
  $("#standby").replaceChildren(
    ...d.entries.map((e) =>
      h(
        "li",
        { "data-standby-id": e.id },
        h("span", { class: "v-standby-name" }, `${e.name}（${e.name_kana}）${e.nearby ? " 近隣" : ""}`),
        h("a", { class: "mono", href: `tel:${e.phone.replace(/[^0-9+]/g, "")}` }, e.phone || "電話番号なし"),
        h("span", {}, ` ${e.dose}回目 希望日 ${e.asked_on}${e.booked_at ? ` 現在の予約 ${formatAppointment(e.booked_at)}` : ""}`),
        e.note ? h("span", { class: "v-note" }, ` ${e.note}`) : null,
        h("button", { type: "button", class: "btn", "data-action": "take", onclick: () => takeStandby(e.id) }, "本日の枠に予約"),
      ),
    ),
  );
}

async function takeStandby(id) {
  const r = await api("POST", `/api/venue/standby/${id}/take`, {});
  $("#standby-error").hidden = r.ok;
  $("#standby-error").textContent = r.ok ? "" : errorText(r);
  loadStandby();
}

boot();
