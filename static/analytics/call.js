// The per-turn latency waterfall of a call page: one row per assistant turn, its stages as
// floating bars side by side on a shared millisecond axis (Chart.js).
(function () {
  "use strict";
  const canvas = document.getElementById("waterfall-chart");
  if (!canvas || typeof Chart === "undefined") return;
  const rows = JSON.parse(document.getElementById("waterfall-data").textContent);
  const stages = JSON.parse(document.getElementById("stages-data").textContent);
  const colours = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2"];
  canvas.parentElement.style.height = (80 + rows.length * 36) + "px";
  const datasets = stages.map(function (stage, i) {
    return {
      label: stage,
      backgroundColor: colours[i % colours.length],
      data: rows.map(function (row) {
        const span = row.spans.find(function (s) { return s.stage === stage; });
        return span ? [span.start, span.end] : null;
      }),
    };
  });
  new Chart(canvas, {
    type: "bar",
    data: { labels: rows.map(function (r) { return "Turn " + r.label; }), datasets: datasets },
    options: {
      indexAxis: "y", maintainAspectRatio: false, animation: false, grouped: false,
      scales: { x: { title: { display: true, text: "ms" }, beginAtZero: true }, y: { stacked: true } },
    },
  });
  canvas.dataset.rendered = "true";
})();
