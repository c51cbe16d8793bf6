// A model page: the registry's entry, a diagram drawn from the inspector's rows, the rows as a tree that
// expands block by block, the shipped weights' pictures and the "Try it" panels.
"use strict";
(() => {
  const {el, grouped, millions, shape} = convzoo;
  const m = convzoo.data();
  const main = convzoo.main();
  main.append(
    el("h1", {text: m.name}),
    el("p", {}, el("strong", {text: m.paper}), ` (${m.year}); family `, el("code", {text: m.family}),
      m.notes ? `; study notes ${m.notes}` : ""),
    el("table", {id: "totals"},
      el("tr", {}, el("th", {text: "Total params"}), el("td", {class: "num", id: "total-params", text: grouped(m.total_params)})),
      el("tr", {}, el("th", {text: "Trainable params"}), el("td", {class: "num", text: grouped(m.trainable_params)})),
      el("tr", {}, el("th", {text: "Total mult-adds (M)"}), el("td", {class: "num", id: "total-macs", text: millions(m.total_macs)})),
      el("tr", {}, el("th", {text: "Default input"}), el("td", {class: "num", text: m.input_size.join(" x ")})),
      el("tr", {}, el("th", {text: "Input sides accepted"}), el("td", {class: "num",
        text: `${m.min_input_size[1]} .. ${m.max_input_size ? m.max_input_size[1] : "any"}`})),
      el("tr", {}, el("th", {text: "Shipped weights"}), el("td", {text: m.weights.length ? m.weights.map((w) =>
        `${w.dataset}: ${(100 * w.accuracy).toFixed(2)}% on ${grouped(w.split_size)} ${w.split} images`).join("; ") : "none"}))),
  );
  for (const why of m.left_out) main.append(el("p", {class: "note", text: `Left out here: ${why}.`}));
  if (m.tryit.length) {
    main.append(el("h2", {text: "Try it"}));
    for (const spec of m.tryit) {
      const gallery = m.galleries.find((g) => g.dataset === spec.dataset);
      const box = el("div", {class: "tryit", id: `tryit-${spec.dataset}`});
      main.append(box);
      convzooTry.panel(box, spec, gallery ? gallery.picks : []);
    }
  }

  // the diagram: the input, then each block of features and of the head, as d2l draws them
  main.append(el("h2", {text: "The network, block by block"}),
    el("p", {class: "muted", text: "Drawn from the inspector's rows at the default input: each box is a top-level block of the model's features or head, labelled with its output shape (batch x channels x height x width) and its parameters; its height grows with the feature map's side, its width with the channels."}));
  main.append(el("div", {class: "diagram", id: "diagram", html: diagram([{name: "input", type: "image", shape: [1, ...m.input_size], params: 0, part: "input"}, ...m.blocks])}));

  // the tree: blocks expand into their layers
  main.append(el("h2", {text: "Layer by layer"}),
    el("p", {class: "muted"}, "The numbers ", el("code", {text: `convzoo summary ${m.name}`}), " prints: a block's row holds its own parameters (usually none), its layers theirs; every row's output shape is for a batch of one. Click ▸ to open a block."),
    el("p", {}, el("button", {class: "step", id: "expand-all", text: "open all", onclick: () => setAll(true)}), " ",
      el("button", {class: "step", id: "collapse-all", text: "close all", onclick: () => setAll(false)})));
  const rows = m.rows;
  const children = rows.map(() => []);
  rows.forEach((r, i) => { if (r.parent !== null) children[r.parent].push(i); });
  const open = rows.map((r) => r.depth < 1);  // the model and its features/head open at first
  // what a block holds with everything inside it (summary's rows count each parameter once, on its own layer)
  const inside = rows.map((r) => ({params: r.params, macs: r.macs}));
  for (let i = rows.length - 1; i >= 0; i--) {
    const p = rows[i].parent;
    if (p !== null) { inside[p].params += inside[i].params; inside[p].macs += inside[i].macs; }
  }
  const trs = rows.map((r, i) => {
    const toggle = children[i].length ? el("span", {class: "toggle", text: "▸", onclick: () => { open[i] = !open[i]; refresh(); }}) : el("span", {class: "toggle"});
    const label = r.depth === 0 ? r.type : `${r.name.split(".").pop()} (${r.type})`;
    return el("tr", {"data-index": i, "data-name": r.name, "data-depth": r.depth, class: children[i].length ? "block" : null},
      el("td", {class: "name", style: `padding-left:${0.4 + 1.3 * r.depth}em`, title: r.name}, toggle, label),
      el("td", {class: "shape", text: shape(r.shape)}),
      el("td", {class: "num params", text: r.params_text}),
      el("td", {class: "num macs", text: r.macs_text}),
      el("td", {class: "num muted inside", text: children[i].length ? `${grouped(inside[i].params)} / ${grouped(inside[i].macs)}` : ""}));
  });
  const table = el("table", {class: "tree", id: "tree"},
    el("thead", {}, el("tr", {}, el("th", {text: "Layer (type)"}), el("th", {text: "Output shape"}), el("th", {class: "num", text: "Param #"}), el("th", {class: "num", text: "Mult-adds"}), el("th", {class: "num", text: "a block in all: params / mult-adds"}))),
    el("tbody", {}, trs));
  main.append(table);
  function visible(i) { let p = rows[i].parent; while (p !== null) { if (!open[p]) return false; p = rows[p].parent; } return true; }
  function refresh() {
    trs.forEach((tr, i) => {
      tr.classList.toggle("hidden", !visible(i));
      const t = tr.querySelector(".toggle");
      if (children[i].length) t.textContent = open[i] ? "▾" : "▸";
    });
  }
  function setAll(value) { open.fill(value); open[0] = true; refresh(); }
  refresh();

  // the shipped weights' pictures
  for (const g of m.galleries) {
    main.append(el("h2", {text: `Inside, with the ${g.dataset} weights`}),
      el("h3", {text: "The first convolution's filters"}),
      el("p", {class: "muted", text: `${g.filters_shape.join(" x ")} (out x in x kH x kW), each kernel scaled to its own range.`}),
      el("img", {src: g.filters, alt: "the first convolution's filters", style: "max-width:100%"}));
    if (!g.examples.length) continue;
    main.append(el("h3", {text: "Test images, their top-5 and every block's feature maps"}),
      el("p", {class: "muted", text: "Test images of the data set (the first of some classes), preprocessed as the weights were trained (resize, mean and std of the weights' index); the maps are each block's output for that image, the first channels, each scaled to its own range (dark low, yellow high)."}));
    const gallery = el("div", {class: "gallery"});
    for (const ex of g.examples) {
      gallery.append(el("div", {class: "example", "data-example": ex.index},
        el("div", {}, el("img", {class: "input", src: ex.png, alt: `test image ${ex.index}`}), " ", el("span", {text: `label: ${ex.label}`})),
        top5Table(ex.top5),
        el("div", {class: "maps"}, ex.maps.map((b) => el("figure", {},
          el("img", {src: b.png, alt: `${b.layer} maps`, loading: "lazy"}),
          el("figcaption", {text: `${b.layer}: ${b.shape.join(" x ")}${b.shown < b.total ? ` (first ${b.shown} of ${b.total})` : ""}`}))))));
    }
    main.append(gallery);
  }

  function top5Table(top) {
    return el("table", {class: "top5"}, top.map(([name, p]) => el("tr", {},
      el("td", {text: name}), el("td", {class: "num", "data-prob": p, text: convzoo.percent(p)}),
      el("td", {}, el("span", {class: "bar", style: `width:${Math.round(80 * p)}px`})))));
  }

  function diagram(blocks) {
    const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
    const boxes = blocks.map((b) => {
      const channels = b.shape.length > 1 ? b.shape[1] : 1;
      const sideOf = b.shape.length === 4 ? Math.max(b.shape[2], b.shape[3]) : 1;
      return {b, w: 26 + 14 * Math.log2(1 + channels), h: b.shape.length === 4 ? 40 + 36 * Math.log2(1 + sideOf) : 40};
    });
    const gap = 30, top = 18, labelSpace = 58;
    const tallest = Math.max(...boxes.map((x) => x.h));
    let x = 10;
    const parts = [];
    boxes.forEach((box, i) => {
      const y = top + (tallest - box.h) / 2;
      const colour = box.b.part === "input" ? "#e6e6e6" : box.b.part === "head" ? "#ffe0b3" : box.b.type.includes("Pool") ? "#d6ecd2" : "#cfe0fb";
      parts.push(`<g class="block" data-name="${esc(box.b.name)}"><rect x="${x}" y="${y}" width="${box.w}" height="${box.h}" rx="4" fill="${colour}" stroke="#4a5568"/>`,
        `<text x="${x + box.w / 2}" y="${top + tallest + 16}" font-size="11" text-anchor="middle">${esc(box.b.name.replace(/^(features|head)\./, ""))}</text>`,
        `<text x="${x + box.w / 2}" y="${top + tallest + 30}" font-size="10" fill="#5b6475" text-anchor="middle">${esc(box.b.type)}</text>`,
        `<text x="${x + box.w / 2}" y="${top + tallest + 44}" font-size="10" text-anchor="middle">${esc(box.b.shape.slice(1).join("x"))}</text>`,
        `<title>${esc(box.b.name)} (${esc(box.b.type)}): output ${esc(shape(box.b.shape))}, ${grouped(box.b.params)} parameters</title></g>`);
      if (i + 1 < boxes.length) {
        const mid = top + tallest / 2;
        parts.push(`<line x1="${x + box.w + 3}" y1="${mid}" x2="${x + box.w + gap - 5}" y2="${mid}" stroke="#4a5568" marker-end="url(#arrow)"/>`);
      }
      x += box.w + gap;
    });
    const width = x, height = top + tallest + labelSpace;
    return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">` +
      `<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#4a5568"/></marker></defs>` +
      parts.join("") + "</svg>";
  }
})();
