// The convolution page: convzoo explain's worked examples, stepped window by window. The grids are the
// numbers explain computed (Explanation.numbers); each step writes the window's arithmetic the way explain
// prints its first window, so the page and `convzoo explain` can be compared line for line.
"use strict";
(() => {
  const {el} = convzoo;
  const examples = convzoo.data().examples;
  const main = convzoo.main();
  // explain's _num: whole numbers without a point, others with up to 4 decimals
  function num(v) {
    if (!Number.isFinite(v)) return v < 0 ? "-inf" : "inf";
    if (v === Math.round(v)) return String(Math.round(v));
    const text = v.toFixed(4).replace(/0+$/, "").replace(/\.$/, "");
    return text === "-0" ? "0" : text;
  }
  const signed = (v) => (v < 0 ? `(${num(v)})` : num(v));
  const decimals = (v) => { const t = num(v); return t.includes(".") ? t.length - t.indexOf(".") - 1 : 0; };
  // explain's _grid: one number of decimals for the whole grid
  function gridCells(rows) {
    const places = Math.max(...rows.flat().map(decimals));
    return rows.map((row) => row.map((v) => {
      if (places === 0 || !Number.isFinite(v)) return num(v);
      const text = v.toFixed(places);
      return text.startsWith("-") && Number(text) === 0 ? text.slice(1) : text;
    }));
  }
  function gridTable(rows, cls, padding) {
    const cells = gridCells(rows);
    return el("table", {class: `grid ${cls}`}, rows.map((row, r) => el("tr", {}, row.map((v, c) => el("td", {
      "data-r": r, "data-c": c, "data-value": v,
      class: padding && (r < padding || c < padding || r >= rows.length - padding || c >= row.length - padding) ? "pad" : null,
      text: cells[r][c]})))));
  }
  // explain's _products: "3*1 + 4*2 + ... = 211", one line, or one line per kernel row when long
  function products(windowRows, kernelRows) {
    const rows = windowRows.map((wr, i) => wr.map((x, j) => `${num(x)}*${num(kernelRows[i][j])}`).join(" + "));
    let total = 0;
    windowRows.forEach((wr, i) => wr.forEach((x, j) => { total += x * kernelRows[i][j]; }));
    const oneLine = "  " + rows.join(" + ") + ` = ${num(total)}`;
    if (oneLine.length <= 100) return {text: oneLine, total};
    return {text: rows.map((r, i) => (i === 0 ? "  " : "+ ") + r).join("\n") + ` = ${num(total)}`, total};
  }
  const windowOf = (plane, r0, c0, k) => plane.slice(r0, r0 + k).map((row) => row.slice(c0, c0 + k));

  examples.forEach((ex) => {
    const section = el("section", {class: "example-conv", id: ex.id, "data-kind": ex.kind});
    const k = ex.kind === "conv" ? ex.kernel[0][0].length : ex.kernel_size;
    const outputs = ex.output.length, outH = ex.output[0].length, outW = ex.output[0][0].length;
    section.append(el("h2", {text: ex.title}), el("p", {text: ex.why}),
      el("p", {class: "muted"}, "The numbers of ", el("code", {text: ex.command}), ex.padding ? `; padding ${ex.padding}` : "", `, stride ${ex.stride}.`));
    const grids = el("div", {class: "grids"});
    const inputTables = ex.padded.map((plane, ch) => el("div", {},
      el("h3", {text: ex.padded.length > 1 ? `input channel ${ch}${ex.padding ? " (padded)" : ""}` : `input${ex.padding ? `, padded by ${ex.padding}` : ""}`}),
      gridTable(plane, `input ch${ch}`, ex.padding)));
    grids.append(...inputTables);
    if (ex.kind === "conv" && k === 1) {  // 1x1: the kernels are one weight matrix, outputs x inputs
      grids.append(el("div", {}, el("h3", {text: `weights, ${ex.kernel.length} outputs x ${ex.kernel[0].length} inputs`}),
        gridTable(ex.kernel.map((perOut) => perOut.map((plane) => plane[0][0])), "kernel weights", 0)));
    } else if (ex.kind === "conv") {
      ex.kernel.forEach((perOut, o) => perOut.forEach((plane, ch) => grids.append(el("div", {},
        el("h3", {text: ex.kernel.length > 1 || perOut.length > 1 ? `kernel, output ${o}, input ${ch}` : "kernel"}),
        gridTable(plane, `kernel o${o} ch${ch}`, 0)))));
    } else {
      grids.append(el("div", {}, el("h3", {text: `window ${k}x${k}`}), el("p", {class: "muted", text: ex.kind === "max" ? "the largest value" : "the mean"})));
    }
    const outputTables = ex.output.map((plane, o) => el("div", {},
      el("h3", {text: outputs > 1 ? `output channel ${o}` : "output"}), gridTable(plane, `output o${o}`, 0)));
    grids.append(...outputTables);
    const line = el("div", {class: "products", "data-step": "0"});
    const where = el("p", {class: "where"});
    let step = 0;
    const steps = outputs * outH * outW;
    const prev = el("button", {class: "step prev", text: "◀ previous window", onclick: () => go(step - 1)});
    const next = el("button", {class: "step next", text: "next window ▶", onclick: () => go(step + 1)});
    const all = el("button", {class: "step all", text: "show every window", onclick: () => go(steps - 1)});
    section.append(grids, el("p", {}, prev, " ", next, " ", all), where, line);
    if (ex.text) section.append(el("details", {}, el("summary", {}, "what ", el("code", {text: ex.command}), " prints"), el("pre", {class: "explain-text", text: ex.text})));
    main.append(section);
    function go(target) {
      step = Math.max(0, Math.min(steps - 1, target));
      const o = Math.floor(step / (outH * outW)), r = Math.floor(step / outW) % outH, c = step % outW;
      const r0 = r * ex.stride, c0 = c * ex.stride;
      inputTables.forEach((div) => div.querySelectorAll("td").forEach((td) => {
        const tr = Number(td.dataset.r), tc = Number(td.dataset.c);
        td.classList.toggle("in-window", tr >= r0 && tr < r0 + k && tc >= c0 && tc < c0 + k);
      }));
      outputTables.forEach((div, oo) => div.querySelectorAll("td").forEach((td) => {
        const index = oo * outH * outW + Number(td.dataset.r) * outW + Number(td.dataset.c);
        td.classList.toggle("current", index === step);
        td.classList.toggle("done", index < step);
        td.style.visibility = index <= step ? "visible" : "hidden";
      }));
      let text;
      if (ex.kind === "conv" && k === 1) {  // explain 1x1's line: a weighted sum of the pixel's channels
        const terms = ex.padded.map((plane, ch) => `${num(plane[r0][c0])}*${signed(ex.kernel[o][ch][0][0])}`);
        text = `  output ${o}: ${terms.join(" + ")} = ${num(ex.output[o][r][c])}`;
      } else if (ex.kind === "conv") {
        const parts = ex.padded.map((plane, ch) => products(windowOf(plane, r0, c0, k), ex.kernel[o][ch]));
        if (parts.length === 1) text = parts[0].text;
        else {
          const total = parts.reduce((a, p) => a + p.total, 0);
          text = parts.map((p, ch) => `channel ${ch}:\n${p.text}`).join("\n") + `\nsum over the channels: ${parts.map((p) => num(p.total)).join(" + ")} = ${num(total)}`;
        }
      } else {
        const values = windowOf(ex.padded[0], r0, c0, k).flat();
        if (ex.kind === "max") text = `max(${values.map(num).join(", ")}) = ${num(Math.max(...values))}`;
        else {
          const total = values.reduce((a, b) => a + b, 0);
          text = `(${values.map(num).join(" + ")}) / ${k * k} = ${num(total)} / ${k * k} = ${num(ex.output[0][r][c])}`;
        }
      }
      line.textContent = text;
      line.dataset.step = String(step);
      line.dataset.value = String(ex.output[o][r][c]);
      where.textContent = `window ${step + 1} of ${steps}: ${outputs > 1 ? `output channel ${o}, ` : ""}rows ${r0}-${r0 + k - 1}, columns ${c0}-${c0 + k - 1} of the ${ex.padding ? "padded " : ""}input give output row ${r}, column ${c}`;
      prev.disabled = step === 0; next.disabled = step === steps - 1;
    }
    go(0);
  });
  main.prepend(el("h1", {text: "Convolution, window by window"}),
    el("p", {class: "muted", text: "The worked examples of the notes (001) and of convzoo explain: press next to move the window; the line under the grids is that window's arithmetic, and the output fills in as you go."}));
})();
