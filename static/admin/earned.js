/* "What it earned" panel: daily lift with its 95% interval (Chart.js, vendored). Data from the #lift-data block. */
(function () {
  "use strict";
  var source = document.getElementById("lift-data");
  var canvas = document.getElementById("chart-lift");
  if (!source || !canvas || typeof Chart === "undefined") {
    return;
  }
  var days = JSON.parse(source.textContent);
  function pct(value) { return value === null ? null : 100 * value; }
  new Chart(canvas, {
    type: "line",
    data: {
      labels: days.map(function (d) { return d.day; }),
      datasets: [
        { label: "lift", data: days.map(function (d) { return pct(d.lift.estimate); }), borderColor: "#2563eb",
          backgroundColor: "#2563eb", spanGaps: true },
        { label: "95% low", data: days.map(function (d) { return pct(d.lift.low); }), borderColor: "#93c5fd",
          borderDash: [4, 4], pointRadius: 0, spanGaps: true },
        { label: "95% high", data: days.map(function (d) { return pct(d.lift.high); }), borderColor: "#93c5fd",
          borderDash: [4, 4], pointRadius: 0, spanGaps: true }
      ]
    },
    options: {
      responsive: true, maintainAspectRatio: false, animation: false,
      scales: { y: { ticks: { callback: function (v) { return v + "%"; } } } },
      plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } }
    }
  });
})();
