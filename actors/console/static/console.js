// The sd-actors web console: the component trees of a daemon's applications, kept current from
// server-sent lifecycle events, a component's attributes, terminate, and the launch form.
"use strict";

const FINAL = new Set(["terminated", "failed"]);
// An application whose root is gone from the daemon (ended before it restarted) shows as its journal says.
const APP_STATES = {deploying: "created", running: "started", terminating: "terminating", failed: "failed"};
const ICONS = {new: "○", created: "◐", deployed: "◐", started: "●", terminating: "◌", terminated: "■", failed: "✖"};
const meta = document.querySelector('meta[name="sd-csrf"]');
const model = {apps: new Map(), selected: null, templates: [], template: null, host: "", launched: new Map()};
let renderPending = false;

const $ = (selector) => document.querySelector(selector);
const key = (path) => path.join(":");

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function getJson(url) {
  const response = await fetch(url, {headers: {Accept: "application/json"}});
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw Object.assign(new Error(data.error || response.statusText), {data});
  return data;
}

async function postJson(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: {"Content-Type": "application/json", [meta.dataset.header]: meta.content},
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw Object.assign(new Error(data.error || response.statusText), {data, status: response.status});
  return data;
}

// ---------------------------------------------------------------------------------- the model
// What the tree shows is stale while the daemon (or the console) does not answer: it is dimmed.
function showReachable(problem, text) {
  const indicator = $("#daemon");
  indicator.textContent = problem ? text : `daemon ${model.host}`;
  indicator.title = problem || "";
  indicator.classList.toggle("down", Boolean(problem));
  $("#tree").classList.toggle("stale", Boolean(problem));
}

function applySnapshot(snapshot) {
  model.host = snapshot.host;
  model.apps = new Map();
  for (const app of snapshot.applications) {
    const components = new Map();
    for (const component of app.components) components.set(key(component.path), component);
    const previous = model.apps.get(app.name);
    if (previous && app.status === "hosted") {  // a subtree run here for a parent elsewhere
      for (const [path, component] of components) previous.components.set(path, component);
      continue;
    }
    model.apps.set(app.name, {name: app.name, status: app.status, host: app.host, record: app.record, components});
  }
  showReachable("", "");
  scheduleRender();
}

function applyNotice(notice) {
  const name = notice.path[0];
  let app = model.apps.get(name);
  if (!app) {
    app = {name, status: "deploying", host: notice.host, record: null, components: new Map()};
    model.apps.set(name, app);
  }
  const path = key(notice.path);
  const known = app.components.get(path) || {path: notice.path, component_class: notice.component_class};
  app.components.set(path, {
    ...known, state: notice.new, host: notice.host || known.host,
    component_class: notice.component_class || known.component_class,
    liveness: FINAL.has(notice.new) ? "" : "ok", record: notice.record || known.record || null,
  });
  if (notice.path.length === 1) {
    app.status = {started: "running", terminated: "terminated", failed: "failed"}[notice.new] || "deploying";
    if (notice.record) app.record = notice.record;
  }
  scheduleRender();
  if (model.selected === path) showDetails(path);
}

// ---------------------------------------------------------------------------------- the tree
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => { renderPending = false; renderTree(); });
}

function renderTree() {
  const tree = $("#tree");
  tree.replaceChildren();
  if (model.apps.size === 0) {
    tree.append(element("p", {class: "empty"}, "no applications"));
    return;
  }
  const top = element("ul", {class: "tree"});
  for (const app of [...model.apps.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    const children = new Map();  // parent path -> child components, in the order they came
    for (const component of app.components.values()) {
      const parent = key(component.path.slice(0, -1));
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(component);
    }
    const root = app.components.get(app.name) ||
      {path: [app.name], state: APP_STATES[app.status] || "terminated",
       host: app.host, component_class: "", liveness: "", record: app.record};
    top.append(renderNode(root, children, app));
  }
  tree.append(top);
}

function renderNode(component, children, app) {
  const path = key(component.path);
  const state = component.state || "new";
  const unresponsive = state === "started" && component.liveness !== "ok";
  const icon = unresponsive ? "?" : (ICONS[state] || "○");
  const row = element("div", {class: `node${model.selected === path ? " selected" : ""}`, "data-path": path,
                              "data-state": state},
    element("span", {class: `icon ${unresponsive ? "unresponsive" : `state-${state}`}`,
                     title: unresponsive ? "not answering liveness checks" : state}, icon),
    element("span", {class: "name", onclick: () => select(path)}, component.path[component.path.length - 1]),
    element("span", {class: `state state-${state}`}, component.path.length === 1 ? `${state} (${app.status})` : state),
    element("span", {class: "host"}, component.host || ""),
    element("span", {class: "class"}, component.component_class || ""));
  if (!FINAL.has(state)) {
    row.append(
      element("button", {type: "button", class: "terminate", title: "terminate normally",
                         onclick: () => terminate(component.path, "normal")}, "terminate"),
      element("button", {type: "button", class: "abort", title: "terminate abnormally (its parent sees a failure)",
                         onclick: () => terminate(component.path, "abnormal")}, "abnormal"));
  }
  const item = element("li", {}, row);
  const below = children.get(path) || [];
  if (below.length) {
    const list = element("ul", {class: "tree"});
    for (const child of below) list.append(renderNode(child, children, app));
    item.append(list);
  }
  return item;
}

async function terminate(path, kind) {
  const what = kind === "normal" ? "Terminate" : "Terminate abnormally";
  if (!window.confirm(`${what} ${key(path)}?`)) return;
  try {
    await postJson("/api/terminate", {path, kind});
  } catch (error) {
    window.alert(`could not terminate ${key(path)}: ${error.message}`);
  }
}

// ---------------------------------------------------------------------------------- details
function select(path) {
  model.selected = path;
  scheduleRender();
  showDetails(path);
}

function findComponent(path) {
  const app = model.apps.get(path.split(":")[0]);
  return app ? app.components.get(path) : undefined;
}

async function showDetails(path) {
  $("#selected-title").textContent = path;
  const body = $("#attributes tbody");
  let details = null;
  let problem = "";
  try {
    details = await getJson(`/api/component?path=${encodeURIComponent(path)}`);
  } catch (error) {
    problem = error.message;
  }
  if (model.selected !== path) return;  // another one was selected meanwhile
  const status = details ? details.status : findComponent(path);
  const summary = $("#selected-summary");
  summary.replaceChildren();
  if (status) {
    summary.append(element("p", {},
      element("span", {class: `state state-${status.state}`, id: "selected-state"}, status.state),
      ` on ${status.host || "?"}  `, element("span", {class: "class"}, status.component_class || "")));
  }
  body.replaceChildren();
  if (details) {
    for (const attribute of details.attributes) {
      body.append(element("tr", {"data-attribute": attribute.name}, element("td", {}, attribute.name),
                          element("td", {class: "value"}, attribute.value),
                          element("td", {}, attribute.tags.join(", "))));
    }
  } else {
    body.append(element("tr", {}, element("td", {colspan: "3", class: "empty"}, problem)));
  }
  renderPanels(details ? details.panels : []);
  const record = (details && details.status.record) || (status && status.record);
  const recordBox = $("#record");
  recordBox.replaceChildren();
  if (record) {
    recordBox.append(element("dl", {class: "record"},
      element("dt", {}, "kind"), element("dd", {id: "record-kind"}, record.kind),
      element("dt", {}, "description"), element("dd", {}, record.description || ""),
      element("dt", {}, "component"), element("dd", {}, record.path.join(":")),
      element("dt", {}, "cause"), element("dd", {}, record.cause || "")));
  } else {
    recordBox.append(element("p", {class: "empty"}, "none"));
  }
}

// What plugins add for this kind of component (sd_actors_console_panels), each under its title.
function renderPanels(panels) {
  const box = $("#panels");
  box.replaceChildren();
  for (const panel of panels) {
    const section = element("div", {class: "panel", "data-panel": panel.title}, element("h3", {}, panel.title));
    if (panel.error) {
      section.append(element("p", {class: "error panel-error"}, `this panel failed: ${panel.error}`));
    } else {
      const rows = element("tbody");
      for (const [label, text] of panel.rows) rows.append(element("tr", {}, element("th", {}, label), element("td", {}, text)));
      section.append(element("table", {class: "panel-rows"}, rows));
    }
    box.append(section);
  }
}

// ---------------------------------------------------------------------------------- launch
async function loadTemplates() {
  const list = $("#templates");
  try {
    model.templates = await getJson("/api/templates");
  } catch (error) {
    list.replaceChildren(element("li", {class: "broken"}, error.message));
    return;
  }
  list.replaceChildren();
  for (const template of model.templates) {
    const count = template.error ? "cannot be read" :
      (template.fields.length ? `${template.fields.length} to fill in` : "complete");
    list.append(element("li", {"data-template": template.name, class: template.error ? "broken" : "",
                               onclick: () => chooseTemplate(template.name)},
                        template.name, " ", element("span", {class: "count"}, `(${count})`)));
  }
}

function chooseTemplate(name) {
  const template = model.templates.find((t) => t.name === name);
  model.template = template;
  for (const item of document.querySelectorAll("#templates li")) {
    item.classList.toggle("selected", item.dataset.template === name);
  }
  $("#template-title").textContent = template.name;
  const form = $("#launch-form");
  $("#template-file").textContent = template.file;
  $("#launch-error").textContent = template.error;
  $("#app-name").value = template.name;
  const fields = $("#fields");
  fields.replaceChildren();
  for (const field of template.fields) fields.append(fieldControl(field));
  $("#no-fields").hidden = template.fields.length > 0 || Boolean(template.error);
  $("#deploy").disabled = Boolean(template.error);
  form.hidden = false;
  clearErrors();
}

function fieldControl(field) {
  let input;
  if (field.input === "boolean") {
    input = element("select", {}, element("option", {value: ""}, "choose…"),
                    element("option", {value: "true"}, "true"), element("option", {value: "false"}, "false"));
  } else if (field.input === "integer") {
    input = element("input", {type: "number", step: "1"});
  } else if (field.input === "number") {
    input = element("input", {type: "number", step: "any"});
  } else {
    input = element("input", {type: "text"});
  }
  input.required = true;
  input.name = field.path;
  input.dataset.field = field.path;
  const kinds = field.kinds.length ? field.kinds.join(" or ") :
    "any SmartFrog literal (42, true, \"text\"); anything else is taken as text";
  return element("label", {class: "field"}, field.path,
                 element("span", {class: "hint"}, `${kinds}${field.description ? ` — ${field.description}` : ""}`),
                 input, element("span", {class: "error", "data-error-for": field.path}));
}

function clearErrors() {
  for (const span of document.querySelectorAll("#launch-form .error[data-error-for]")) span.textContent = "";
  for (const input of document.querySelectorAll("#launch-form .invalid")) input.classList.remove("invalid");
  $("#launch-error").textContent = model.template ? model.template.error : "";
}

function showError(field, text) {
  const span = document.querySelector(`#launch-form [data-error-for="${CSS.escape(field)}"]`);
  if (span) {
    span.textContent = text;
    const input = field === "name" ? $("#app-name") : document.querySelector(`[data-field="${CSS.escape(field)}"]`);
    if (input) input.classList.add("invalid");
  } else {
    $("#launch-error").textContent += `${field}: ${text}\n`;
  }
}

function checkForm() {
  // The browser's own checks (required, number, pattern), reported beside each field; the server checks again.
  let valid = true;
  const name = $("#app-name");
  if (!name.checkValidity()) {
    showError("name", name.value ? "letters, digits, '.', '_' or '-', starting with a letter or digit" :
      "a value is required");
    valid = false;
  }
  for (const input of document.querySelectorAll("#fields [data-field]")) {
    if (!input.checkValidity()) {
      const wanted = input.type === "number" ? (input.step === "1" ? "a whole number" : "a number") : "a value";
      showError(input.dataset.field, input.validity.valueMissing && !input.validity.badInput ?
        "a value is required" : `must be ${wanted}`);
      valid = false;
    }
  }
  return valid;
}

async function launch(event) {
  event.preventDefault();
  clearErrors();
  if (!checkForm()) return;
  const values = {};
  for (const input of document.querySelectorAll("#fields [data-field]")) values[input.dataset.field] = input.value;
  const name = $("#app-name").value;
  $("#deploy").disabled = true;
  try {
    const answer = await postJson("/api/launch", {template: model.template.name, name, values});
    if (!model.launched.has(answer.app)) {  // the end of a quick deployment may come before this answer
      $("#launch-progress").replaceChildren(element("p", {id: "progress-text"}, `deploying ${answer.app} on ${answer.host}…`));
    }
    showView("apps");
    select(answer.app);
  } catch (error) {
    const problems = error.data && error.data.problems;
    if (problems) for (const [field, text] of Object.entries(problems)) showError(field, text);
    else $("#launch-error").textContent = error.message;
  } finally {
    $("#deploy").disabled = false;
  }
}

function launched(end) {
  model.launched.set(end.app, end);
  const text = end.state === "started" ? `${end.app} is up` :
    `${end.app} failed: ${end.record ? `${end.record.kind} termination of ${end.record.path.join(":")}: ` +
      end.record.description : end.state}`;
  $("#launch-progress").replaceChildren(element("p", {id: "progress-text", class: `state-${end.state}`}, text));
}

// ---------------------------------------------------------------------------------- wiring
function showView(name) {
  $("#view-apps").hidden = name !== "apps";
  $("#view-launch").hidden = name !== "launch";
  $("#tab-apps").classList.toggle("active", name === "apps");
  $("#tab-launch").classList.toggle("active", name === "launch");
  if (name === "launch") loadTemplates();
}

function listen() {
  const events = new EventSource("/api/events");
  events.addEventListener("snapshot", (event) => applySnapshot(JSON.parse(event.data)));
  events.addEventListener("notice", (event) => applyNotice(JSON.parse(event.data)));
  events.addEventListener("launched", (event) => launched(JSON.parse(event.data)));
  events.addEventListener("daemon", (event) => showReachable(JSON.parse(event.data).error, "daemon not answering"));
  events.addEventListener("error", () => showReachable("the page lost its event stream", "console not answering; reconnecting…"));
}

$("#tab-apps").addEventListener("click", () => showView("apps"));
$("#tab-launch").addEventListener("click", () => showView("launch"));
$("#launch-form").addEventListener("submit", launch);
listen();
