// What every page shares: its data (the JSON element the builder wrote), element building, number formats.
"use strict";
const convzoo = (() => {
  const data = () => JSON.parse(document.getElementById("page-data").textContent);
  // el("td", {class: "num", text: "12"}, child, ...): an element with attributes and children
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "html") node.innerHTML = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const grouped = (n) => Number(n).toLocaleString("en-US");  // 61,706 as convzoo summary prints it
  const millions = (n) => (n / 1e6).toLocaleString("en-US", {maximumFractionDigits: 2, minimumFractionDigits: 2});
  const shape = (s) => "[" + s.join(", ") + "]";
  const percent = (p, digits = 2) => (100 * p).toFixed(digits) + "%";
  const main = () => document.getElementById("main");
  return {data, el, grouped, millions, shape, percent, main, root: document.body.dataset.root || ""};
})();
