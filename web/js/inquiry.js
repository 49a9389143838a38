// The inquiry form: one per screen, its draft kept in the screen's state, saved against the call.

import { api, errorText, Unauthorized } from "./api.js";
import { renderBanner } from "./banner.js";
import { $, $$, h } from "./dom.js";
import { refreshHistory } from "./history.js";
import { CATEGORIES, lang, RELATIONSHIPS, t } from "./i18n.js";
import { isDirty, newDraft, persist, state } from "./state.js";
import { renderSessions } from "./workspace.js";

export function updateFormHeading(s, root = document) {
  const el = $("#inquiry-heading", root);
  if (!el) return;
  el.textContent = s.record ? t("form.heading.for", { name: s.record.name }) : t("form.heading");
}

export function buildInquiryForm(s) {
  const panel = $("#tpl-inquiry").content.firstElementChild.cloneNode(true);
  const form = $("#inquiry-form", panel);
  const category = $("#inquiry-category", panel);
  category.append(h("option", { value: "", "data-i18n": "form.category.choose" }));
  for (const c of CATEGORIES) category.append(h("option", { value: c, "data-i18n": `cat.${c}` }));
  const options = $("#relationship-options", panel);
  for (const [ja, en] of RELATIONSHIPS) options.append(h("option", { value: ja, label: lang() === "en" ? en : null }));

  const note = $("#inquiry-note", panel);
  const relationship = $("#inquiry-relationship", panel);
  const followUp = $("#inquiry-follow-up", panel);
  const self = $("#inquiry-who-self", panel);
  const proxy = $("#inquiry-who-proxy", panel);

  // Restore the draft.
  category.value = s.draft.category;
  note.value = s.draft.note;
  relationship.value = s.draft.relationship;
  followUp.checked = s.draft.follow_up;
  (s.draft.caller_kind === "proxy" ? proxy : self).checked = true;
  $("#inquiry-relationship-field", panel).hidden = s.draft.caller_kind !== "proxy";

  const read = (event) => {
    const before = isDirty(s);
    s.draft = {
      category: category.value,
      note: note.value,
      caller_kind: proxy.checked ? "proxy" : "self",
      relationship: relationship.value,
      follow_up: followUp.checked,
    };
    $("#inquiry-relationship-field", panel).hidden = s.draft.caller_kind !== "proxy";
    const field = event && event.target && event.target.name;
    if (s.formError && (s.formError.field === field || s.formError.field === "_")) {
      s.formError = null;
      showFormError(panel, null);
    }
    if (isDirty(s) !== before) renderSessions();
    else persist();
  };
  form.addEventListener("input", read);
  form.addEventListener("change", (event) => {
    read(event);
    if (event.target === proxy && proxy.checked) relationship.focus();
  });

  // Ctrl+Enter (⌘+Enter) saves; Enter is a new line. Never while the IME is still converting.
  note.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey) || event.isComposing || event.keyCode === 229) return;
    event.preventDefault();
    form.requestSubmit();
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitInquiry(s, panel);
  });

  showFormError(panel, s.formError);
  setSaving(panel, s.saving);
  return panel;
}

function showFormError(panel, error) {
  for (const el of $$("[data-field-error]", panel)) {
    const mine = error && (error.field === el.dataset.fieldError || (el.dataset.fieldError === "_" && !fieldElement(panel, error.field)));
    el.textContent = mine ? error.message : "";
    el.hidden = !mine;
  }
  for (const name of ["category", "note", "relationship"]) {
    const input = fieldElement(panel, name);
    input.setAttribute("aria-invalid", String(Boolean(error && error.field === name)));
  }
}

function fieldElement(panel, field) {
  const sel = {
    category: "#inquiry-category",
    note: "#inquiry-note",
    relationship: "#inquiry-relationship",
    caller_kind: "#inquiry-who-self",
    follow_up: "#inquiry-follow-up",
  }[field];
  return sel ? $(sel, panel) : null;
}

function setSaving(panel, saving) {
  const button = $("#inquiry-submit", panel);
  button.disabled = saving;
  button.textContent = saving ? t("form.saving") : t("form.submit");
  $("#inquiry-form", panel).setAttribute("aria-busy", String(saving));
}

function failForm(s, panel, field, message) {
  s.formError = { field, message };
  if (!panel.isConnected) return;
  if (field === "relationship") $("#inquiry-relationship-field", panel).hidden = false;
  showFormError(panel, s.formError);
  const input = fieldElement(panel, field);
  (input || $("#inquiry-submit", panel)).focus();
}

async function submitInquiry(s, panel) {
  if (s.saving) return;
  const d = s.draft;
  if (!s.record) return failForm(s, panel, "_", s.candidates.length > 1 ? t("pick.choose") : t("form.err.resident"));
  if (!d.category) return failForm(s, panel, "category", t("form.err.category"));
  if (d.caller_kind === "proxy" && !d.relationship.trim()) return failForm(s, panel, "relationship", t("form.err.relationship"));

  const body = {
    resident_id: s.record.id,
    category: d.category,
    note: d.note.trim(),
    follow_up: Boolean(d.follow_up),
    caller_kind: d.caller_kind,
    relationship: d.caller_kind === "proxy" ? d.relationship.trim() : "",
  };
  if (s.call) body.call_id = s.call.id;
  const record = s.record;

  s.saving = true;
  s.formError = null;
  showFormError(panel, null);
  setSaving(panel, true);
  $("#inquiry-status", panel).textContent = "";
  try {
    const r = await api("POST", "/api/inquiries", body);
    if (r.ok) {
      const saved = {
        resident_id: record.id,
        call_id: body.call_id ?? null,
        user_id: state.user && state.user.id,
        username: state.user && state.user.username,
        created_at: new Date().toISOString(),
        ...body,
        ...(r.data && typeof r.data === "object" ? r.data : {}),
      };
      record.inquiries = [saved, ...(record.inquiries || [])];
      if (saved.id != null) s.savedIds.add(saved.id);
      s.draft = newDraft();
      s.confirmDismiss = false;
      if (panel.isConnected) {
        const form = $("#inquiry-form", panel);
        form.reset();
        $("#inquiry-who-self", panel).checked = true;
        $("#inquiry-relationship-field", panel).hidden = true;
        $("#inquiry-status", panel).textContent = t("form.saved");
        setTimeout(() => {
          const status = $("#inquiry-status", panel);
          if (status && status.textContent === t("form.saved")) status.textContent = "";
        }, 4000);
        if (s.histFilter === "call") s.histFilter = "all";
        refreshHistory(s);
        renderBanner(s);
        $("#inquiry-category", panel).focus();
      }
      renderSessions();
    } else if (r.status === 422 || r.status === 400 || r.status === 409) {
      failForm(s, panel, (r.data && r.data.field) || "_", errorText(r));
    } else {
      failForm(s, panel, "_", t("form.err.generic", { msg: errorText(r) }));
    }
  } catch (e) {
    if (!(e instanceof Unauthorized)) failForm(s, panel, "_", t("form.err.generic", { msg: t("err.network") }));
    else s.formError = { field: "_", message: t("err.session") };
  } finally {
    s.saving = false;
    if (panel.isConnected) setSaving(panel, false);
  }
}
