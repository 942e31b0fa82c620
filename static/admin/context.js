/* Results page, "who clicks what" (Chart.js, vendored): per context feature, each banner's 95% interval of the
   estimated CTR at each level as a floating bar, and its estimate as a line across the bar. Data: the JSON
   block #context-chart-data (webapp/dashboard/context.py, chart_data). Labels are drawn on the canvas as text. */
(function () {
  "use strict";

  var source = document.getElementById("context-chart-data");
  if (!source || typeof Chart === "undefined") {
    return;
  }
  var tables = JSON.parse(source.textContent);
  var palette = ["#2563eb", "#e4572e", "#16a34a", "#9333ea", "#ca8a04", "#0891b2", "#db2777", "#4b5563",
                 "#65a30d", "#7c3aed", "#ea580c", "#0d9488"];     // results.js's, so a banner keeps its colour
  function color(i) { return palette[i % palette.length]; }
  function pct(value, digits) {
    return value === null || value === undefined ? "—" : (100 * value).toFixed(digits) + "%";
  }

  // The estimate of each bar, as a line across it: Chart.js has no error-bar element of its own.
  var estimateMarks = {
    id: "estimateMarks",
    afterDatasetsDraw: function (chart) {
      var ctx = chart.ctx, y = chart.scales.y;
      chart.data.datasets.forEach(function (dataset, i) {
        if (!chart.isDatasetVisible(i)) { return; }
        chart.getDatasetMeta(i).data.forEach(function (bar, j) {
          var estimate = dataset.estimates[j];
          if (estimate === null || estimate === undefined) { return; }
          var half = bar.width / 2, at = y.getPixelForValue(estimate);
          ctx.save();
          ctx.strokeStyle = "#111827";
          ctx.lineWidth = 2;
          ctx.beginPath();
          ctx.moveTo(bar.x - half, at);
          ctx.lineTo(bar.x + half, at);
          ctx.stroke();
          ctx.restore();
        });
      });
    }
  };

  tables.forEach(function (table) {
    var canvas = document.getElementById("context-chart-" + table.feature);
    if (!canvas) { return; }
    new Chart(canvas, {
      type: "bar",
      data: {
        labels: table.labels,
        datasets: table.banners.map(function (banner, i) {
          return {
            label: banner.id,
            data: banner.low.map(function (low, j) {
              return low === null || banner.high[j] === null ? null : [low, banner.high[j]];
            }),
            estimates: banner.ctr,
            backgroundColor: color(i) + "55",
            borderColor: color(i),
            borderWidth: 1,
            borderSkipped: false
          };
        })
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        scales: {
          y: { beginAtZero: true, title: { display: true, text: "estimated CTR" },
               ticks: { callback: function (v) { return pct(v, v < 0.1 ? 1 : 0); } } }
        },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12 } },
          tooltip: { callbacks: { label: function (ctx) {
            var interval = ctx.raw || [null, null];
            return ctx.dataset.label + ": " + pct(ctx.dataset.estimates[ctx.dataIndex], 2) + " (95%: " +
              pct(interval[0], 1) + "–" + pct(interval[1], 1) + ")";
          } } }
        }
      },
      plugins: [estimateMarks]
    });
  });
})();
