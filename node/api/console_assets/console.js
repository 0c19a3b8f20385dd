// The crosstrace console. Every data call is one of the node's API calls on this origin,
// with the user's bearer token, which lives in this closure only (never in a URL, a
// cookie or web storage). Answers are written with textContent, never as HTML.
"use strict";
(function () {
  let token = null;
  const $ = (id) => document.getElementById(id);
  const state = { cases: [], trace: [], sortKey: "height", sortUp: true, graph: null, shown: new Set(), cy: null, selected: null };
  const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];
  const memberColour = new Map();

  function colourOf(member) {
    if (!memberColour.has(member)) memberColour.set(member, PALETTE[memberColour.size % PALETTE.length]);
    return memberColour.get(member);
  }

  function show(text) {
    const box = $("message");
    box.textContent = text;
    box.hidden = !text;
  }
  function notice(text) { $("notice").textContent = text; }

  class ApiError extends Error {}

  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + token };
    const init = { method, headers, credentials: "omit", cache: "no-store", redirect: "error" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError("the node did not answer: " + err.message);
    }
    let data = null;
    try { data = await response.json(); } catch (err) { data = null; }
    if (!response.ok) {
      const code = data && data.error ? data.error : "HTTP " + response.status;
      const text = data && data.message ? data.message : response.statusText;
      throw new ApiError(code + ": " + text);
    }
    return data;
  }

  // Runs an action, showing its refusal (the error body's message) instead of failing.
  async function act(fn) {
    show("");
    try {
      await fn();
    } catch (err) {
      show(err instanceof ApiError ? err.message : "error: " + err.message);
    }
  }

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }
  function button(label, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.addEventListener("click", onClick);
    return b;
  }
  function clear(tbody) { while (tbody.firstChild) tbody.removeChild(tbody.firstChild); }
  function entityText(e) { return e ? e.type + ":" + e.pseudonym.slice(0, 12) + "…" : ""; }
  function nodeId(e) { return e.type + ":" + e.pseudonym; }
  function actorText(r) { return r.actor_name || (r.actor ? "actor " + r.actor.slice(0, 8) : ""); }

  // -- signing in ---------------------------------------------------------------------
  $("signin").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const typed = $("token").value.trim();
    $("token").value = "";
    act(async () => {
      token = typed;
      try {
        await loadCases();
      } catch (err) {
        token = null;
        throw err;
      }
      $("signin").hidden = true;
      $("who").hidden = false;
      $("who-text").textContent = "Signed in";
      $("tabs").hidden = false;
      $("main").hidden = false;
      notice("signed in");
    });
  });
  $("signout").addEventListener("click", () => { window.location.reload(); });

  for (const tab of document.querySelectorAll("#tabs button")) {
    tab.addEventListener("click", () => {
      for (const other of document.querySelectorAll("#tabs button")) {
        other.setAttribute("aria-pressed", String(other === tab));
        $("tab-" + other.dataset.tab).hidden = other !== tab;
      }
      const name = tab.dataset.tab;
      if (name === "disclosures") act(loadDisclosures);
      if (name === "audit") act(loadAudit);
      if (name === "psi") act(loadPsi);
      if (name === "graph" && state.cy) state.cy.resize();
    });
  }

  // -- cases --------------------------------------------------------------------------
  async function loadCases() {
    const data = await api("GET", "/cases");
    state.cases = data.cases;
    const tbody = $("cases-table").tBodies[0];
    clear(tbody);
    const ids = $("case-ids");
    clear(ids);
    for (const c of data.cases) {
      const tr = document.createElement("tr");
      tr.dataset.caseId = c.case_id;
      cell(tr, c.case_id);
      cell(tr, c.state).title = c.reason;
      cell(tr, c.purpose);
      cell(tr, c.approvals.length + " of " + c.needed);
      cell(tr, c.window.start.slice(0, 10) + " – " + c.window.end.slice(0, 10));
      cell(tr, c.expires.slice(0, 16).replace("T", " "));
      const td = cell(tr, "");
      td.appendChild(button("Details", () => act(() => showCase(c.case_id))));
      if (c.state === "pending") td.appendChild(button("Approve", () => act(() => change(c.case_id, "approve"))));
      if (c.state === "pending" || c.state === "active") td.appendChild(button("Close", () => act(() => change(c.case_id, "close"))));
      tbody.appendChild(tr);
      const opt = document.createElement("option");
      opt.value = c.case_id;
      ids.appendChild(opt);
    }
    notice(data.cases.length + " case(s); " + data.needed + " approvals needed");
  }

  async function showCase(caseId) {
    const c = await api("GET", "/cases/" + encodeURIComponent(caseId));
    const box = $("case-detail");
    clear(box);
    const add = (label, value) => {
      const p = document.createElement("p");
      const b = document.createElement("strong");
      b.textContent = label + ": ";
      p.appendChild(b);
      p.appendChild(document.createTextNode(value));
      box.appendChild(p);
    };
    add("Case", c.case_id + " (" + c.state + ": " + c.reason + ")");
    add("Purpose", c.purpose);
    add("Scope", c.scope.map(entityText).join(", "));
    add("Window", c.window.start + " – " + c.window.end);
    add("Expires", c.expires);
    add("Approvals", c.approvals.map((a) => a.member + (a.actor_name ? " (" + a.actor_name + ")" : "")).join(", ") + " — " + c.approvals.length + " of " + c.needed);
    const j = c.justification;
    add("Justification", j.text != null ? j.text + (j.matches_commitment ? " (matches the ledger)" : " (does NOT match the ledger)") : j.message);
    box.hidden = false;
  }

  async function change(caseId, what) {
    const answer = await api("POST", "/cases/" + encodeURIComponent(caseId) + "/" + what, {});
    await loadCases();
    notice("case " + caseId + ": " + what + (answer.case ? " — now " + answer.case.state : " submitted"));
  }

  $("cases-refresh").addEventListener("click", () => act(loadCases));
  $("open-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(async () => {
      const now = Date.now();
      const day = 86400000;
      const body = {
        case_id: $("oc-id").value.trim(),
        purpose: $("oc-purpose").value,
        justification: $("oc-just").value,
        scope: $("oc-scope").value.split("\n").map((s) => s.trim()).filter((s) => s),
        window: { start_ms: now - Number($("oc-days").value) * day, end_ms: now },
        expires_ms: now + Number($("oc-expiry").value) * day,
      };
      const answer = await api("POST", "/cases", body);
      await loadCases();
      notice("case " + body.case_id + " opened" + (answer.case ? ": " + answer.case.state : ""));
    });
  });

  // -- trace --------------------------------------------------------------------------
  function traceRow(r) {
    const what = r.kind === "report" ? r.category || "report" : r.relation;
    const subject = r.kind === "report" ? entityText(r.subject) : entityText(r.a) + " → " + entityText(r.b);
    return { member: r.member, height: r.height, index: r.index, time: r.time, what, subject };
  }
  function drawTrace() {
    const key = state.sortKey;
    const rows = state.trace.slice().sort((x, y) => {
      const a = key === "height" ? x.height * 100000 + x.index : x[key];
      const b = key === "height" ? y.height * 100000 + y.index : y[key];
      return (a < b ? -1 : a > b ? 1 : 0) * (state.sortUp ? 1 : -1);
    });
    const tbody = $("trace-table").tBodies[0];
    clear(tbody);
    for (const r of rows) {
      const tr = document.createElement("tr");
      cell(tr, r.member);
      cell(tr, r.height);
      cell(tr, r.time.replace("T", " "));
      cell(tr, r.what);
      cell(tr, r.subject, "mono");
      tbody.appendChild(tr);
    }
    for (const th of $("trace-table").tHead.querySelectorAll("th")) {
      const b = th.querySelector("button");
      th.setAttribute("aria-sort", b && b.dataset.sort === key ? (state.sortUp ? "ascending" : "descending") : "none");
    }
  }
  for (const b of $("trace-table").tHead.querySelectorAll("button")) {
    b.addEventListener("click", () => {
      state.sortUp = state.sortKey === b.dataset.sort ? !state.sortUp : true;
      state.sortKey = b.dataset.sort;
      drawTrace();
    });
  }
  $("trace-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(async () => {
      const answer = await api("POST", "/trace", { case_id: $("tr-case").value.trim(), entity: $("tr-entity").value.trim() });
      state.trace = answer.records.map(traceRow);
      const members = new Set(state.trace.map((r) => r.member));
      $("trace-summary").textContent = answer.records.length + " record(s) from " + members.size + " member(s); access recorded at height " + answer.access.height + (answer.truncated ? " (more pages)" : "");
      drawTrace();
    });
  });

  // -- graph --------------------------------------------------------------------------
  async function fetchGraph(depth) {
    const body = { case_id: $("gr-case").value.trim(), entity: $("gr-entity").value.trim(), depth };
    const answer = await api("POST", "/graph", body);
    state.graph = answer;
    state.root = nodeId(answer.entity);
    const relations = new Set(), members = new Set();
    for (const e of answer.edges) { relations.add(e.relation); members.add(e.member); }
    refill($("gr-relation"), relations);
    refill($("gr-member"), members);
    return answer;
  }
  function refill(select, values) {
    const keep = select.value;
    while (select.options.length > 1) select.remove(1);
    for (const v of [...values].sort()) {
      const o = document.createElement("option");
      o.textContent = v;
      select.appendChild(o);
    }
    select.value = values.has(keep) ? keep : "";
  }
  function visibleEdges() {
    const rel = $("gr-relation").value, mem = $("gr-member").value;
    return state.graph.edges.filter((e) => state.shown.has(nodeId(e.a)) && state.shown.has(nodeId(e.b)) && (!rel || e.relation === rel) && (!mem || e.member === mem));
  }
  function reporters(id) {
    const out = new Set();
    for (const e of state.graph.edges) if (nodeId(e.a) === id || nodeId(e.b) === id) out.add(e.member);
    return [...out].sort();
  }
  function drawGraph() {
    const g = state.graph;
    const nodes = g.nodes.filter((n) => state.shown.has(nodeId(n)));
    const edges = visibleEdges();
    const elements = [];
    for (const n of nodes) {
      const id = nodeId(n);
      const by = reporters(id);
      elements.push({ data: { id, label: n.type + " " + n.pseudonym.slice(0, 6), colour: by.length ? colourOf(by[0]) : "#777", root: id === state.root ? 1 : 0 } });
    }
    edges.forEach((e, i) => elements.push({ data: { id: "e" + i, source: nodeId(e.a), target: nodeId(e.b), label: e.relation, colour: colourOf(e.member) } }));
    if (state.cy) state.cy.destroy();
    state.cy = window.cytoscape({
      container: $("cy"),
      elements,
      style: [
        { selector: "node", style: { "background-color": "data(colour)", label: "data(label)", "font-size": 10, color: "#111", "text-valign": "bottom" } },
        { selector: "node[root = 1]", style: { "border-width": 4, "border-color": "#000", shape: "diamond" } },
        { selector: "edge", style: { width: 2, "line-color": "data(colour)", "target-arrow-color": "data(colour)", "target-arrow-shape": "triangle", "curve-style": "bezier", label: "data(label)", "font-size": 8 } },
        { selector: ":selected", style: { "overlay-opacity": 0.25, "overlay-color": "#d60" } },
        { selector: "edge.path", style: { "line-color": "#d60", "target-arrow-color": "#d60", width: 5 } },
        { selector: "node.path", style: { "border-width": 4, "border-color": "#d60" } },
      ],
      layout: { name: "cose", animate: false, randomize: false },
      wheelSensitivity: 0.3,
    });
    state.cy.on("select", "node", (ev) => select(ev.target.id()));
    // The legend: which colour is which institution.
    const legend = $("gr-legend");
    clear(legend);
    for (const [member, colour] of memberColour) {
      const li = document.createElement("li");
      const sw = document.createElement("span");
      sw.style.background = colour;
      li.appendChild(sw);
      li.appendChild(document.createTextNode(member));
      legend.appendChild(li);
    }
    // The same picture as tables, for the keyboard and for reading.
    const nb = $("nodes-table").tBodies[0];
    clear(nb);
    for (const n of nodes) {
      const id = nodeId(n);
      const tr = document.createElement("tr");
      tr.dataset.node = id;
      tr.dataset.type = n.type;
      if (id === state.selected) tr.className = "selected";
      cell(tr, n.type + ":" + n.pseudonym, "mono");
      cell(tr, n.depth);
      cell(tr, reporters(id).join(", "));
      cell(tr, "").appendChild(button("Select", () => select(id)));
      nb.appendChild(tr);
    }
    const eb = $("edges-table").tBodies[0];
    clear(eb);
    for (const e of edges) {
      const tr = document.createElement("tr");
      tr.dataset.relation = e.relation;
      tr.dataset.a = nodeId(e.a);
      tr.dataset.b = nodeId(e.b);
      cell(tr, e.relation);
      cell(tr, entityText(e.a), "mono");
      cell(tr, entityText(e.b), "mono");
      cell(tr, e.member);
      cell(tr, e.height);
      eb.appendChild(tr);
    }
  }
  function select(id) {
    state.selected = id;
    $("gr-selected").textContent = id;
    for (const tr of $("nodes-table").tBodies[0].rows) tr.className = tr.dataset.node === id ? "selected" : "";
    if (state.cy) {
      const el = state.cy.getElementById(id);
      if (!el.selected()) { state.cy.elements().unselect(); el.select(); }
    }
  }
  $("graph-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(async () => {
      const depth = Number($("gr-depth").value);
      const answer = await fetchGraph(depth);
      state.depth = depth;
      state.shown = new Set(answer.nodes.map(nodeId));
      state.selected = null;
      $("gr-selected").textContent = "nothing";
      drawGraph();
      notice("graph: " + answer.nodes.length + " entities, " + answer.edges.length + " links, depth " + depth + (answer.truncated ? " (capped)" : ""));
    });
  });
  for (const id of ["gr-relation", "gr-member"]) $(id).addEventListener("change", () => { if (state.graph) drawGraph(); });
  $("gr-expand").addEventListener("click", () => act(async () => {
    if (!state.graph || !state.selected) throw new ApiError("select an entity of the graph first");
    const node = state.graph.nodes.find((n) => nodeId(n) === state.selected);
    if (node.depth >= state.depth) {
      if (state.depth >= 3) throw new ApiError("the API answers graphs up to depth 3");
      state.depth += 1;
      await fetchGraph(state.depth);
    }
    let added = 0;
    for (const e of state.graph.edges) {
      for (const [x, y] of [[e.a, e.b], [e.b, e.a]]) {
        if (nodeId(x) === state.selected && !state.shown.has(nodeId(y))) { state.shown.add(nodeId(y)); added += 1; }
      }
    }
    drawGraph();
    notice("expanded one step: " + added + " new entit" + (added === 1 ? "y" : "ies"));
  }));
  $("gr-path").addEventListener("click", () => act(async () => {
    if (!state.cy || !state.selected) throw new ApiError("select an entity of the graph first");
    state.cy.elements().removeClass("path");
    const found = state.cy.elements().aStar({ root: state.cy.getElementById(state.root), goal: state.cy.getElementById(state.selected), directed: false });
    if (!found.found) throw new ApiError("no path among the links shown");
    found.path.addClass("path");
    notice("path: " + found.distance + " step(s) from the traced entity");
  }));
  $("gr-disclose").addEventListener("click", () => act(async () => {
    if (!state.selected) throw new ApiError("select an entity of the graph first");
    const [type, pseudonym] = state.selected.split(":");
    $("dc-case").value = $("gr-case").value;
    $("dc-type").value = type;
    $("dc-pseudonym").value = pseudonym;
    document.querySelector('#tabs button[data-tab="disclosures"]').click();
    $("dc-pseudonym").focus();
  }));
  $("gr-png").addEventListener("click", () => act(async () => {
    if (!state.cy) throw new ApiError("draw a graph first");
    const blob = state.cy.png({ output: "blob", full: true, bg: "#ffffff" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "crosstrace-graph.png";
    document.body.appendChild(a);
    a.click();
    a.remove();
  }));

  // The picture as SVG, drawn from the graph's own positions and colours (the SVG
  // plugins for Cytoscape.js are GPL; this project is Apache-2.0). Visible elements only,
  // so the relation and member filters apply.
  function graphSvg(cy) {
    const esc = (s) => String(s).replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
    const box = cy.elements(":visible").boundingBox();
    const pad = 30;
    const parts = [];
    cy.edges(":visible").forEach((e) => {
      const a = e.source().position();
      const b = e.target().position();
      const colour = e.hasClass("path") ? "#d60" : e.data("colour");
      const width = e.hasClass("path") ? 5 : 2;
      parts.push(`<line x1="${a.x}" y1="${a.y}" x2="${b.x}" y2="${b.y}" stroke="${esc(colour)}" stroke-width="${width}" marker-end="url(#arrow)"/>`);
      parts.push(`<text x="${(a.x + b.x) / 2}" y="${(a.y + b.y) / 2 - 3}" font-size="8" text-anchor="middle">${esc(e.data("label"))}</text>`);
    });
    cy.nodes(":visible").forEach((n) => {
      const p = n.position();
      const stroke = n.hasClass("path") ? ' stroke="#d60" stroke-width="4"' : (n.data("root") ? ' stroke="#000" stroke-width="4"' : "");
      parts.push(`<circle cx="${p.x}" cy="${p.y}" r="15" fill="${esc(n.data("colour"))}"${stroke}/>`);
      parts.push(`<text x="${p.x}" y="${p.y + 28}" font-size="10" text-anchor="middle">${esc(n.data("label"))}</text>`);
    });
    const view = [box.x1 - pad, box.y1 - pad, box.w + 2 * pad, box.h + 2 * pad].join(" ");
    return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="${view}" font-family="sans-serif">` +
      '<defs><marker id="arrow" viewBox="0 0 10 10" refX="24" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>' +
      `<rect x="${box.x1 - pad}" y="${box.y1 - pad}" width="${box.w + 2 * pad}" height="${box.h + 2 * pad}" fill="#fff"/>` +
      parts.join("") + "</svg>";
  }
  $("gr-svg").addEventListener("click", () => act(async () => {
    if (!state.cy) throw new ApiError("draw a graph first");
    const blob = new Blob([graphSvg(state.cy)], { type: "image/svg+xml" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "crosstrace-graph.svg";
    document.body.appendChild(a);
    a.click();
    a.remove();
  }));

  // -- disclosures --------------------------------------------------------------------
  async function loadDisclosures() {
    const data = await api("GET", "/disclosures");
    const tbody = $("disc-table").tBodies[0];
    clear(tbody);
    for (const d of data.disclosures) {
      const tr = document.createElement("tr");
      cell(tr, d.request_id.slice(0, 12), "mono");
      cell(tr, d.case_id);
      cell(tr, d.entity.type + ":" + String(d.entity.pseudonym).slice(0, 12) + "…", "mono");
      cell(tr, d.state);
      cell(tr, d.asked.join(", "));
      cell(tr, d.answers.map((a) => a.member + ": " + a.outcome + (a.identifier ? " " + a.identifier : "") + (a.reason ? " (" + a.reason + ")" : "")).join("; "));
      cell(tr, d.created.replace("T", " "));
      tbody.appendChild(tr);
    }
  }
  $("disc-refresh").addEventListener("click", () => act(loadDisclosures));
  $("disc-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(async () => {
      const body = { case_id: $("dc-case").value.trim(), entity: { type: $("dc-type").value, pseudonym: $("dc-pseudonym").value.trim() } };
      const answer = await api("POST", "/disclosures", body);
      notice("disclosure requested (" + answer.state + "), asked: " + answer.asked.join(", "));
      await loadDisclosures();
    });
  });

  // -- audit trail --------------------------------------------------------------------
  async function loadAudit() {
    const c = $("au-case").value.trim();
    const data = await api("GET", "/audit" + (c ? "?case=" + encodeURIComponent(c) : ""));
    const tbody = $("audit-table").tBodies[0];
    clear(tbody);
    for (const r of data.records) {
      const tr = document.createElement("tr");
      cell(tr, r.time.replace("T", " "));
      cell(tr, r.member);
      cell(tr, actorText(r));
      cell(tr, r.query);
      cell(tr, r.case_id);
      cell(tr, r.subject ? entityText(r.subject) : r.psi ? r.psi.initiator + " ∩ " + r.psi.responder : "", "mono");
      cell(tr, r.height);
      tbody.appendChild(tr);
    }
    notice(data.records.length + " audit record(s)");
  }
  $("audit-form").addEventListener("submit", (ev) => { ev.preventDefault(); act(loadAudit); });

  // -- PSI runs -----------------------------------------------------------------------
  async function loadPsi() {
    const data = await api("GET", "/psi/runs");
    const tbody = $("psi-table").tBodies[0];
    clear(tbody);
    for (const r of data.runs || []) {
      const tr = document.createElement("tr");
      cell(tr, r.run_id.slice(0, 12), "mono");
      cell(tr, r.role);
      cell(tr, r.peer);
      cell(tr, r.case_id);
      cell(tr, r.entity_type);
      cell(tr, r.state + (r.message ? ": " + r.message : ""));
      cell(tr, r.progress.done + (r.progress.total != null ? " of " + r.progress.total : ""));
      cell(tr, r.result_size == null ? "" : r.result_size);
      tbody.appendChild(tr);
    }
  }
  $("psi-refresh").addEventListener("click", () => act(loadPsi));
})();
