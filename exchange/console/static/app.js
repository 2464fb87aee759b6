// The auditor's console page: no library, no external asset. Text goes in with textContent; only the charts,
// drawn and escaped by the console itself, are inserted as markup.
"use strict";

const FIELDS = [["agency", "agency"], ["client_id", "client"], ["officer", "officer"], ["purpose", "purpose"],
  ["action", "action"], ["outcome", "outcome"], ["record_id", "record id"], ["case_ref", "case reference"],
  ["from", "from (UTC)"], ["to", "to (UTC)"]];
const COLUMNS = [["index", "#"], ["time", "time (UTC)"], ["action", "action"], ["outcome", "outcome"],
  ["status", "status"], ["agency", "agency"], ["client_id", "client"], ["officer", "officer"],
  ["purpose", "purpose"], ["case_ref", "case ref"], ["recipient", "recipient"], ["record_ids", "records"],
  ["path", "path"]];
let loaded = false;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "on") for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
    else if (v !== null && v !== undefined) node.setAttribute(k, v);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json();
  if (!response.ok) throw new Error(`${body.code}: ${body.message}`);
  return body;
}

// ---- loading and the badge ---------------------------------------------------------------------------------------

async function poll() {
  let status;
  try { status = await api("/api/status"); } catch (e) { setTimeout(poll, 1000); return; }
  const bar = document.getElementById("load-progress");
  document.getElementById("load-phase").textContent = status.phase;
  if (status.total) { bar.max = status.total; bar.value = status.done; }
  document.getElementById("load-count").textContent =
    status.total ? `${status.done.toLocaleString()} / ${status.total.toLocaleString()} entries, ${status.elapsed} s`
                 : `${status.elapsed} s`;
  if (status.badge) {
    showBadge(status.badge);
    document.getElementById("loading").hidden = true;
    loaded = true;
    route();
  } else {
    setTimeout(poll, 250);
  }
}

function showBadge(badge) {
  const box = document.getElementById("badge");
  box.replaceChildren();
  box.className = "badge " + (badge.ok ? "ok" : "failed");
  box.dataset.ok = badge.ok ? "true" : "false";
  if (!badge.ok) {
    box.append(el("strong", {}, "NOT VERIFIED: "), badge.reason,
      el("div", {}, `Checked ${badge.checked_at}` + (badge.source ? ` (${badge.source})` : "") +
        ". Nothing shown below may be relied on."));
    if (badge.first_bad_index !== undefined) box.dataset.firstBadIndex = badge.first_bad_index;
    return;
  }
  const cos = badge.cosignatures || {};
  const witnessed = cos.found
    ? `${cos.verified.length} of ${cos.found} cosignature(s) verified with trusted witness keys` +
      (cos.unknown.length ? `; by unknown keys: ${cos.unknown.join(", ")}` : "") +
      (cos.failed.length ? `; FAILED: ${cos.failed.join(", ")}` : "")
    : "no witness cosignatures carried" + (cos.trusted_witnesses && cos.trusted_witnesses.length
      ? ` (trusted witnesses: ${cos.trusted_witnesses.join(", ")})` : "");
  box.append(
    el("strong", {}, "VERIFIED: "),
    `${badge.size.toLocaleString()} entries of ${badge.origin}, up to the checkpoint of size ${badge.size}, ` +
    `checked ${badge.checked_at} (${badge.source}). `,
    el("span", { id: "cosignatures" }, `Cosignatures: ${witnessed}.`),
    el("ul", {}, ...badge.checks.map((c) => el("li", {}, c))),
    el("details", {}, el("summary", {}, "checkpoint and key"), el("pre", {}, badge.checkpoint),
      el("div", {}, "key: ", el("code", {}, badge.key))),
  );
  if (badge.uncovered) box.append(el("div", {}, `${badge.uncovered} newer entries are not covered by a checkpoint yet.`));
}

// ---- views -------------------------------------------------------------------------------------------------------

function params(hash) {
  const [name, query] = hash.split("?");
  return [name, new URLSearchParams(query || "")];
}

function link(href, text) { return el("a", { href }, text); }

function entriesTable(items) {
  const head = el("tr", {}, ...COLUMNS.map(([, t]) => el("th", {}, t)));
  const rows = items.map((e) => el("tr", { class: e.outcome, "data-index": e.index }, ...COLUMNS.map(([c]) => {
    const v = e[c];
    if (c === "index") return el("td", {}, link(`#entry/${v}`, v));
    if (c === "client_id" && v) return el("td", {}, link(`#client/${encodeURIComponent(v)}`, v));
    if (c === "record_ids") return el("td", {}, ...v.flatMap((r, i) => [i ? " " : "", link(`#history/${encodeURIComponent(r)}`, r)]));
    return el("td", {}, v === null || v === undefined ? "" : v);
  })));
  return el("table", { class: "entries" }, el("thead", {}, head), el("tbody", {}, ...rows));
}

// A paged list of entries: `path` answers {items, next_before}.
async function pagedEntries(container, path, query) {
  const table = el("div");
  const more = el("button", { type: "button" }, "older entries");
  container.append(table, more);
  let before = null;
  async function load() {
    const q = new URLSearchParams(query);
    if (before !== null) q.set("before", before);
    try {
      const page = await api(`${path}?${q}`);
      table.append(entriesTable(page.items));
      if (!page.items.length && before === null) table.append(el("p", {}, "No matching entries."));
      before = page.next_before;
      more.hidden = before === null;
    } catch (e) { table.append(el("p", { class: "error" }, e.message)); more.hidden = true; }
  }
  more.addEventListener("click", load);
  await load();
}

function searchView(query) {
  const form = el("form", { class: "search", id: "search-form" },
    ...FIELDS.map(([name, label]) => el("label", {}, label,
      el("input", { name, value: query.get(name) || "", placeholder: name === "from" ? "2026-01-01" : "" }))),
    el("div", {}, el("button", { type: "submit" }, "Search")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const [name] of FIELDS) if (form.elements[name].value.trim()) q.set(name, form.elements[name].value.trim());
    location.hash = `search?${q}`;
  });
  const results = el("div", { id: "results" });
  view("Search the log", form, results);
  pagedEntries(results, "/api/search", new URLSearchParams(query));
}

function reportLinks(kind, value, query) {
  const q = new URLSearchParams({ kind, value });
  if (query.get("from")) q.set("from", query.get("from"));
  if (query.get("to")) q.set("to", query.get("to"));
  const range = el("form", { class: "actions" },
    el("label", {}, "from ", el("input", { name: "from", value: query.get("from") || "", size: 12 })),
    el("label", {}, " to ", el("input", { name: "to", value: query.get("to") || "", size: 12 })),
    el("button", { type: "submit" }, "apply"), " ",
    link(`/report?${q}`, "Court report (print)"), " ",
    el("a", { href: `/report?${q}&download=1`, id: "download-report", download: "" }, "Download report"));
  range.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const r = new URLSearchParams();
    for (const n of ["from", "to"]) if (range.elements[n].value.trim()) r.set(n, range.elements[n].value.trim());
    location.hash = `${kind === "record" ? "history" : "client"}/${encodeURIComponent(value)}?${r}`;
  });
  return range;
}

function historyView(id, query) {
  const list = el("div");
  view(`Access history of ${id}`, el("p", {}, "Every call that read, disclosed, created or changed this record, " +
    "or aimed at it and was refused: who, when, purpose, case reference and recipient."),
    reportLinks("record", id, query), list);
  pagedEntries(list, `/api/history/${encodeURIComponent(id)}`, query);
}

function clientView(id, query) {
  const list = el("div");
  view(`Activity of client ${id}`, reportLinks("client", id, query), list);
  pagedEntries(list, `/api/clients/${encodeURIComponent(id)}`, query);
}

async function keysView() {
  const body = el("div");
  view("Key and client operations", el("p", {}, "Keys and clients that key and client operations touched."), body);
  try {
    const data = await api("/api/keys");
    body.append(el("table", {}, el("tr", {}, el("th", {}, "key or client"), el("th", {}, "operations"),
      el("th", {}, "first entry"), el("th", {}, "last entry")),
      ...data.items.map((k) => el("tr", {}, el("td", {}, link(`#key/${encodeURIComponent(k.id)}`, k.id)),
        el("td", {}, k.operations), el("td", {}, link(`#entry/${k.first}`, k.first)),
        el("td", {}, link(`#entry/${k.last}`, k.last))))));
  } catch (e) { body.append(el("p", { class: "error" }, e.message)); }
}

function keyView(id, query) {
  const list = el("div");
  view(`Operations on ${id}`, list);
  pagedEntries(list, `/api/keys/${encodeURIComponent(id)}`, query);
}

async function chartsView() {
  const body = el("div", { id: "charts" });
  view("Charts", body);
  try {
    const charts = await api("/api/charts");
    for (const [name, svg] of Object.entries(charts)) {
      const figure = el("figure", { "data-chart": name });
      figure.innerHTML = svg; // drawn and escaped by the console
      body.append(figure);
    }
  } catch (e) { body.append(el("p", { class: "error" }, e.message)); }
}

function reviewForm(flag, onDone) {
  const note = el("input", { name: "note", size: 50, placeholder: "review note", value: flag.review ? flag.review.note : "" });
  const form = el("form", { class: "review" }, note, " ", el("button", { type: "submit" }, flag.review ? "update review" : "mark reviewed"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    await api(`/api/flags/${encodeURIComponent(flag.key)}/review`, {
      method: "POST", headers: { "Content-Type": "application/json", "X-Console": "1" },
      body: JSON.stringify({ note: note.value }) });
    onDone();
  });
  return form;
}

function flagBox(flag, reload) {
  return el("div", { class: "flag" + (flag.review ? " reviewed" : ""), "data-rule": flag.rule, "data-key": flag.key },
    el("span", { class: "rule" }, flag.rule), " ", el("strong", {}, flag.subject), " · ", `${flag.count} entries`,
    el("p", {}, flag.explanation),
    el("div", { class: "actions" }, link(`#flag/${encodeURIComponent(flag.key)}`, "entries"),
      link(`#search?${new URLSearchParams(flag.search)}`, "search")),
    flag.review ? el("p", { class: "reviewed-note" }, `Reviewed ${flag.review.reviewed_at}: ${flag.review.note}`) : "",
    reviewForm(flag, reload));
}

async function flagsView(query) {
  const body = el("div", { id: "flags" });
  const rule = query.get("rule") || "";
  const filter = el("p", {}, "Show: ", ...["", "bulk", "denials", "no-case", "hours", "key-op", "client-op"]
    .map((r) => el("span", {}, link(`#flags?rule=${r}`, r || "all"), " ")));
  view("Flags", filter, body);
  try {
    const data = await api(`/api/flags?${new URLSearchParams(rule ? { rule } : {})}`);
    const total = rule ? (data.counts[rule] || 0) : Object.values(data.counts).reduce((a, b) => a + b, 0);
    const byRule = Object.entries(data.counts).map(([r, n]) => `${r} ${n}`).join(", ");
    body.append(el("p", { id: "flag-counts" }, `${total} flags (${byRule || "none"}); ${data.reviewed} reviewed.`));
    for (const f of data.items) body.append(flagBox(f, route));
    if (total > data.items.length) body.append(el("p", {}, `Showing the first ${data.items.length}: filter by rule.`));
  } catch (e) { body.append(el("p", { class: "error" }, e.message)); }
}

async function flagView(key) {
  const body = el("div");
  view("Flag", body);
  try {
    const flag = await api(`/api/flags/${encodeURIComponent(key)}`);
    body.append(flagBox(flag, route), entriesTable(flag.entries));
  } catch (e) { body.append(el("p", { class: "error" }, e.message)); }
}

async function entryView(index) {
  const body = el("div");
  view(`Entry ${index}`, body);
  try {
    const entry = await api(`/api/entries/${index}`);
    body.append(entriesTable([entry]), el("h2", {}, "The entry as signed (RFC 8785)"), el("pre", { id: "leaf" }, entry.leaf));
  } catch (e) { body.append(el("p", { class: "error" }, e.message)); }
}

function view(title, ...children) {
  document.getElementById("view").replaceChildren(el("h2", {}, title), ...children);
}

function route() {
  if (!loaded) return;
  const [name, query] = params(location.hash.replace(/^#/, "") || "search");
  const [kind, ...rest] = name.split("/");
  const arg = decodeURIComponent(rest.join("/"));
  switch (kind) {
    case "history": return historyView(arg, query);
    case "client": return clientView(arg, query);
    case "keys": return keysView();
    case "key": return keyView(arg, query);
    case "charts": return chartsView();
    case "flags": return flagsView(query);
    case "flag": return flagView(arg);
    case "entry": return entryView(arg);
    default: return searchView(query);
  }
}

window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", poll);
