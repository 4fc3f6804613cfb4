// The per-turn latency waterfall of a call page: one row per assistant turn, its stages as
// floating bars on a shared millisecond axis (Chart.js), in the order they happened: each stage
// runs from the previous one's time to its own. In relay and web calls the answer streams, so
// "Response sent" is when its first token was sent, and stages a few ms apart still show.
(function () {
  "use strict";
  const canvas = document.getElementById("waterfall-chart");
  if (!canvas || typeof Chart === "undefined") return;
  const rows = JSON.parse(document.getElementById("waterfall-data").textContent);
  const stages = JSON.parse(document.getElementById("stages-data").textContent);
  const streamed = canvas.dataset.mode !== "gather";
  const colours = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2"];
  canvas.parentElement.style.height = (80 + rows.length * 36) + "px";

  // Each stage's time (the end of its span), chained in time order.
  const chained = rows.map(function (row) {
    const times = row.spans
      .map(function (span) { return { stage: span.stage, at: span.end }; })
      .sort(function (a, b) { return a.at - b.at || stages.indexOf(a.stage) - stages.indexOf(b.stage); });
    const spans = {};
    let previous = 0;
    times.forEach(function (time) {
      spans[time.stage] = [previous, time.at];
      previous = time.at;
    });
    return spans;
  });
  // The legend names only the stages some turn has, in the order they happened.
  const present = stages.filter(function (stage) {
    return chained.some(function (spans) { return spans[stage]; });
  });
  present.sort(function (a, b) {
    const first = chained.find(function (spans) { return spans[a] && spans[b]; });
    return first ? first[a][1] - first[b][1] : 0;
  });
  const datasets = present.map(function (stage) {
    return {
      label: streamed && stage === "Response sent" ? "First token sent" : stage,
      backgroundColor: colours[stages.indexOf(stage) % colours.length],
      minBarLength: 4, // a stage 1 ms after the previous one is still drawn
      data: chained.map(function (spans) { return spans[stage] || null; }),
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
