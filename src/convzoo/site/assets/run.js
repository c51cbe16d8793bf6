// A run page: loss, accuracy and learning rate per epoch (Chart.js), the confusion matrix of the selected
// checkpoint (each cell links to its misclassified images), the config and the environment.
"use strict";
(() => {
  const {el, grouped} = convzoo;
  const run = convzoo.data();
  const main = convzoo.main();
  main.append(el("h1", {text: `Run ${run.name}`}),
    el("p", {class: "muted"}, `${run.model} on ${run.dataset}, ${run.metrics.length} epochs; from `, el("code", {text: run.path})));
  main.append(el("h2", {text: "Per epoch"}));
  const charts = el("div", {class: "charts"});
  main.append(charts);
  const epochs = run.metrics.map((row) => row.epoch);
  const series = (key) => run.metrics.map((row) => (row[key] === undefined ? null : row[key]));
  const present = (key) => series(key).some((v) => v !== null);
  const colours = {train: "#2f6fdf", val: "#d9822b", test: "#2e9e5b", lr: "#7a4fd0"};
  function chart(id, title, keys) {
    const canvas = el("canvas", {id});
    charts.append(el("div", {class: "chart"}, canvas));
    const datasets = keys.filter(([key]) => present(key)).map(([key, label, colour]) => ({
      label, data: series(key), borderColor: colour, backgroundColor: colour, spanGaps: true, pointRadius: 3, tension: 0}));
    return new Chart(canvas, {type: "line", data: {labels: epochs, datasets},
      options: {animation: false, responsive: true, maintainAspectRatio: false,
        plugins: {title: {display: true, text: title}}, scales: {x: {title: {display: true, text: "epoch"}}}}});
  }
  chart("loss", "loss", [["train_loss", "train loss", colours.train], ["val_loss", "val loss", colours.val], ["test_loss", "test loss", colours.test]]);
  chart("accuracy", "accuracy", [["train_acc", "train acc", colours.train], ["val_acc", "val acc", colours.val], ["test_acc", "test acc", colours.test]]);
  chart("lr", "learning rate at the epoch's end", [["lr", "lr", colours.lr]]);
  main.append(el("table", {id: "metrics"},
    el("tr", {}, ["epoch", "lr", "train loss", "train acc", "val acc", "test acc"].map((h) => el("th", {class: "num", text: h}))),
    run.metrics.map((row) => el("tr", {}, ["epoch", "lr", "train_loss", "train_acc", "val_acc", "test_acc"].map((key) =>
      el("td", {class: "num", text: row[key] === null || row[key] === undefined ? "" : (key === "epoch" ? row[key] : Number(row[key]).toPrecision(4))}))))));

  main.append(el("h2", {text: "Confusion matrix"}));
  const cm = run.confusion;
  if (!cm) main.append(el("p", {class: "note", text: `Left out: ${run.confusion_missing}`}));
  else {
    main.append(el("p", {class: "muted", text: `The selected checkpoint (${cm.checkpoint}) on the ${cm.split} split, ${grouped(cm.count)} images, accuracy ${(100 * cm.accuracy).toFixed(2)}% (as convzoo eval counts it, without test-time augmentation). True class by row, predicted by column; a cell off the diagonal links to its first misclassified images.`}));
    const k = cm.classes.length;
    main.append(el("table", {class: "confusion", id: "confusion"},
      el("tr", {}, el("th", {text: "true \\ predicted"}), cm.classes.map((c, j) => el("th", {class: "num", title: c, text: String(j)}))),
      cm.matrix.map((row, i) => el("tr", {}, el("th", {text: `${i} ${cm.classes[i]}`}), row.map((n, j) => {
        const images = cm.misclassified[`${i}-${j}`];
        const shade = `background: rgba(47,111,223,${(n / Math.max(1, row.reduce((a, b) => a + b, 0))).toFixed(3)})`;
        return el("td", {class: i === j ? "num diag" : "num", style: shade, "data-i": i, "data-j": j},
          images ? el("a", {href: `#cell-${i}-${j}`, text: String(n)}) : String(n));
      })))));
    main.append(el("h3", {text: "Misclassified images"}));
    for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) {
      const images = cm.misclassified[`${i}-${j}`];
      if (!images) continue;
      main.append(el("div", {class: "cell-images", id: `cell-${i}-${j}`},
        el("p", {}, el("strong", {text: `${cm.classes[i]} taken for ${cm.classes[j]}`}), cm.matrix[i][j] === 1 ? " (1 image):" : images.length === cm.matrix[i][j] ? ` (${cm.matrix[i][j]} images):` : ` (${cm.matrix[i][j]} images; the first ${images.length}):`),
        images.map((im) => el("img", {src: im.png, alt: `${cm.split} image ${im.index}`, title: `${cm.split} image ${im.index}`}))));
    }
  }
  main.append(el("h2", {text: "Config"}), el("pre", {id: "config", text: run.config_text || "(no config.toml)"}));
  main.append(el("h2", {text: "Environment"}), el("table", {id: "environment"},
    Object.entries({...run.run, ...run.environment}).map(([key, value]) => el("tr", {}, el("th", {text: key}), el("td", {}, el("code", {text: typeof value === "object" ? JSON.stringify(value) : String(value)}))))));
})();
