// Small DOM helpers every page uses. Whatever comes from the API goes into the page as text (text nodes,
// `textContent`, option text, attributes), never as HTML.

export const $ = (selector, root = document) => root.querySelector(selector);

/** Builds an element; string children become text nodes, `on*` attributes listeners. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node && key !== "list") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** "25 Nov 2026, 20:14" from the API's "2026-11-25T20:14:11.123456Z". */
export function formatDate(value) {
  if (!value) return "—";
  const date = new Date(String(value).replace(/(\.\d{3})\d+/, "$1"));
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** Brings `node` into view and gives it the keyboard focus (a heading gets tabindex -1 to take it). */
export function reveal(node, block = "start") {
  if (!node.matches("a, button, input, select, textarea, [tabindex]")) node.tabIndex = -1;
  node.scrollIntoView({ block });
  node.focus({ preventScroll: true });
}
