// The zoo index: every registered model, sortable by any column, filterable by family.
"use strict";
(() => {
  const {el, grouped, millions} = convzoo;
  const models = convzoo.data().models;
  const side = (s) => s ? `${s[1]}x${s[2]}` : "any";
  const weightsText = (m) => m.weights.map((w) => `${w.dataset} ${(w.accuracy * 100).toFixed(2)}% (${w.split})`).join("; ");
  const columns = [
    {key: "name", label: "model", value: (m) => m.name, cell: (m) => el("a", {href: `models/${m.name}.html`, text: m.name})},
    {key: "family", label: "family", value: (m) => m.family},
    {key: "paper", label: "paper", value: (m) => m.paper},
    {key: "year", label: "year", value: (m) => m.year, num: true},
    {key: "params", label: "parameters", value: (m) => m.total_params, text: (m) => grouped(m.total_params), num: true},
    {key: "macs", label: "mult-adds (M)", value: (m) => m.total_macs, text: (m) => millions(m.total_macs), num: true},
    {key: "input", label: "default input", value: (m) => m.input_size[1], text: (m) => m.input_size.join(" x "), num: true},
    {key: "range", label: "input sides", value: (m) => m.min_input_size[1], text: (m) => `${m.min_input_size[1]} .. ${m.max_input_size ? m.max_input_size[1] : "any"}`},
    {key: "weights", label: "shipped weights (accuracy)", value: (m) => m.weights.length ? m.weights[0].accuracy : -1, text: weightsText},
  ];
  let sortKey = "name", ascending = true, family = null;
  const families = [...new Set(models.map((m) => m.family))].sort();
  const main = convzoo.main();
  main.append(
    el("h1", {text: "The zoo"}),
    el("p", {class: "muted", text: `${models.length} registered models, LeNet to DenseNet. Parameters and multiply-adds at each model's default input, as convzoo summary counts them; accuracy as the weights' own training run measured it. Click a column to sort, a family to filter.`}),
  );
  const filters = el("div", {class: "filters", id: "families"}, el("span", {class: "muted", text: "family:"}));
  const buttons = [null, ...families].map((f) => el("button", {"data-family": f || "", class: f === null ? "on" : null, text: f || "all",
    onclick: () => { family = f; buttons.forEach((b) => b.classList.toggle("on", b.dataset.family === (f || ""))); render(); }}));
  filters.append(...buttons);
  const table = el("table", {id: "zoo"});
  const head = el("tr", {}, columns.map((c) => el("th", {class: `sortable${c.num ? " num" : ""}`, "data-key": c.key, text: c.label,
    onclick: () => { ascending = sortKey === c.key ? !ascending : true; sortKey = c.key; render(); }})));
  const body = el("tbody");
  table.append(el("thead", {}, head), body);
  main.append(filters, table);
  function render() {
    const column = columns.find((c) => c.key === sortKey);
    const shown = models.filter((m) => family === null || m.family === family);
    shown.sort((a, b) => { const x = column.value(a), y = column.value(b); return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1); });
    body.replaceChildren(...shown.map((m) => el("tr", {"data-model": m.name, "data-family": m.family},
      columns.map((c) => el("td", {class: c.num ? "num" : null, "data-key": c.key}, c.cell ? c.cell(m) : (c.text ? c.text(m) : String(c.value(m))))))));
    head.querySelectorAll("th").forEach((th) => {
      th.classList.toggle("sorted-asc", th.dataset.key === sortKey && ascending);
      th.classList.toggle("sorted-desc", th.dataset.key === sortKey && !ascending);
    });
  }
  render();
})();
