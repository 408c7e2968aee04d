// The Dripline console: journeys, their canvases with live counts, contacts
// and their timelines, the outbox, and simulations, all read from the
// admin API with the token the person signs in with. Pages are addressed by
// the URL's fragment (#/journeys/abandoned-checkout), so that a page can be
// bookmarked and the back button works, with no server routes but `/`.

import { html, nothing, render } from "lit-html";
import { Problem, api, signIn, signOut, token } from "./api.js";
import { describe, drawCanvas } from "./canvas.js";
import { count, percent, viewerZone, when } from "./format.js";

const root = document.getElementById("app");
// The page's "Loading" line is static HTML; lit renders after what a
// container holds, so it goes first.
root.textContent = "";
/** How often an open page asks for fresh counts. */
const POLL_MS = 2000;

let me = null;
let generation = 0;
let timer = null;
let current = null;

function may(scope) {
  return Boolean(me && me.scopes.includes(scope));
}

function go(hash) {
  if (location.hash === hash) show();
  else location.hash = hash;
}

function where() {
  const [pathPart, queryPart] = location.hash.replace(/^#\/?/, "").split("?");
  const parts = pathPart.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, query: new URLSearchParams(queryPart || "") };
}

function link(hash, label, active) {
  return html`<a href=${hash} aria-current=${active ? "page" : nothing}>${label}</a>`;
}

function shell(content) {
  const section = where().parts[0] || "journeys";
  return html`
    <a class="skip" href="#main" @click=${(e) => {
      e.preventDefault();
      document.getElementById("main")?.focus();
    }}>Skip to the page</a>
    <header class="bar">
      <span class="brand">Dripline</span>
      <nav aria-label="Console">
        ${link("#/journeys", "Journeys", section === "journeys")}
        ${link("#/contacts", "Contacts", section === "contacts")}
        ${may("outbox_read") ? link("#/outbox", "Outbox", section === "outbox") : nothing}
        ${may("simulate") ? link("#/simulate", "Simulate", section === "simulate") : nothing}
      </nav>
      <span class="who" data-role=${me.role}>${me.name} · ${me.role}</span>
      <button type="button" class="quiet" @click=${() => {
        signOut();
        me = null;
        go("#/");
      }}>Sign out</button>
    </header>
    <main id="main" tabindex="-1">${content}</main>
    <footer>Times are shown in ${viewerZone()}. Counts refresh every ${POLL_MS / 1000} s.</footer>`;
}

function paint(content) {
  render(shell(content), root);
}

function problem(error) {
  const text = error instanceof Problem ? error.message : `Something went wrong: ${error}`;
  return html`<p class="problem" role="alert">${text}</p>`;
}

function stopPolling() {
  if (timer) clearInterval(timer);
  timer = null;
}

/**
 * Shows a page: `load` fetches its data, `draw` makes it. With `poll`, the
 * page is loaded again every POLL_MS while the tab is visible; an answer
 * to a page already left is dropped.
 */
async function mount(load, draw, { poll = true } = {}) {
  stopPolling();
  const mine = ++generation;
  const run = async () => {
    try {
      const data = await load();
      if (mine === generation) paint(draw(data));
    } catch (error) {
      if (mine !== generation) return;
      if (error instanceof Problem && error.status === 401) {
        signOut();
        me = null;
        return loginPage("The token was refused. Sign in again.");
      }
      paint(problem(error));
    }
  };
  current = run;
  await run();
  if (poll && mine === generation) {
    timer = setInterval(() => {
      if (!document.hidden) run();
    }, POLL_MS);
  }
}

function loginPage(message) {
  stopPolling();
  generation++;
  const submit = async (event) => {
    event.preventDefault();
    const value = new FormData(event.target).get("token").trim();
    if (!value) return;
    signIn(value);
    me = null;
    await show();
  };
  render(
    html`<main id="main" class="login">
      <h1>Dripline console</h1>
      <form @submit=${submit} aria-describedby="login-help">
        <label for="token">Admin token</label>
        <input id="token" name="token" type="password" autocomplete="off" required autofocus>
        <button type="submit">Sign in</button>
      </form>
      <p id="login-help" class="hint">A token comes from <code>dripline token new --name NAME --role marketing|operations|engineering</code>.
        It stays in this tab only.</p>
      ${message ? html`<p class="problem" role="alert">${message}</p>` : nothing}
    </main>`,
    root,
  );
}

// ---- Journeys ----------------------------------------------------------

function stateBadge(state) {
  return html`<span class=${`badge state-${state}`}>${state}</span>`;
}

function journeysPage() {
  return mount(
    () => api("/api/journeys"),
    (journeys) => {
      queueMicrotask(() => performance.mark("dripline:journeys"));
      return journeysTable(journeys);
    },
  );
}

function journeysTable(journeys) {
  return html`
      <h1>Journeys</h1>
      <div class="table-wrap"><table class="journeys">
        <thead><tr><th scope="col">Journey</th><th scope="col">State</th><th scope="col">Version</th>
          <th scope="col">Canary</th><th scope="col" class="num">Entered</th><th scope="col" class="num">Converted</th>
          <th scope="col" class="num">Rate</th></tr></thead>
        <tbody>${journeys.map(
          (j) => html`<tr data-journey=${j.id}>
            <th scope="row"><a href=${`#/journeys/${encodeURIComponent(j.id)}`}>${j.name}</a><div class="hint">${j.id}</div></th>
            <td>${stateBadge(j.state)}</td>
            <td>v${j.version}${j.versions.length > 1 ? html` <span class="hint">(${j.versions.length} versions)</span>` : nothing}</td>
            <td>${j.canary ? `v${j.canary.version} takes ${j.canary.percent}%` : "–"}</td>
            <td class="num" data-entered=${j.entered}>${count(j.entered)}</td>
            <td class="num">${count(j.converted)}</td>
            <td class="num">${percent(j.entered ? j.converted / j.entered : null)}</td>
          </tr>`,
        )}</tbody>
      </table></div>`;
}

function controls(journey, refresh) {
  if (!may("journeys_write")) return nothing;
  const act = (what) => async (event) => {
    const button = event.target;
    button.disabled = true;
    try {
      await api(`/api/journeys/${encodeURIComponent(journey.id)}/${what}`, { method: "POST" });
      await refresh();
    } catch (error) {
      alertLine.textContent = error.message;
    } finally {
      button.disabled = false;
    }
  };
  const alertLine = document.createElement("span");
  return html`<div class="controls" role="group" aria-label="Journey controls">
    ${journey.state === "running"
      ? html`<button type="button" @click=${act("pause")}>Pause</button>
             <button type="button" class="quiet" @click=${act("drain")}>Drain</button>`
      : html`<button type="button" @click=${act("resume")}>Resume</button>`}
    ${journey.canary
      ? html`<button type="button" @click=${act("promote")}>Promote v${journey.canary.version}</button>
             <button type="button" class="quiet" @click=${act("rollback")}>Roll back</button>`
      : nothing}
    <span class="problem" role="status">${alertLine}</span>
  </div>`;
}

function nodeTable(version) {
  return html`<details class="steps">
    <summary>Version ${version.version} as a table</summary>
    <div class="table-wrap"><table>
      <thead><tr><th scope="col">Node</th><th scope="col">Kind</th><th scope="col" class="num">Entered</th>
        <th scope="col" class="num">Waiting</th><th scope="col" class="num">Passed</th><th scope="col" class="num">Dropped</th>
        <th scope="col" class="num">Sent</th><th scope="col" class="num">Open</th><th scope="col" class="num">Click</th>
        <th scope="col" class="num">Conversion</th></tr></thead>
      <tbody>${version.nodes.map((n) => html`<tr>
        <th scope="row">${n.label}</th><td>${n.kind}</td>
        <td class="num">${count(n.counts.entered)}</td><td class="num">${count(n.counts.waiting)}</td>
        <td class="num">${count(n.counts.passed)}</td><td class="num">${count(n.counts.dropped)}</td>
        <td class="num">${n.message ? count(n.message.sent) : "–"}</td>
        <td class="num">${n.message ? percent(n.message.open_rate) : "–"}</td>
        <td class="num">${n.message ? percent(n.message.click_rate) : "–"}</td>
        <td class="num">${n.message ? percent(n.message.conversion_rate) : "–"}</td></tr>`)}</tbody>
    </table></div>
  </details>`;
}

function canvasPage(id) {
  let picked = null;
  let last = null;
  const pick = (node) => {
    picked = node.id;
    if (last) paint(drawPage(last));
  };
  const drawPage = (journey) => {
    last = journey;
    const newest = journey.versions[0];
    const entered = journey.versions.reduce(
      (sum, v) => sum + (v.nodes.find((n) => n.id === "@trigger")?.counts.entered || 0), 0);
    const converted = journey.converted;
    const chosen = picked ? journey.versions.flatMap((v) => v.nodes.map((n) => [v.version, n]))
      .find(([, n]) => n.id === picked) : null;
    const refresh = () => current && current();
    queueMicrotask(() => performance.mark("dripline:canvas"));
    return html`
      <p class="crumbs"><a href="#/journeys">Journeys</a> / ${journey.id}</p>
      <h1>${journey.name}</h1>
      <div class="headline">
        ${stateBadge(journey.state)}
        <span>v${newest ? newest.version : "?"}</span>
        ${journey.canary ? html`<span class="badge canary">canary: v${journey.canary.version} takes ${journey.canary.percent}%, v${journey.canary.stable} the rest</span>` : nothing}
        <span><strong data-total-entered=${entered}>${count(entered)}</strong> entered</span>
        <span><strong data-total-converted=${converted}>${count(converted)}</strong> converted (${percent(entered ? converted / entered : null)})</span>
        ${controls(journey, refresh)}
      </div>
      <div class="versions">${journey.versions.map((version, index) => html`
        <section class="version" aria-labelledby=${`v-${version.version}`}>
          <h2 id=${`v-${version.version}`}>Version ${version.version}${index === 0 ? " (newest)" : ""}</h2>
          <div class="canvas-wrap">${drawCanvas(version, pick)}</div>
          ${nodeTable(version)}
        </section>`)}
      </div>
      <aside class="picked" aria-live="polite">${chosen
        ? html`<h2>v${chosen[0]} · ${chosen[1].label}</h2><p>${describe(chosen[1])}</p>`
        : html`<p class="hint">Choose a node (click, or Tab to it and press Enter) for its figures in words.</p>`}</aside>`;
  };
  return mount(() => api(`/api/journeys/${encodeURIComponent(id)}/canvas`), drawPage);
}

// ---- Contacts ----------------------------------------------------------

function contactSearch(query) {
  stopPolling();
  generation++;
  let message = null;
  const submit = async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const kind = form.get("kind");
    const value = form.get("value").trim();
    try {
      const found = await api(`/api/contacts?${new URLSearchParams({ [kind]: value })}`);
      go(`#/contacts/${encodeURIComponent(found.id)}`);
    } catch (error) {
      message = error.message;
      paint(page());
    }
  };
  const page = () => html`
    <h1>Contacts</h1>
    <form class="search" @submit=${submit} role="search">
      <label for="kind">Find by</label>
      <select id="kind" name="kind">
        <option value="email">email</option><option value="phone">phone</option><option value="external">external id</option>
      </select>
      <label for="value" class="visually-hidden">Value</label>
      <input id="value" name="value" required placeholder="shopper@example.com" value=${query.get("email") || ""}>
      <button type="submit">Find</button>
    </form>
    ${message ? html`<p class="problem" role="alert">${message}</p>` : nothing}`;
  paint(page());
}

/** A value as a person reads it: moments (`*_at`, ms) in the viewer's zone. */
function shown(key, value) {
  if (key.endsWith("_at") && typeof value === "number") return when(value);
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function keyValues(object) {
  // An absent detail (null) says nothing: left out.
  const entries = Object.entries(object || {}).filter(([, v]) => v !== null && v !== undefined);
  if (!entries.length) return html`<p class="hint">none</p>`;
  return html`<dl class="pairs">${entries.map(([k, v]) => html`<dt>${k}</dt><dd>${shown(k, v)}</dd>`)}</dl>`;
}

function timelineList(entries) {
  if (!entries.length) return html`<p class="hint">Nothing yet.</p>`;
  return html`<ol class="timeline">${entries.map((e) => html`
    <li class=${`moment kind-${e.kind}`} data-kind=${e.kind}>
      <time datetime=${new Date(e.at).toISOString()}>${when(e.at)}</time>
      <span class="badge">${e.kind}</span> <span class="what">${e.what}</span>
      ${e.detail && typeof e.detail === "object" && !Array.isArray(e.detail) && Object.keys(e.detail).length
        ? keyValues(e.detail) : nothing}
      ${Array.isArray(e.detail) && e.detail.length ? html`<pre class="message">${e.detail.join("\n")}</pre>` : nothing}
    </li>`)}</ol>`;
}

function contactPage(id) {
  return mount(
    () => api(`/api/contacts/${encodeURIComponent(id)}`),
    (detail) => {
      const contact = detail.contact;
      const profile = contact.profile || {};
      const name = contact.identities[0]?.value || contact.id;
      const consent = Object.entries(profile.consent || {});
      return html`
        <p class="crumbs"><a href="#/contacts">Contacts</a> / ${contact.id}</p>
        <h1 class="contact-name">${name}${profile.test ? html` <span class="badge">test contact</span>` : nothing}</h1>
        <div class="columns">
          <section aria-labelledby="identities"><h2 id="identities">Identities</h2>
            <ul class="identities">${contact.identities.map((i) => html`<li><span class="hint">${i.kind}</span> <span class="identity">${i.value}</span></li>`)}</ul>
            <h2>Profile</h2>
            <dl class="pairs"><dt>time zone</dt><dd>${profile.time_zone || "–"}</dd><dt>score</dt><dd>${profile.score ?? 0}</dd>
              <dt>tags</dt><dd>${(profile.tags || []).join(", ") || "–"}</dd>
              <dt>segments</dt><dd class="segments">${(profile.segments || []).join(", ") || "–"}</dd></dl>
            <h3>Attributes</h3>${keyValues(profile.attributes)}
          </section>
          <section aria-labelledby="consent"><h2 id="consent">Consent</h2>
            ${consent.length ? html`<table class="consent"><thead><tr><th scope="col">Channel</th><th scope="col">State</th><th scope="col">Source</th><th scope="col">Since</th></tr></thead>
              <tbody>${consent.map(([channel, state]) => {
                const source = (profile.consent_source || {})[channel] || {};
                return html`<tr><th scope="row">${channel}</th><td>${typeof state === "object" ? JSON.stringify(state) : state}</td>
                  <td>${source.source || "–"}</td><td>${source.at ? when(source.at) : "–"}</td></tr>`;
              })}</tbody></table>` : html`<p class="hint">No consent recorded.</p>`}
            <h2>Enrollments</h2>
            ${detail.enrollments.length ? html`<div class="table-wrap"><table class="enrollments"><thead><tr><th scope="col">Journey</th><th scope="col">Status</th><th scope="col">Step</th><th scope="col">Way</th><th scope="col">Entered</th><th scope="col">Exit</th></tr></thead>
              <tbody>${detail.enrollments.map((e) => html`<tr>
                <th scope="row"><a href=${`#/journeys/${encodeURIComponent(e.journey)}`}>${e.journey}</a> v${e.version}</th>
                <td>${e.status}</td><td>${e.step || "–"}</td><td>${e.arm || "–"}</td>
                <td>${when(e.entered_at)}</td><td>${e.exit_reason || "–"}</td></tr>`)}</tbody></table></div>`
              : html`<p class="hint">Not in any journey.</p>`}
          </section>
        </div>
        <section aria-labelledby="timeline"><h2 id="timeline">Timeline</h2>${timelineList(detail.timeline)}</section>`;
    },
  );
}

// ---- Outbox ------------------------------------------------------------

function outboxPage(query) {
  const status = query.get("status") || "";
  const contact = query.get("contact") || "";
  const filter = (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const next = new URLSearchParams();
    for (const key of ["status", "contact"]) {
      const value = String(form.get(key) || "").trim();
      if (value) next.set(key, value);
    }
    go(`#/outbox?${next}`);
  };
  const params = new URLSearchParams({ limit: "200" });
  if (status) params.set("status", status);
  if (contact) params.set("contact", contact);
  return mount(
    () => api(`/api/outbox?${params}`),
    (page) => html`
      <h1>Outbox</h1>
      <form class="search" @submit=${filter}>
        <label for="status">Status</label>
        <select id="status" name="status">
          ${["", "pending", "sent", "failed", "suppressed"].map((s) => html`<option value=${s} ?selected=${s === status}>${s || "any"}</option>`)}
        </select>
        <label for="contact">Contact id</label>
        <input id="contact" name="contact" value=${contact}>
        <button type="submit">Filter</button>
        <a href="#/outbox?status=failed">Failures only</a>
      </form>
      <div class="table-wrap"><table class="outbox"><thead><tr><th scope="col" class="num">Id</th><th scope="col">Queued</th><th scope="col">Contact</th><th scope="col">Channel</th><th scope="col">Status</th><th scope="col" class="num">Attempts</th><th scope="col">Last error</th></tr></thead>
        <tbody>${page.messages.map((m) => html`<tr data-status=${m.status}>
          <td class="num">${m.id}</td><td>${when(m.created_at_ms)}</td>
          <td><a href=${`#/contacts/${encodeURIComponent(m.contact_id)}`}>${m.contact_id.slice(0, 12)}</a></td>
          <td>${m.channel}</td><td><span class=${`badge status-${m.status}`}>${m.status}</span></td>
          <td class="num">${m.attempts}</td><td>${m.last_error || "–"}</td></tr>`)}</tbody></table></div>
      ${page.messages.length ? nothing : html`<p class="hint">No message matches.</p>`}`,
  );
}

// ---- Simulate ----------------------------------------------------------

async function simulatePage(query) {
  stopPolling();
  const mine = ++generation;
  let journeys = [];
  try {
    journeys = await api("/api/journeys");
  } catch (error) {
    return paint(problem(error));
  }
  if (mine !== generation) return;
  let chosen = query.get("journey") || journeys[0]?.id || "";
  let result = null;
  let failure = null;
  let contactText = JSON.stringify({ email: "test@example.com", phone: "+14155550100", time_zone: "Asia/Shanghai" }, null, 2);
  const scriptFor = async (id) => {
    try {
      const detail = await api(`/api/journeys/${encodeURIComponent(id)}`);
      const trigger = detail.versions[0]?.definition?.trigger || {};
      const event = trigger.event || "segment.entered";
      return JSON.stringify({ until: "3d", events: [{ after: "0m", name: event, source: "console", properties: {} }] }, null, 2);
    } catch {
      return JSON.stringify({ until: "3d", events: [] }, null, 2);
    }
  };
  let scriptText = chosen ? await scriptFor(chosen) : "{}";
  const run = async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    failure = null;
    result = null;
    let contact;
    let script;
    try {
      contact = JSON.parse(form.get("contact"));
    } catch (error) {
      failure = `contact: not JSON (${error.message})`;
    }
    try {
      script = JSON.parse(form.get("script"));
    } catch (error) {
      failure = failure || `script: not JSON (${error.message})`;
    }
    contactText = form.get("contact");
    scriptText = form.get("script");
    if (!failure) {
      paint(page(true));
      try {
        result = await api("/api/simulate", { method: "POST", body: { journey: form.get("journey"), contact, script } });
      } catch (error) {
        failure = error.message;
      }
    }
    if (mine === generation) paint(page(false));
  };
  const change = async (event) => {
    chosen = event.target.value;
    scriptText = await scriptFor(chosen);
    if (mine === generation) paint(page(false));
  };
  const page = (running) => html`
    <h1>Simulate</h1>
    <p class="hint">Runs the journey's newest version for a test contact on a virtual clock, with the real steps and delivery policy. Nothing is sent.</p>
    <form class="simulate" @submit=${run}>
      <label for="journey">Journey</label>
      <select id="journey" name="journey" @change=${change}>
        ${journeys.map((j) => html`<option value=${j.id} ?selected=${j.id === chosen}>${j.name}</option>`)}
      </select>
      <label for="sim-contact">Test contact (JSON: email, phone, time_zone, attributes, consent)</label>
      <textarea id="sim-contact" name="contact" rows="6" spellcheck="false" .value=${contactText}></textarea>
      <label for="sim-script">Script (JSON: start, until, events with after, name, source, properties)</label>
      <textarea id="sim-script" name="script" rows="12" spellcheck="false" .value=${scriptText}></textarea>
      <button type="submit" ?disabled=${running}>${running ? "Running…" : "Run the simulation"}</button>
    </form>
    ${failure ? html`<p class="problem" role="alert">${failure}</p>` : nothing}
    ${result ? html`<section aria-labelledby="sim-result" class="sim-result"><h2 id="sim-result">Timeline of ${result.journey}</h2>${timelineList(result.timeline)}</section>` : nothing}`;
  paint(page(false));
}

// ---- Start -------------------------------------------------------------

async function show() {
  stopPolling();
  if (!token()) return loginPage();
  if (!me) {
    try {
      me = await api("/api/me");
    } catch (error) {
      signOut();
      return loginPage(error instanceof Problem && error.status === 401
        ? "The token was refused. Sign in again."
        : error.message);
    }
  }
  const { parts, query } = where();
  const [section, id] = parts;
  switch (section) {
    case undefined:
    case "journeys":
      return id ? canvasPage(id) : journeysPage();
    case "contacts":
      return id ? contactPage(id) : contactSearch(query);
    case "outbox":
      return outboxPage(query);
    case "simulate":
      return simulatePage(query);
    default:
      return paint(html`<h1>Not found</h1><p>There is no page ${location.hash}.</p>`);
  }
}

window.addEventListener("hashchange", show);
show();
