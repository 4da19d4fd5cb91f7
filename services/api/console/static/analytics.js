// Backend analytics with Chart.js (vendored): T1–T2 correlation, readout error per qubit,
// and the chosen metric over time per qubit, from the data the page was rendered with.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("analytics-data").textContent);
  const byKey = (points) => new Map(points.map((p) => [p.qubit + "|" + p.calibrated_at, p.value]));
  const t2 = byKey(data.series.t2_us);
  const pairs = data.series.t1_us
    .map((p) => ({x: p.value, y: t2.get(p.qubit + "|" + p.calibrated_at)}))
    .filter((p) => p.x != null && p.y != null);
  new Chart(document.getElementById("t1t2"), {
    type: "scatter",
    data: {datasets: [{label: "qubit snapshots", data: pairs}]},
    options: {animation: false, scales: {x: {title: {display: true, text: "T1 (µs)"}},
                                          y: {title: {display: true, text: "T2 (µs)"}}}},
  });
  const latest = new Map();
  for (const p of data.series.readout_error) {
    const seen = latest.get(p.qubit);
    if (!seen || seen.calibrated_at < p.calibrated_at) latest.set(p.qubit, p);
  }
  const qubits = [...latest.keys()].sort((a, b) => a - b);
  new Chart(document.getElementById("errors"), {
    type: "bar",
    data: {labels: qubits.map((q) => "q" + q),
           datasets: [{label: "readout error", data: qubits.map((q) => latest.get(q).value)}]},
    options: {animation: false},
  });
  const perQubit = new Map();
  for (const p of data.series[data.metric]) {
    if (!perQubit.has(p.qubit)) perQubit.set(p.qubit, []);
    perQubit.get(p.qubit).push({x: p.calibrated_at, y: p.value});
  }
  const labels = [...new Set(data.series[data.metric].map((p) => p.calibrated_at))].sort();
  new Chart(document.getElementById("stability"), {
    type: "line",
    data: {labels: labels.map((t) => t.slice(0, 16).replace("T", " ")),
           datasets: [...perQubit.entries()].sort((a, b) => a[0] - b[0]).map(([q, points]) => {
             const values = new Map(points.map((p) => [p.x, p.y]));
             return {label: "q" + q, data: labels.map((t) => values.get(t) ?? null), spanGaps: true};
           })},
    options: {animation: false},
  });
  document.body.dataset.chartsReady = "true";
})();
