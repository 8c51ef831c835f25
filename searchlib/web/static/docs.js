// The API page: renders /openapi.json as a plain list of endpoints and their parameters.
// Text goes in with textContent only: nothing in the description is treated as HTML.
"use strict";

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text != null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function typeOf(schema, spec) {
  if (!schema) return "";
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.anyOf) return schema.anyOf.map((s) => typeOf(s, spec)).filter((t) => t !== "null").join(" | ");
  if (schema.type === "array") return `${typeOf(schema.items, spec)}[] (repeatable)`;
  const bounds = [];
  if (schema.minimum != null) bounds.push(`≥ ${schema.minimum}`);
  if (schema.exclusiveMinimum != null) bounds.push(`> ${schema.exclusiveMinimum}`);
  if (schema.maximum != null) bounds.push(`≤ ${schema.maximum}`);
  if (schema.maxLength != null) bounds.push(`≤ ${schema.maxLength} chars`);
  if (schema.pattern) bounds.push(schema.pattern);
  return [schema.type || "", ...bounds].join(" ");
}

function paramRows(params, spec) {
  const table = el("table");
  const head = table.insertRow();
  for (const h of ["name", "in", "type", "default", "what"]) head.appendChild(el("th", h));
  for (const p of params) {
    const row = table.insertRow();
    row.appendChild(el("td", p.name + (p.required ? " *" : ""), "name"));
    row.appendChild(el("td", p.in));
    row.appendChild(el("td", typeOf(p.schema, spec)));
    row.appendChild(el("td", p.schema && p.schema.default != null ? JSON.stringify(p.schema.default) : ""));
    row.appendChild(el("td", p.description || (p.schema && p.schema.description) || ""));
  }
  return table;
}

function bodyParams(op, spec) {
  const content = op.requestBody && op.requestBody.content;
  if (!content) return [];
  const kind = Object.keys(content)[0];
  let schema = content[kind].schema || {};
  if (schema.$ref) schema = spec.components.schemas[schema.$ref.split("/").pop()] || {};
  const required = new Set(schema.required || []);
  return Object.entries(schema.properties || {}).map(([name, s]) => ({
    name, in: kind === "multipart/form-data" ? "form" : "body", required: required.has(name), schema: s,
    description: s.description || (s.format === "binary" || (s.anyOf || []).some((x) => x.format === "binary")
      ? "a file" : ""),
  }));
}

async function main() {
  const main = document.getElementById("endpoints");
  let spec;
  try {
    const response = await fetch("/openapi.json");
    spec = await response.json();
    if (!response.ok) throw new Error(spec.error || response.statusText);
  } catch (e) {
    main.replaceChildren(el("p", `Could not load /openapi.json: ${e.message}`));
    return;
  }
  document.getElementById("version").textContent = spec.info.version || "";
  document.getElementById("about").textContent = spec.info.description || "";
  main.replaceChildren();
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const section = el("section");
      const title = el("h2");
      title.appendChild(el("span", method.toUpperCase(), "method"));
      title.appendChild(document.createTextNode(path));
      section.appendChild(title);
      if (op.summary) section.appendChild(el("p", op.summary));
      const params = [...(op.parameters || []), ...bodyParams(op, spec)];
      if (params.length) section.appendChild(paramRows(params, spec));
      const codes = Object.entries(op.responses || {}).map(([code, r]) => `${code} ${r.description || ""}`);
      if (codes.length) section.appendChild(el("p", `Answers: ${codes.join("; ")}`, "muted"));
      main.appendChild(section);
    }
  }
}

main();
